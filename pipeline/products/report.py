"""What sits beside the COG: the class report (typed, and as JSON) and a quicklook PNG (the model
JSON: ``model.py``).

Palette colours come from each class's centroid in approximate true colour, stretched by the
sample's 2nd-98th percentiles, so a user opening the COG in QGIS sees water dark and fields green.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from pipeline.algo.model import FitRecord, Model
from pipeline.cog import linear_unit_metres
from pipeline.errors import InputError

QUICKLOOK_SIDE = 1024


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


@dataclass(frozen=True)
class ClassSummary:
    """One class of the labels, as the report JSON's ``classes`` lists it."""

    value: int
    """The label in the COG (1..k); the JSON's ``class``."""
    name: str
    """As configured (``classes:``) or suggested (``classes: {names: auto}``), else "class 3"."""
    suggested_by: str | None
    """The spectral rule that suggested the name (algo/naming.py); None when it was given or defaulted."""
    pixels: int
    """Labelled with this class in the COG (after the cleanup, if any)."""
    area_m2: float | None
    """None in a geographic CRS, where a pixel's area is not constant."""
    percent: float
    """Of the valid (labelled) pixels."""
    mean: dict[str, float | None] | None
    """Per input band name, in input units, over the pixels the model assigned to the class
    (before any cleanup: the class's spectrum; None for a class without pixels); None when the
    labels were written without the imagery, so only counted."""
    feature_mean: dict[str, float | None] | None
    """Per feature name, in the features' own units; None as ``mean``."""
    colour: str
    """The palette's '#rrggbb'."""

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        if doc["suggested_by"] is None:  # given or default names: the JSON as before suggestions
            del doc["suggested_by"]
        return {"class": doc.pop("value"), **doc}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClassSummary:
        fields = dict(doc)
        return cls(value=fields.pop("class"), suggested_by=fields.pop("suggested_by", None), **fields)


@dataclass(frozen=True)
class Totals:
    """Pixel counts and areas over the whole output."""

    valid_pixels: int
    """Labelled with a class 1..k."""
    nodata_pixels: int
    """Labelled 0: nodata in the inputs, or outside every input."""
    area_m2: float | None
    """Of the valid pixels; None in a geographic CRS."""
    pixel_area_m2: float | None
    """None in a geographic CRS."""


