"""The fit stage and what it returns: ``fit(data, k=...)`` draws the sample, measures the features'
scaling, runs K-Means (``kmeans.py``), numbers and colours the classes, and returns a typed
``Model``, saved as ``<output>.model.json`` and loaded back: enough to label new imagery exactly
as the run that fitted it labelled its own."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import rasterio
import xarray as xr

from .config import ClassConfig, FeaturesConfig, FitSettings, parse_config
from .errors import DataError, InputError
from .features import Features, features_from_config, ndvi_bands, rgb_bands
from .imagery import Imagery, as_imagery
from .kmeans import class_order, fit_kmeans
from .label import class_statistics, nearest
from .remote import where
from .sample import draw_sample, full_matrix
from .scheduler import for_in_memory_data

log = logging.getLogger(__name__)

MODEL_FORMAT = "landcover-model/2"
_FORMAT_1 = "landcover-model/1"  # centroids in input bands, no features section
PALETTE_SAMPLE = 100_000  # pixels for scaling statistics, class order and palette when fitting on "all"
_VERSIONED = ("landcover-pipeline", "dask", "distributed", "dask-ml", "scikit-learn", "numpy", "rasterio", "xarray", "rioxarray")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["gdal"] = rasterio.__gdal_version__
    return versions


@dataclass(frozen=True)
class FitRecord:
    """How the centroids were found (the model JSON's ``fit``)."""

    init: str
    n_init: int
    max_iter: int
    n_iter: int
    tol: float
    """As configured: relative to the sample's mean band variance."""
    tol_absolute: float
    order_by: str
    seeding: str
    unstable: bool | None
    """Restarts from another seed could well find another map (see ``kmeans.Restarts``)."""
    restarts: dict[str, Any] = field(default_factory=dict)
    """``kmeans.Restarts.to_json()``: the restarts' inertias and how many reached the best."""
    timings_s: dict[str, float] = field(default_factory=dict, compare=False)
    """Seconds spent drawing the sample ("sample") and fitting ("fit"): for the run's report,
    not saved (a model JSON depends only on the data, the settings and the seed)."""


@dataclass(frozen=True)
class SourceRecord:
    """What the model was fitted on (the model JSON's ``input``): what ``predict`` checks new
    imagery against, and reads it with."""

    dtype: str
    """Of the input values, before they were read as float32."""
    count: int
    """Bands in each input file (alpha and unused bands included)."""
    crs: str | None = None
    nodata: float | None = None
    """The nodata override the run was given (None: each file's own)."""
    alpha: str | int = "auto"
    paths: tuple[str, ...] | None = None
    """Input hrefs without their query (signatures); None for a STAC search or an in-memory array."""
    stac: dict[str, Any] | None = None
    """The STAC search (``input.stac``), not its thousands of hrefs."""
    items: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {key: value for key, value in asdict(self).items() if value is not None or key == "nodata"}
        if self.paths is not None:
            doc["paths"] = list(self.paths)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SourceRecord:
        known = {name: doc[name] for name in cls.__dataclass_fields__ if name in doc}
        if known.get("paths") is not None:
            known["paths"] = tuple(known["paths"])
        return cls(**known)


@dataclass(frozen=True)
class Model:
    """A fitted model: centroids in feature space and how to read and name what they label."""

    centroids: np.ndarray
    """(k, feature): in feature space, in label order."""
    bands: tuple[int, ...]
    """1-based band numbers of the input read as the features' bands."""
    band_names: tuple[str, ...]
    features: Features
    palette: dict[int, tuple[int, int, int]]
    sample_size: int
    seed: int
    inertia: float
    class_names: tuple[str, ...] = ()
    """Names of classes 1..k as configured (``classes:``); empty = "class 1", "class 2", ..."""
    fit: FitRecord | None = None
    source: SourceRecord | None = None
    balance: dict[str, Any] | None = None
    """``balance.Balance.to_json()``: each tile's correction, reused by ``predict``."""
    versions: dict[str, str] = field(default_factory=library_versions, compare=False)
    """The libraries that fitted the model (kept when it is loaded and saved again)."""

    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def names(self) -> tuple[str, ...]:
        """The name of every class 1..k."""
        return self.class_names or tuple(f"class {i}" for i in range(1, self.k + 1))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "k": self.k,
            "bands": list(self.bands),
            "band_names": list(self.band_names),
            "features": self.features.to_json(),
            "centroids": self.centroids.tolist(),
            "palette": {str(c): list(rgb) for c, rgb in self.palette.items()},
            "sample": {"size": self.sample_size, "seed": self.seed},
            "inertia": self.inertia,
        }
        if self.fit is not None:
            doc["fit"] = {key: value for key, value in asdict(self.fit).items() if key != "timings_s"}
        if self.source is not None:
            doc["input"] = self.source.to_json()
        if self.class_names:
            doc["class_names"] = list(self.class_names)
        if self.balance is not None:
            doc["balance"] = self.balance
        doc["versions"] = dict(self.versions)
        return doc

    def save(self, path: str | Path) -> Path:
        """Write the model JSON (what ``landcover run`` writes beside its COG)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read a model JSON written by ``run`` or ``save``; errors name the file and what is wrong."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read the model JSON ({exc.__class__.__name__}); give a .model.json file") from None
        if not isinstance(doc, dict) or doc.get("format") not in (MODEL_FORMAT, _FORMAT_1):
            raise InputError(f"{path}: not a {MODEL_FORMAT} file; give the .model.json written by 'landcover run'")
        try:
            model = cls.from_json(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"{path}: the model JSON is incomplete or damaged ({exc.__class__.__name__}: {exc}); write it again with 'landcover run'"
            ) from None
        if model.centroids.ndim != 2 or model.centroids.shape[1] != len(model.features.names):
            raise InputError(f"{path}: the centroids do not match the features {list(model.features.names)}; write it again with 'landcover run'")
        return model

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Model:
        band_names = tuple(doc["band_names"])
        features = Features.from_json(doc["features"], band_names) if doc["format"] == MODEL_FORMAT else Features(band_names, band_names)
        return cls(
            centroids=np.asarray(doc["centroids"], dtype=np.float64),
            bands=tuple(doc["bands"]),
            band_names=band_names,
            features=features,
            palette={int(c): tuple(rgb) for c, rgb in doc["palette"].items()},
            sample_size=int(doc["sample"]["size"]),
            seed=int(doc["sample"]["seed"]),
            inertia=float(doc["inertia"]),
            class_names=tuple(doc.get("class_names") or ()),
            fit=FitRecord(**doc["fit"]) if doc.get("fit") else None,
            source=SourceRecord.from_json(doc["input"]) if doc.get("input") else None,
            balance=doc.get("balance"),
            versions=dict(doc.get("versions") or {}),
        )


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
    classes: Sequence[ClassConfig | dict[str, Any]] | None = None,
) -> Model:
    """Fit ``k`` classes to a (band, y, x) raster: a seeded sample of ``sample_size`` valid pixels
    spread over all of it (``sample.py``), the features' scaling measured on it, K-Means with
    ``n_init`` restarts (``kmeans.py``), classes numbered by ``order_by`` and coloured from their
    mean spectrum. The arguments are the config's ``sample``, ``model``, ``features`` and
    ``classes`` keys, checked the same way (``init`` None: the config's default seeding);
    ``nodata`` overrides the array's own.
    """
    settings = parse_config(
        {
            "sample": {"size": sample_size, "seed": seed},
            "model": {
                "k": k, "n_init": n_init, "max_iter": max_iter, "tol": tol, "order_by": order_by, **({} if init is None else {"init": init}),
            },
            "features": features.model_dump() if isinstance(features, FeaturesConfig) else (features or {}),
            "classes": [c.model_dump() if isinstance(c, ClassConfig) else c for c in classes] if classes is not None else None,
        },
        source="fit",
        schema=FitSettings,
    )
    imagery = as_imagery(data, nodata=nodata)
    spec = features_from_config(settings.features, imagery.band_names)
    m = settings.model
    if m.order_by == "ndvi":  # refused here, before any pixel is read
        ndvi_bands(imagery.band_names, "model.order_by: ndvi")

    started = time.perf_counter()
    fit_on_all = sample_size == "all"
    sample = draw_sample(imagery, size=PALETTE_SAMPLE if fit_on_all else settings.sample.size, seed=seed)
    if len(sample) == 0:
        raise DataError(f"{_name(imagery)}: no valid pixel in the input; check input.nodata (nodata= from Python) and the rasters' masks")
    spec = spec.fitted(sample)  # scaling statistics come from the sample
    sample_features = spec.apply(sample.T).T
    matrix = _feature_rows(full_matrix(imagery.data()), spec) if fit_on_all else sample_features
    sampled = time.perf_counter()

    with for_in_memory_data():
        found = fit_kmeans(
            matrix, seeds_from=sample_features, k=m.k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=seed, init=m.init
        )
    # Each class's mean spectrum in input units (on the sample) numbers and colours the classes.
    labels, _ = nearest(sample_features.T, found.centroids)
    stats = class_statistics(sample.T, labels, m.k)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        spectra = stats[:, 1:] / stats[:, :1]
    order = class_order(spectra, imagery.band_names, m.order_by)
    palette = palette_from_centroids(spectra[order], sample, imagery.band_names)
    timings = {"sample": sampled - started, "fit": time.perf_counter() - sampled}
    log.info("fit: %d classes on %d pixels (sample %.1f s, fit %.1f s)", m.k, found.n_pixels, timings["sample"], timings["fit"])
    return Model(
        centroids=found.centroids[order],
        bands=imagery.bands,
        band_names=imagery.band_names,
        features=spec,
        palette=apply_class_colours(palette, settings.classes),
        sample_size=found.n_pixels,
        seed=seed,
        inertia=found.inertia,
        class_names=settings.class_names() if settings.classes else (),
        fit=FitRecord(
            init=m.init, n_init=m.n_init, max_iter=m.max_iter, n_iter=found.n_iter, tol=m.tol, tol_absolute=found.tol_absolute,
            order_by=m.order_by, seeding=found.seeding, unstable=found.restarts.unstable, restarts=found.restarts.to_json(),
            timings_s={name: round(seconds, 3) for name, seconds in timings.items()},
        ),
        source=SourceRecord(dtype=imagery.dtype, count=len(imagery.bands), crs=imagery.crs, nodata=imagery.nodata),
    )


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


def load_model(path: str | Path) -> Model:
    """``Model.load``."""
    return Model.load(path)
