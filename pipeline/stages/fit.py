"""The fit stage: ``fit(data, k=...)`` draws the sample, measures the features' scaling, runs
K-Means (``algo/kmeans.py``; with ``method="isodata"`` at the k that ISODATA chose on the same
sample, ``algo/isodata.py``), numbers and colours the classes, and returns a typed ``Model``."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from pipeline.algo.features import Features, ndvi_bands, rgb_bands
from pipeline.algo.isodata import Isodata, IsodataParams, fit_isodata
from pipeline.algo.kernel import class_statistics, nearest
from pipeline.algo.kmeans import Fit, class_order, fit_kmeans
from pipeline.algo.model import FitRecord, Model, SourceRecord
from pipeline.algo.naming import suggest_names
from pipeline.algo.sample import Sample, draw_sample, fixed_sample, full_matrix
from pipeline.config import (
    ClassConfig,
    FeaturesConfig,
    FitSettings,
    IsodataConfig,
    ModelConfig,
    parse_config,
)
from pipeline.config.isodata import MERGE_DISTANCE_SHARE, SPLIT_SD_SHARE
from pipeline.errors import DataError
from pipeline.io.imagery import Imagery, as_imagery
from pipeline.io.remote import where
from pipeline.runtime.scheduler import for_in_memory_data, local_threads
from pipeline.stages.edge import features_of

log = logging.getLogger(__name__)

PALETTE_SAMPLE = 100_000  # pixels for scaling statistics, class order and palette when fitting on "all"


def prepare_sample(imagery: Imagery, features: Features, *, size: int, seed: int) -> tuple[Sample, Features, np.ndarray]:
    """The seeded sample of ``size`` valid pixels, the features with their scaling measured on it,
    and the sample in feature space (n, feature): what ``fit`` and ``sweep`` fit."""
    sample = draw_sample(imagery, size=size, seed=seed)
    if len(sample.pixels) == 0:
        raise DataError(f"{_name(imagery)}: no valid pixel in the input; check input.nodata (nodata= from Python) and the rasters' masks")
    features = features.fitted(sample.pixels)
    return sample, features, features.apply(sample.pixels.T).T


def fit(
    data: xr.DataArray | xr.Dataset,
    *,
    k: int,
    sample_size: int | Literal["all"] = 1_000_000,
    seed: int = 0,
    nodata: float | None = None,
    features: FeaturesConfig | dict[str, Any] | None = None,
    init: str | None = None,
    n_init: int = 20,
    max_iter: int = 300,
    tol: float = 1e-4,
    order_by: Literal["brightness", "ndvi", "none"] = "brightness",
    classes: Sequence[ClassConfig | dict[str, Any]] | dict[str, str] | str | None = None,
    method: Literal["kmeans", "isodata"] = "kmeans",
    isodata: IsodataConfig | dict[str, Any] | None = None,
) -> Model:
    """Fit ``k`` classes to a (band, y, x) raster: a seeded sample of ``sample_size`` valid pixels
    spread over all of it (``algo/sample.py``), the features' scaling measured on it, K-Means with
    ``n_init`` restarts (``algo/kmeans.py``), classes numbered by ``order_by`` and coloured from their
    mean spectrum. The arguments are the config's ``sample``, ``model``, ``features`` and
    ``classes`` keys, checked the same way (``init`` None: the config's default seeding;
    ``classes="auto"``: suggested names); ``nodata`` overrides the array's own. ``method="isodata"``:
    ISODATA starts at ``k`` (``isodata``: ``model.isodata``'s keys); the restarts fit the k it chose.
    """
    settings = _settings(
        k=k, sample_size=sample_size, seed=seed, features=features, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
        order_by=order_by, classes=classes, method=method, isodata=isodata,
    )
    imagery = as_imagery(data, nodata=nodata)
    spec = features_of(settings.features, imagery.band_names)
    m = settings.model
    check_bands(settings, imagery.band_names)

    started = time.perf_counter()
    fit_on_all = sample_size == "all"
    drawn, spec, sample_features = prepare_sample(imagery, spec, size=PALETTE_SAMPLE if fit_on_all else settings.sample.size, seed=seed)
    sample = drawn.pixels
    matrix = _feature_rows(full_matrix(imagery.data()), spec) if fit_on_all else sample_features
    sampled = time.perf_counter()

    timings = {"sample": sampled - started, **({"first_look": drawn.record.look.seconds} if drawn.record.look else {})}
    found, chosen = _centroids(m, matrix, sample_features, spec, drawn, seed=seed, timings=timings, decide=decider(imagery, drawn, spec))
    order, spectra = _order_and_spectra(found.centroids, sample, sample_features, imagery.band_names, m.order_by)
    suggested = suggest_names(spectra, sample, imagery.band_names) if settings.suggest_names else ()
    timings["fit"] = time.perf_counter() - sampled
    log.info("fit: %d classes on %d pixels (sample %.1f s, fit %.1f s)", len(found.centroids), found.n_pixels, timings["sample"], timings["fit"])
    return Model(
        centroids=found.centroids[order], bands=imagery.bands, band_names=imagery.band_names, features=spec,
        palette=apply_class_colours(palette_from_centroids(spectra, sample, imagery.band_names), settings.given_classes),
        sample_size=found.n_pixels,
        sample_design=drawn.record.to_json(),
        seed=seed,
        inertia=found.inertia,
        class_names=tuple(s.name for s in suggested) or (settings.class_names() if settings.given_classes else ()),
        name_rules=tuple(s.rule for s in suggested),
        fit=_fit_record(m, found, chosen, timings),
        source=SourceRecord(dtype=imagery.dtype, count=len(imagery.bands), crs=imagery.crs, nodata=imagery.nodata),
    )


def check_bands(settings: FitSettings, band_names: tuple[str, ...]) -> None:
    """What needs bands named red and nir (``model.order_by: ndvi``, ``classes.names: auto``),
    refused before any pixel is read."""
    if settings.model.order_by == "ndvi":
        ndvi_bands(band_names, "model.order_by: ndvi")
    if settings.suggest_names:
        ndvi_bands(band_names, "classes.names: auto")


def decider(imagery: Imagery, drawn: Sample, features: Features) -> Callable[[], np.ndarray]:
    """What decides between maps the sample cannot rank (``fit_kmeans``'s ``decide``): a sample
    drawn with a fixed seed, in feature space, drawn when first asked for (only on a tie)."""

    @functools.cache
    def pixels() -> np.ndarray:
        return features.apply(fixed_sample(imagery, drawn, size=len(drawn.pixels)).T).T

    return pixels


def _centroids(
    m: ModelConfig, matrix: np.ndarray | da.Array, sample_features: np.ndarray, features: Features, drawn: Sample, *, seed: int,
    timings: dict[str, float], decide: Callable[[], np.ndarray],
) -> tuple[Fit, Isodata | None]:
    """The K-Means restarts at ``model.k``, or at the k ISODATA chose on the sample (its seconds
    go into ``timings["isodata"]``); the first look seeds restarts, ``decide`` breaks ties
    (``fit_kmeans``)."""
    with for_in_memory_data():
        began = time.perf_counter()
        chosen = run_isodata(m, sample_features, features.names) if m.method == "isodata" else None
        if chosen is not None:
            timings["isodata"] = time.perf_counter() - began
        found = fit_kmeans(
            matrix, seeds_from=sample_features, k=m.k if chosen is None else chosen.k, n_init=m.n_init, max_iter=m.max_iter,
            tol=m.tol, seed=seed, init=m.init, reference=features.apply(drawn.reference.T).T, decide=decide, whole=drawn.record.whole,
            threads=local_threads(),
        )
    return found, chosen


def run_isodata(m: ModelConfig, sample_features: np.ndarray, feature_names: tuple[str, ...]) -> Isodata:
    """ISODATA on the (n, feature) sample with the ``model`` section's settings: the k it chose."""
    return fit_isodata(np.ascontiguousarray(sample_features.T, dtype=np.float32), isodata_params(m, sample_features), feature_names)


def isodata_params(m: ModelConfig, sample_features: np.ndarray) -> IsodataParams:
    """``model.isodata`` in the features' units: a threshold left out is measured on the sample
    (``config/isodata.py``), the minimum class size counted in its pixels."""
    c = m.isodata
    k_min, k_max = c.k_range(m.k)
    sd = sample_features.std(axis=0, dtype=np.float64)
    return IsodataParams(
        k_start=m.k, k_min=k_min, k_max=k_max, min_size=max(1, math.ceil(c.min_class_size * len(sample_features))),
        split_sd=tuple(float(v) for v in (np.full(len(sd), c.split_sd) if c.split_sd is not None else SPLIT_SD_SHARE * sd)),
        merge_distance=c.merge_distance if c.merge_distance is not None else MERGE_DISTANCE_SHARE * float(np.sqrt((sd**2).mean())),
        max_merges=c.max_merges, iterations=c.iterations, convergence=c.convergence, max_passes=m.max_iter,
    )


def _fit_record(m: ModelConfig, found: Fit, chosen: Isodata | None, timings: dict[str, float]) -> FitRecord:
    return FitRecord(
        init=m.init, n_init=m.n_init, max_iter=m.max_iter, n_iter=found.n_iter, tol=m.tol, tol_absolute=found.tol_absolute,
        order_by=m.order_by, seeding=found.seeding, unstable=found.restarts.unstable, restarts=found.restarts.to_json(),
        method=m.method, isodata=None if chosen is None else chosen.to_json(),
        timings_s={name: round(seconds, 3) for name, seconds in timings.items()},
    )


def _settings(*, features, classes, sample_size, seed, **model: Any) -> FitSettings:
    """``fit``'s arguments as the config's sections, checked as the config checks them."""
    if model["init"] is None:
        del model["init"]  # the config's default seeding
    isodata = model.pop("isodata")
    model["isodata"] = isodata.model_dump() if isinstance(isodata, IsodataConfig) else (isodata or {})
    return parse_config(
        {
            "sample": {"size": sample_size, "seed": seed},
            "model": model,
            "features": features.model_dump() if isinstance(features, FeaturesConfig) else (features or {}),
            "classes": [c.model_dump() if isinstance(c, ClassConfig) else c for c in classes] if isinstance(classes, Sequence) and not isinstance(classes, str) else classes,
        },
        source="fit",
        schema=FitSettings,
    )


def _order_and_spectra(
    centroids: np.ndarray, sample: np.ndarray, sample_features: np.ndarray, band_names: tuple[str, ...], order_by: str
) -> tuple[np.ndarray, np.ndarray]:
    """The classes' numbering, and each class's mean spectrum in input units on the sample (k, band), in that order."""
    labels, _ = nearest(sample_features.T, centroids)
    stats = class_statistics(sample.T, labels, len(centroids))[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        spectra = stats[:, 1:] / stats[:, :1]
    order = class_order(spectra, band_names, order_by)
    return order, spectra[order]


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


def apply_class_colours(
    palette: dict[int, tuple[int, int, int]], classes: tuple[ClassConfig, ...] | None
) -> dict[int, tuple[int, int, int]]:
    """The computed palette with every configured ``color`` put in place of its class's entry."""
    result = dict(palette)
    for label, entry in enumerate(classes or (), start=1):
        if entry.rgb is not None:
            result[label] = entry.rgb
    return result


def _name(imagery: Imagery) -> str:
    """How errors name the input: its first file when it is a mosaic."""
    if imagery.mosaic is not None:
        return where(imagery.mosaic.tiles[0].path, imagery.mosaic.tiles[0].item)
    return "data"


def _feature_rows(matrix: da.Array, features: Features) -> da.Array:
    """An (n, band) pixel matrix as (n, feature), block by block."""
    n_features = len(features.names)
    return matrix.map_blocks(lambda m: features.apply(m.T).T, chunks=(matrix.chunks[0], (n_features,)), dtype=np.float32)
