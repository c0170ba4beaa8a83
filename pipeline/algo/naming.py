"""Suggested class names (``classes: {names: auto}``) from transparent rules on each class's mean.

K-Means knows spectra, not land cover, so these are starting points a reader corrects, never a
classification: each name comes with the rule, and the numbers, that gave it. The rules read a
class's mean spectrum in input units through two quantities that do not depend on the sensor's
scale (uint8 NAIP, uint16 or reflectance alike):

- NDVI of the class mean, (NIR - red) / (NIR + red);
- brightness: the mean over all bands of the class mean placed between the sample's 2nd and 98th
  percentiles of that band (0 = as dark as the darkest 2 % of pixels, 1 = as bright as the
  brightest 2 %).

The first rule of ``RULES`` that holds names the class; the thresholds were checked on the real
NAIP scenes (docs/algorithms.md, "Suggested names", says where they name wrongly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.algo.features import ndvi_bands

WATER_NDVI = 0.0
DARK = 0.12
DENSE_NDVI = 0.35
VEGETATION_NDVI = 0.15
DARK_VEGETATION = 0.35  # dense vegetation this dark is usually tree canopy; brighter, crops or grass
BRIGHT = 0.6


@dataclass(frozen=True)
class Spectrum:
    """What the rules read of one class mean."""

    ndvi: float
    brightness: float
    nir_below_visible: bool


RULES: tuple[tuple[str, str, Callable[[Spectrum], bool]], ...] = (
    # Bright surfaces with NIR below the visible bands are salt or chalk crusts and roofs, not water.
    (
        "water",
        f"NDVI < {WATER_NDVI:g}, NIR below every visible band and brightness < {BRIGHT:g}",
        lambda s: s.ndvi < WATER_NDVI and s.nir_below_visible and s.brightness < BRIGHT,
    ),
    ("shadow or dark surface", f"brightness < {DARK:g}", lambda s: s.brightness < DARK),
    ("trees", f"NDVI >= {DENSE_NDVI:g} and brightness < {DARK_VEGETATION:g}", lambda s: s.ndvi >= DENSE_NDVI and s.brightness < DARK_VEGETATION),
    ("dense vegetation", f"NDVI >= {DENSE_NDVI:g}", lambda s: s.ndvi >= DENSE_NDVI),
    ("sparse vegetation", f"NDVI >= {VEGETATION_NDVI:g}", lambda s: s.ndvi >= VEGETATION_NDVI),
    ("bright bare or built", f"brightness >= {BRIGHT:g}", lambda s: s.brightness >= BRIGHT),
    ("bare soil or built", "none of the rules above", lambda s: True),
)
"""(name, condition, test), tried in this order; the first that holds names the class."""


@dataclass(frozen=True)
class Suggestion:
    name: str
    rule: str
    """The rule that gave the name, with the class's values, e.g. "NDVI 0.52, brightness 0.21: rule 3 of 7, ..."."""


def suggest_names(spectra: np.ndarray, sample: np.ndarray, band_names: tuple[str, ...]) -> tuple[Suggestion, ...]:
    """One suggestion per class: ``spectra`` (k, band) are the class means in input units, in
    label order (NaN for a class without pixels), ``sample`` (n, band) the pixels they came from.
    Names that repeat are numbered in label order ("trees", "trees 2")."""
    red, nir = ndvi_bands(band_names, "classes.names: auto")
    low, high = np.nanpercentile(sample, [2, 98], axis=0)
    span = np.where(high > low, high - low, 1.0)
    visible = [i for i, name in enumerate(band_names) if name.lower() in ("red", "green", "blue")]
    suggestions = []
    for label, mean in enumerate(spectra, start=1):
        if np.isnan(mean).any():
            suggestions.append(Suggestion(f"class {label}", "no pixel of the sample is in this class"))
            continue
        total = mean[nir] + mean[red]
        spectrum = Spectrum(
            ndvi=float((mean[nir] - mean[red]) / total) if total else 0.0,
            brightness=float(np.mean(np.clip((mean - low) / span, 0, 1))),
            nir_below_visible=bool(mean[nir] < mean[visible].min()),
        )
        suggestions.append(_first_rule(spectrum))
    return _numbered(suggestions)


def _first_rule(spectrum: Spectrum) -> Suggestion:
    number, (name, condition, _) = next((i, r) for i, r in enumerate(RULES, start=1) if r[2](spectrum))
    values = f"NDVI {spectrum.ndvi:.2f}, brightness {spectrum.brightness:.2f}"
    return Suggestion(name, f"{values}: rule {number} of {len(RULES)}, {condition}")


def _numbered(suggestions: list[Suggestion]) -> tuple[Suggestion, ...]:
    seen: dict[str, int] = {}
    result = []
    for s in suggestions:
        seen[s.name] = seen.get(s.name, 0) + 1
        result.append(s if seen[s.name] == 1 else Suggestion(f"{s.name} {seen[s.name]}", s.rule))
    return tuple(result)
