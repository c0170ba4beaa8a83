"""The fitted model, typed: centroids in feature space and how to read and name what they label;
saved as ``<output>.model.json`` and loaded back, enough to label new imagery exactly as the run
that fitted it labelled its own."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from pipeline.algo.balance.record import BalanceRecord
from pipeline.algo.cleanup import Cleanup
from pipeline.algo.features import Features
from pipeline.errors import InputError

log = logging.getLogger(__name__)


MODEL_FORMAT = "landcover-model/2"


_FORMAT_1 = "landcover-model/1"  # centroids in input bands, no features section


_VERSIONED = ("landcover-pipeline", "dask", "distributed", "scikit-learn", "numpy", "rasterio", "xarray", "rioxarray")


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
    method: str = "kmeans"
    """``model.method``: "kmeans", or "isodata" (which chose k)."""
    isodata: dict[str, Any] | None = None
    """With ISODATA, ``isodata.Isodata.to_json()``: its settings, the k it chose and its history."""
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
    """Input hrefs, redacted (no query, no credentials); None for a STAC search or an in-memory array."""
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
    """Names of classes 1..k as configured (``classes:``) or suggested; empty = "class 1", "class 2", ..."""
    name_rules: tuple[str, ...] = ()
    """With suggested names (``classes: {names: auto}``): the spectral rule that named each class."""
    fit: FitRecord | None = None
    source: SourceRecord | None = None
    balance: BalanceRecord | None = None
    """Each tile's correction (``features.balance``), reused by ``predict``."""
    postprocess: Cleanup | None = None
    """The cleanup of the labels (``postprocess``), reapplied by ``predict``."""
    sample_design: dict[str, Any] | None = None
    """How the sample was drawn (``sample.SampleRecord.to_json()``: the first look, the windows
    read and their probabilities)."""
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
            "sample": {"size": self.sample_size, "seed": self.seed, **({"design": self.sample_design} if self.sample_design else {})},
            "inertia": self.inertia,
        }
        if self.fit is not None:
            doc["fit"] = {key: value for key, value in asdict(self.fit).items() if key != "timings_s" and not (key == "isodata" and value is None)}
        if self.source is not None:
            doc["input"] = self.source.to_json()
        if self.class_names:
            doc["class_names"] = list(self.class_names)
        if self.name_rules:
            doc["class_name_rules"] = list(self.name_rules)
        if self.balance is not None:
            doc["balance"] = self.balance.to_json()
        if self.postprocess is not None:
            doc["postprocess"] = self.postprocess.to_json()
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
            name_rules=tuple(doc.get("class_name_rules") or ()),
            fit=FitRecord(**doc["fit"]) if doc.get("fit") else None,
            source=SourceRecord.from_json(doc["input"]) if doc.get("input") else None,
            balance=BalanceRecord.from_json(doc["balance"]) if doc.get("balance") else None,
            postprocess=Cleanup.from_json(doc["postprocess"]) if doc.get("postprocess") else None,
            sample_design=doc["sample"].get("design"),
            versions=dict(doc.get("versions") or {}),
        )


def load_model(path: str | Path) -> Model:
    """``Model.load``."""
    return Model.load(path)


def match_bands(names: tuple[str, ...], numbers: tuple[int, ...], model: Model, *, subject: str, fix: str) -> None:
    """Refuse, in one line naming ``subject``, bands that are not the model's in the model's order.

    ``names`` and ``numbers`` are the bands as they would be fed to the model. A band matches by
    name (ignoring case); an undescribed band (GDAL's ``band<n>``), on either side, matches only
    the band of the same number. The model's bands in another order are refused even when their
    names agree: rioxarray keeps a file's ``long_name`` when bands are selected, so the names of
    ``data.sel(band=[4, 3, 2, 1])`` are those of bands 1..4.
    """
    expected_names, expected_numbers = model.band_names, model.bands
    if len(names) != len(expected_names):
        raise InputError(
            f"{subject}: has {len(names)} band(s) but the model was fitted on {len(expected_names)} "
            f"({', '.join(expected_names)}); {fix}"
        )
    if tuple(numbers) != tuple(expected_numbers) and sorted(numbers) == sorted(expected_numbers):
        raise InputError(
            f"{subject}: bands {list(numbers)} are the model's bands {list(expected_numbers)} in another order; "
            f"{fix}, e.g. data.sel(band={list(expected_numbers)})"
        )
    for position, (name, number, expected, expected_number) in enumerate(
        zip(names, numbers, expected_names, expected_numbers), start=1
    ):
        undescribed = name == f"band{number}" or expected == f"band{expected_number}"
        if name.lower() != expected.lower() and not (undescribed and number == expected_number):
            raise InputError(
                f"{subject}: band {position} is named '{name}' but the model's band {position} is '{expected}'; {fix}"
            )