@dataclass(frozen=True)
class Report:
    """The class report: what ``<stem>.report.json`` holds, and what the legend, the STAC item
    and the HTML page are made from."""

    classes: tuple[ClassSummary, ...]
    """Classes 1..k in label order."""
    totals: Totals
    """Pixel counts and areas over the whole output."""
    crs: str
    """Of the labels (e.g. "EPSG:32614")."""
    timings: dict[str, float]
    """Seconds per stage, rounded to the millisecond (the JSON's ``timings_s``)."""
    balance: dict[str, Any] | None = None
    """``BalanceRecord.summary()`` of the model's tile balance: all but the per-tile corrections, which
    are in the model JSON."""
    fit: FitRecord | None = None
    """How the model's centroids were found."""
    config: dict[str, Any] | None = None
    """The run's config as JSON, to re-run it and for the HTML page."""
    cleanup: dict[str, Any] | None = None
    """What the postprocess changed (``cleanup_record``); None without one."""
    sample: dict[str, Any] | None = None
    """How the fit's sample was drawn (the model's ``sample.design``): the first look, the windows
    read and their probabilities."""

    @property
    def has_means(self) -> bool:
        """False when the labels were written without the imagery (counts only)."""
        return all(c.mean is not None for c in self.classes)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "classes": [c.to_json() for c in self.classes],
            "totals": asdict(self.totals),
            "crs": self.crs,
            "timings_s": dict(self.timings),
        }
        optional = {
            "balance": self.balance, "fit": None if self.fit is None else asdict(self.fit), "config": self.config, "cleanup": self.cleanup,
            "sample": self.sample,
        }
        doc.update({key: value for key, value in optional.items() if value is not None})
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Report:
        """A report from its JSON (``to_json``, or a report JSON written by ``landcover run``)."""
        return cls(
            classes=tuple(ClassSummary.from_json(c) for c in doc["classes"]),
            totals=Totals(**doc["totals"]),
            crs=doc["crs"],
            timings=dict(doc.get("timings_s") or {}),
            balance=doc.get("balance"),
            fit=FitRecord(**doc["fit"]) if doc.get("fit") else None,
            config=doc.get("config"),
            cleanup=doc.get("cleanup"),
            sample=doc.get("sample"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a report JSON written by ``run``; errors name the file and what is wrong."""
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{path}: cannot read the report JSON ({exc.__class__.__name__}); it is written beside the COG by 'landcover run'"
            ) from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{path}: the report JSON is incomplete or damaged ({exc.__class__.__name__}: {exc}); write it again with 'landcover run'"
            ) from None


def class_report(
    stats: np.ndarray,
    model: Model,
    *,
    pixel_area: float,
    crs: str,
    timings: dict[str, float],
    config: dict[str, Any] | None = None,
    cleaned: np.ndarray | None = None,
) -> Report:
    """Per class: name, pixels, area and colour, and mean per input band and per feature.

    ``stats`` is (k + 1, 1 + band + feature): per label (0 = nodata) the pixel count, then the
    sums of the input bands and of the features (in the features' own units). Labels written
    without the imagery have only the counts: a (k + 1, 1) ``stats`` gives every class's
    ``mean`` and ``feature_mean`` as None. ``cleaned`` (the write pass's cleanup summary: per
    class the pixels after it, the pixels each step changed, the patches removed) gives the
    pixels and areas of the cleaned map; the means stay those of the classes as assigned.
    """
    band_names, feature_names = model.band_names, model.features.names
    _check_stats(stats, model)
    metres = linear_unit_metres(crs)
    area = None if metres is None else pixel_area * metres**2
    assigned = stats[:, 0]
    counts = assigned if cleaned is None else cleaned[0].astype(np.float64)
    valid = float(counts[1:].sum())
    counted_only = stats.shape[1] == 1
    classes = []
    rules = model.name_rules or (None,) * model.k
    for label, (name, rule) in enumerate(zip(model.names, rules), start=1):
        n, m = float(counts[label]), float(assigned[label])
        means = stats[label, 1:] / m if m else np.full(stats.shape[1] - 1, math.nan)
        classes.append(
            ClassSummary(
                value=label,
                name=name,
                suggested_by=rule,
                pixels=int(n),
                area_m2=None if area is None else n * area,
                percent=100.0 * n / valid if valid else 0.0,
                mean=None if counted_only else _named(band_names, means),
                feature_mean=None if counted_only else _named(feature_names, means[len(band_names) :]),
                colour="#%02x%02x%02x" % model.palette[label],
            )
        )
    return Report(
        classes=tuple(classes),
        totals=Totals(valid_pixels=int(valid), nodata_pixels=int(counts[0]), area_m2=None if area is None else valid * area, pixel_area_m2=area),
        crs=crs,
        timings={name: round(seconds, 3) for name, seconds in timings.items()},
        balance=None if model.balance is None else model.balance.summary(),
        fit=model.fit,
        config=config,
        cleanup=None if cleaned is None else cleanup_record(cleaned, model, valid),
        sample=model.sample_design,
    )


def _check_stats(stats: np.ndarray, model: Model) -> None:
    bands, features = len(model.band_names), len(model.features.names)
    if stats.ndim != 2 or stats.shape[0] != model.k + 1 or stats.shape[1] not in {1, 1 + bands + features}:
        raise ValueError(
            f"stats of shape {stats.shape}: expected (k + 1, 1) counts or (k + 1, 1 + band + feature) counts "
            f"and sums, with k = {model.k}, {bands} bands and {features} features"
        )


def cleanup_record(cleaned: np.ndarray, model: Model, valid: float) -> dict[str, Any]:
    """The postprocess and what it changed: per class (by the class a pixel had before each
    step) the pixels the majority filter and the sieve changed, their shares of the valid
    pixels, and the patches the sieve removed."""
    majority, sieve = cleaned[1], cleaned[2]
    names = model.names
    return {
        **model.postprocess.to_json(),
        "halo_px": model.postprocess.halo,
        "majority_changed": {name: int(majority[c]) for c, name in enumerate(names, start=1)},
        "sieve_changed": {name: int(sieve[c]) for c, name in enumerate(names, start=1)},
        "majority_changed_percent": 100.0 * float(majority.sum()) / valid if valid else 0.0,
        "sieve_changed_percent": 100.0 * float(sieve.sum()) / valid if valid else 0.0,
        "patches_removed": int(cleaned[3, 0]),
    }


def _named(names: tuple[str, ...], values: np.ndarray) -> dict[str, float | None]:
    """name → value for the first len(names) values; NaN (a class without pixels) as None."""
    return {name: None if math.isnan(v) else float(v) for name, v in zip(names, values)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_quicklook(cog: Path, png: Path, palette: dict[int, tuple[int, int, int]]) -> None:
    """A small paletted PNG of the labels in palette colours, read from the COG's overviews."""
    from PIL import Image  # not matplotlib: its import and imsave cost ~0.4 s of a small run

    with rasterio.open(cog) as src:
        scale = max(src.width, src.height) / QUICKLOOK_SIDE
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        labels = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for label, rgb in palette.items():
        lut[label] = rgb[:3]
    image = Image.fromarray(labels)
    image.putpalette(lut.tobytes())  # an "L" image becomes "P": the labels index the palette
    image.save(png, format="PNG")
