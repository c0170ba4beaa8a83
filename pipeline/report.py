"""What sits beside the COG: the class report JSON and a quicklook PNG (the model JSON: ``model.py``).

Palette colours come from each class's centroid in approximate true colour, stretched by the
sample's 2nd-98th percentiles, so a user opening the COG in QGIS sees water dark and fields green.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

QUICKLOOK_SIDE = 1024


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
