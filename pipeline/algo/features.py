"""Features: the bands and derived indices the model clusters, and their scaling.

``Features.apply`` maps a (band, ...) float32 array of the input bands to (feature, ...) float32,
elementwise per pixel, so it gives the same values on a whole scene, on any block of it and on
the (band, n) sample: the fit and the labelling see exactly the same transform. A pixel that is
NaN in any input band is NaN in every feature (it stays nodata).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Index:
    """The normalized difference (a - b) / (a + b) of input bands a and b, 0 where a + b = 0."""

    name: str
    a: str
    b: str


@dataclass(frozen=True)
class Features:
    band_names: tuple[str, ...]
    """The input bands, in the order of the blocks' first axis."""
    bands: tuple[str, ...]
    """Input bands used as features unchanged."""
    indices: tuple[Index, ...] = ()
    scaling: Literal["none", "standard"] = "none"
    mean: tuple[float, ...] | None = None
    """Per feature, measured on the sample (standard scaling only)."""
    std: tuple[float, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.bands + tuple(index.name for index in self.indices)

    @property
    def is_identity(self) -> bool:
        return self.bands == self.band_names and not self.indices and self.scaling == "none"

    def apply(self, block: np.ndarray) -> np.ndarray:
        """(band, ...) float32 input bands → (feature, ...) float32 features, NaN preserved."""
        if self.is_identity:
            return block
        if self.scaling == "standard" and self.mean is None:
            raise ValueError("standard scaling needs statistics: call fitted(sample) first")
        position = {name: i for i, name in enumerate(self.band_names)}
        out = np.empty((len(self.names), *block.shape[1:]), dtype=np.float32)
        for i, name in enumerate(self.bands):
            out[i] = block[position[name]]
        for i, index in enumerate(self.indices, start=len(self.bands)):
            normalized_difference(block[position[index.a]], block[position[index.b]], out=out[i])
        if self.mean is not None:
            shape = (-1,) + (1,) * (block.ndim - 1)
            out -= np.asarray(self.mean, dtype=np.float32).reshape(shape)
            out /= np.asarray(self.std, dtype=np.float32).reshape(shape)
        out[:, np.isnan(block).any(axis=0)] = np.nan
        return out

    def fitted(self, sample: np.ndarray) -> Features:
        """With the scaling statistics measured on an (n, band) sample of input pixels."""
        if self.scaling == "none":
            return self
        values = replace(self, scaling="none").apply(sample.T).astype(np.float64)
        mean = np.nanmean(values, axis=1)
        std = np.nanstd(values, axis=1)
        std[~(std > 0)] = 1.0  # a constant feature carries no information; leave it unscaled
        return replace(self, mean=tuple(mean.tolist()), std=tuple(std.tolist()))

    def unscale(self, centroids: np.ndarray) -> np.ndarray:
        """(k, feature) centroids back in the features' own units (input units, index values)."""
        if self.mean is None:
            return centroids
        return centroids * np.asarray(self.std) + np.asarray(self.mean)

    def to_json(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "bands": list(self.bands),
            "indices": [{"name": i.name, "a": i.a, "b": i.b} for i in self.indices],
            "scaling": self.scaling,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], band_names: tuple[str, ...]) -> Features:
        return cls(
            band_names=band_names,
            bands=tuple(doc["bands"]),
            indices=tuple(Index(**i) for i in doc["indices"]),
            scaling=doc["scaling"],
            mean=None if doc["mean"] is None else tuple(doc["mean"]),
            std=None if doc["std"] is None else tuple(doc["std"]),
        )


def normalized_difference(a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """(a - b) / (a + b), 0 where a + b = 0 (e.g. a black pixel), NaN where a or b is NaN."""
    total = a + b
    if out is None:
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b, np.float32))
    out.fill(0)
    return np.divide(a - b, total, out=out, where=total != 0)


def ndvi_bands(band_names: tuple[str, ...], key: str) -> tuple[int, int]:
    """0-based positions of the bands named red and nir; the error names ``key``."""
    red, nir = (_position(name, band_names) for name in ("red", "nir"))
    if red is None or nir is None:
        raise ConfigError(
            f"{key} needs input bands named red and nir, but the bands are {', '.join(band_names)}; "
            "name them with input.band_names, e.g. [red, green, blue, nir]"
        )
    return red, nir


def _position(name: str, band_names: tuple[str, ...]) -> int | None:
    lowered = [n.lower() for n in band_names]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def band_named(name: str, band_names: tuple[str, ...], key: str) -> str:
    """The input band called ``name`` (ignoring case); the error names ``key``."""
    position = _position(name, band_names)
    if position is None:
        raise ConfigError(
            f"{key}: no input band is named '{name}' (the bands are {', '.join(band_names)}); "
            "name the bands with input.band_names, e.g. [red, green, blue, nir]"
        )
    return band_names[position]


def rgb_bands(band_names: tuple[str, ...]) -> tuple[int, ...]:
    """Positions (0-based, among the features) to show as red, green, blue; one band = grey."""
    lowered = [n.lower() for n in band_names]
    if all(c in lowered for c in ("red", "green", "blue")):
        return tuple(lowered.index(c) for c in ("red", "green", "blue"))
    return (0, 1, 2) if len(band_names) >= 3 else (0, 0, 0)
