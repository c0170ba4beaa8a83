"""What sits beside the COG: the model JSON, the class report JSON and a quicklook PNG.

Palette colours come from each class's centroid in approximate true colour, stretched by the
sample's 2nd-98th percentiles, so a user opening the COG in QGIS sees water dark and fields green.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from .errors import InputError
from .features import Features

MODEL_FORMAT = "landcover-model/2"
_FORMAT_1 = "landcover-model/1"  # centroids in input bands, no features section
QUICKLOOK_SIDE = 1024
_VERSIONED = ("landcover-pipeline", "dask", "distributed", "dask-ml", "scikit-learn", "numpy", "rasterio", "xarray", "rioxarray")


@dataclass(frozen=True)
class Model:
    """A fitted model as saved to ``<output>.model.json``: enough to label new imagery."""

    centroids: np.ndarray
    """(k, feature): in feature space, in label order."""
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    features: Features
    palette: dict[int, tuple[int, int, int]]
    sample_size: int
    seed: int
    inertia: float
    extra: dict[str, Any]

    @property
    def k(self) -> int:
        return len(self.centroids)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "k": self.k,
            "bands": list(self.bands),
            "band_names": list(self.band_names),
            "features": self.features.to_json(),
            "centroids": self.centroids.tolist(),
            "palette": {str(c): list(rgb) for c, rgb in self.palette.items()},
            "sample": {"size": self.sample_size, "seed": self.seed},
            "inertia": self.inertia,
            **self.extra,
            "versions": library_versions(),
        }


def load_model(path: str | Path) -> Model:
    """Read a model JSON written by ``run``; errors name the file and what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the model JSON ({exc.__class__.__name__}); give a .model.json file") from None
    if not isinstance(doc, dict) or doc.get("format") not in (MODEL_FORMAT, _FORMAT_1):
        raise InputError(f"{path}: not a {MODEL_FORMAT} file; give the .model.json written by 'landcover run'")
    known = {"format", "k", "bands", "band_names", "features", "centroids", "palette", "sample", "inertia", "versions"}
    try:
        band_names = tuple(doc["band_names"])
        model = Model(
            centroids=np.asarray(doc["centroids"], dtype=np.float64),
            bands=tuple(doc["bands"]),
            band_names=band_names,
            features=Features.from_json(doc["features"], band_names)
            if doc["format"] == MODEL_FORMAT
            else Features(band_names, band_names),
            palette={int(c): tuple(rgb) for c, rgb in doc["palette"].items()},
            sample_size=int(doc["sample"]["size"]),
            seed=int(doc["sample"]["seed"]),
            inertia=float(doc["inertia"]),
            extra={k: v for k, v in doc.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: the model JSON is incomplete or damaged ({exc.__class__.__name__}: {exc}); write it again with 'landcover run'") from None
    if model.centroids.ndim != 2 or model.centroids.shape[1] != len(model.features.names):
        raise InputError(f"{path}: the centroids do not match the features {list(model.features.names)}; write it again with 'landcover run'")
    return model


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["gdal"] = rasterio.__gdal_version__
    return versions


def rgb_bands(band_names: tuple[str, ...]) -> tuple[int, ...]:
    """Positions (0-based, among the features) to show as red, green, blue; one band = grey."""
    lowered = [n.lower() for n in band_names]
    if all(c in lowered for c in ("red", "green", "blue")):
        return tuple(lowered.index(c) for c in ("red", "green", "blue"))
    return (0, 1, 2) if len(band_names) >= 3 else (0, 0, 0)


def palette_from_centroids(centroids: np.ndarray, sample: np.ndarray, band_names: tuple[str, ...]) -> dict[int, tuple[int, int, int]]:
    """Class → (r, g, b): each (k, band) centroid in input units in approximate true colour;
    class 0 (nodata) is black, a class without a centroid (NaN) grey."""
    positions = list(rgb_bands(band_names))
    low, high = np.nanpercentile(sample[:, positions], [2, 98], axis=0)
    span = np.where(high > low, high - low, 1.0)
    rgb = np.nan_to_num(np.clip((centroids[:, positions] - low) / span, 0, 1), nan=0.5) * 255
    palette = {0: (0, 0, 0)}
    palette.update({i + 1: tuple(int(round(v)) for v in row) for i, row in enumerate(rgb)})
    return palette


def class_tags(centroids: np.ndarray, band_names: tuple[str, ...], names: tuple[str, ...] | None = None) -> dict[str, str]:
    """COG tags naming each class and its centroid, e.g. CLASS_3 = 'water: red=52.1 ...'
    (``band_names`` name the centroid's columns: bands or features; names default to
    'class 3'); CLASS_3_NAME holds the bare name for programs."""
    names = names or tuple(f"class {i}" for i in range(1, len(centroids) + 1))
    tags = {"CLASS_0": "nodata"}
    for i, (row, name) in enumerate(zip(centroids, names), start=1):
        values = " ".join(f"{band}={value:.1f}" for band, value in zip(band_names, row))
        tags[f"CLASS_{i}"] = f"{name}: {values}"
        tags[f"CLASS_{i}_NAME"] = name
    return tags


def linear_unit_metres(crs: str) -> float | None:
    """Metres per CRS unit, or None for a geographic CRS (pixel area is not constant)."""
    parsed = rasterio.crs.CRS.from_user_input(crs)
    if parsed.is_geographic:
        return None
    return float(parsed.linear_units_factor[1])


def class_report(
    stats: np.ndarray,
    *,
    band_names: tuple[str, ...],
    feature_names: tuple[str, ...],
    palette: dict[int, tuple[int, int, int]],
    pixel_area: float,
    crs: str,
    timings: dict[str, float],
    names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Per class: name, pixels, area, mean per input band and per feature, from (k + 1, 1 + band
    + feature) label statistics (counts, then sums)."""
    metres = linear_unit_metres(crs)
    area = None if metres is None else pixel_area * metres**2
    counts = stats[:, 0]
    valid = float(counts[1:].sum())
    classes = []
    for label in range(1, len(stats)):
        n = float(counts[label])
        means = stats[label, 1:] / n if n else np.full(stats.shape[1] - 1, math.nan)
        classes.append(
            {
                "class": label,
                "name": names[label - 1] if names else f"class {label}",
                "pixels": int(n),
                "area_m2": None if area is None else n * area,
                "percent": 100.0 * n / valid if valid else 0.0,
                "mean": {name: (None if math.isnan(m) else float(m)) for name, m in zip(band_names, means)},
                "feature_mean": {
                    name: (None if math.isnan(m) else float(m)) for name, m in zip(feature_names, means[len(band_names) :])
                },
                "colour": "#%02x%02x%02x" % palette[label],
            }
        )
    return {
        "classes": classes,
        "totals": {
            "valid_pixels": int(valid),
            "nodata_pixels": int(counts[0]),
            "area_m2": None if area is None else valid * area,
            "pixel_area_m2": area,
        },
        "crs": crs,
        "timings_s": {name: round(seconds, 3) for name, seconds in timings.items()},
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_quicklook(cog: Path, png: Path, palette: dict[int, tuple[int, int, int]]) -> None:
    """A small PNG of the labels in palette colours, read from the COG's overviews."""
    from matplotlib.image import imsave  # no pyplot, so no backend to choose for the process

    with rasterio.open(cog) as src:
        scale = max(src.width, src.height) / QUICKLOOK_SIDE
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        labels = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for label, rgb in palette.items():
        lut[label] = rgb
    imsave(png, lut[labels], format="png")
