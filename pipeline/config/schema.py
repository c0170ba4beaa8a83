"""The run configuration's sections: frozen, strict pydantic models, one docstring per key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from dask.utils import parse_bytes
from pydantic import field_validator, model_validator

from pipeline.config.fields import Section, setting, unique_names
from pipeline.config.input import InputConfig
from pipeline.config.isodata import IsodataConfig
from pipeline.config.postprocess import PostprocessConfig

INPUT_BLOCK = 512  # NAIP and our COGs use 512-pixel tiles; chunks must align to them.


class NormalizedDifference(Section):
    """A derived feature (a - b) / (a + b) of two input bands, named by the user."""

    name: str
    a: str
    b: str


class FeaturesConfig(Section):
    bands: tuple[str, ...] | None = setting(None, hint='use a list of band names, e.g. [red, green, blue, nir], or null for all')
    """Input bands (by name) used as features as they are; None = every band read."""
    indices: tuple[Literal["ndvi"] | NormalizedDifference, ...] = setting((), hint='use a list of "ndvi" or {name: ..., a: <band>, b: <band>}')
    """Derived features computed per block: "ndvi" (bands named nir and red) or {name, a, b}."""
    scaling: Literal["none", "standard"] = setting("none", hint='use "none" or "standard"')
    """"standard" subtracts each feature's mean and divides by its standard deviation, both
    measured on the sample, so that no feature dominates the distances by its units alone."""
    balance: Literal["none", "overlaps"] = setting("none", hint='use "none" or "overlaps"')
    """"overlaps": a gain and offset per tile and band, solved from where tiles overlap (the
    same ground seen twice) and applied to every pixel before the features; see ``algo/balance``."""

    @field_validator("bands", "indices", mode="before")
    @classmethod
    def _as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class SampleConfig(Section):
    size: int | Literal["all"] = setting(1_000_000, hint='use a positive integer, or "all"')
    """Valid pixels drawn for fitting; "all" fits on every valid pixel (slow on big mosaics)."""
    seed: int = setting(0, ge=0, hint='use a non-negative integer')

    @field_validator("size")
    @classmethod
    def _size_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError('must be a positive number of pixels or "all"')
        return value


class ModelConfig(Section):
    k: int = setting(7, ge=2, le=254, hint='use an integer from 2 to 254')
    """Number of classes; labels are 1..k and 0 is nodata, so k fits in uint8."""
    init: Literal["k-means++", "k-means||"] = setting("k-means++", hint='use "k-means++" or "k-means||"')
    """How each restart draws its k starting centres (see ``algo/kmeans.py``). "k-means++": greedy
    k-means++, one centre at a time, each the best of 2 + ln k pixels drawn in proportion to their
    squared distance to the centres so far. "k-means||": scalable k-means++, 5 passes each drawing
    about 2k candidate pixels at once in the same proportion, then reduced to k centres by
    k-means++ with each candidate weighted by the pixels nearest to it."""
    n_init: int = setting(20, ge=1, le=100, hint='use an integer from 1 to 100, e.g. 20')
    """Restarts (seeded by ``init``) on 100 000 pixels of the sample, each from its own seed; the
    two best different maps are run to convergence on the whole sample and the lower inertia wins."""
    max_iter: int = setting(300, ge=1, hint='use a positive integer')
    tol: float = setting(1e-4, ge=0, hint='use a non-negative number such as 1.0e-4')
    """Relative to the sample's mean band variance, as in scikit-learn."""
    order_by: Literal["brightness", "ndvi", "none"] = setting("brightness", hint='use "brightness", "ndvi" or "none"')
    """How classes are numbered: by the mean of their input bands, by their NDVI (needs bands
    named red and nir), or as fitted. Computed from each class's mean spectrum on the sample."""
    method: Literal["kmeans", "isodata"] = setting("kmeans", hint='use "kmeans" or "isodata"')
    """"kmeans": k classes. "isodata": k is where ISODATA starts; it splits and merges classes
    (``model.isodata``) and the restarts above fit the k it ends at (see ``algo/isodata.py``)."""
    isodata: IsodataConfig = IsodataConfig()


class OutputConfig(Section):
    path: str = setting("out/labels.tif", hint='use a file path ending in .tif')
    """The COG; ``.model.json``, ``.report.json`` and ``.png`` sit beside it."""
    overwrite: bool = setting(False, hint='use true or false')
    confidence: bool = setting(False, hint='use true or false')
    """Also write ``<stem>.confidence.tif``: per pixel, the distance to the second-nearest
    centroid minus the distance to the nearest (feature units; small = doubtful)."""
    raw: bool = setting(False, hint='use true or false')
    """With ``postprocess``, also write ``<stem>.raw.tif``: the labels before the cleanup."""
    overviews: Literal["nearest", "mode"] = setting("mode", hint='use "mode" or "nearest"')
    """How each overview level of the labels is made from the finer one: "mode", the most
    frequent class of each 2 x 2 block (ties: the top-left pixel's class if tied, else the
    smallest); "nearest", the top-left pixel."""


class ClassConfig(Section):
    name: str = setting(..., min_length=1, hint='give each class a non-empty name, e.g. water')
    """What the class is, e.g. "water"; goes into the COG tags, the legend and the STAC item."""
    color: str | None = setting(None, hint='use "#rrggbb", e.g. "#1f78b4", or leave it out for the computed colour')
    """"#rrggbb"; overrides the computed true-colour palette entry of this class."""

    @field_validator("name")
    @classmethod
    def _name_visible(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a class name must not be blank")
        return value.strip()

    @field_validator("color")
    @classmethod
    def _color_hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError("colours are written '#rrggbb'")
        return value.lower() if value else value

    @property
    def rgb(self) -> tuple[int, int, int] | None:
        return None if self.color is None else tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))


class ClassNames(Section):
    """``classes: {names: auto}``: a suggested name for every class from its mean spectrum."""

    names: Literal["auto"] = setting("auto", hint="use auto, or give classes as a list of {name, color} entries")
    """auto: each class is named by the first spectral rule its mean meets (algo/naming.py)."""


_LOCAL_SCHEDULERS = ("threads", "processes", "local-cluster")


_ADDRESS = re.compile(r"(tcp|tls)://[^\s/:]+:\d+")


class DaskConfig(Section):
    chunk: int = setting(2048, ge=INPUT_BLOCK, hint='use a multiple of 512, e.g. 2048')
    """Pixels per chunk side; a multiple of the 512-pixel input blocks."""
    scheduler: str = setting("threads", hint="use threads, processes, local-cluster, or a running scheduler's address such as tcp://10.0.0.5:8786")
    """threads, processes, local-cluster, or the address of a running scheduler (tcp://host:port)."""
    workers: int | None = setting(None, ge=1, hint='use a positive integer, or null for one per core')
    """Threads (threads), processes (processes) or worker processes (local-cluster); None = one per core."""
    threads_per_worker: int | None = setting(None, ge=1, hint='use a positive integer, or null to let dask choose')
    """local-cluster only."""
    memory_limit: str | None = setting(None, hint='use a size per worker such as "4GB", or "auto"')
    """local-cluster only: memory per worker, e.g. "4GB", or "auto" (the machine's share)."""

    @field_validator("scheduler")
    @classmethod
    def _scheduler_known(cls, value: str) -> str:
        if value not in _LOCAL_SCHEDULERS and not _ADDRESS.fullmatch(value):
            raise ValueError("not a scheduler name or a tcp://host:port address")
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory_is_a_size(cls, value: str | None) -> str | None:
        if value not in (None, "auto"):
            try:
                parse_bytes(value)
            except ValueError:
                raise ValueError("not a size") from None
        return value

    @field_validator("chunk")
    @classmethod
    def _chunk_aligned(cls, value: int) -> int:
        if value % INPUT_BLOCK:
            raise ValueError(f"must be a multiple of {INPUT_BLOCK} (the input block size)")
        return value


class FitSettings(Section):
    """The keys the fit stage takes (``pipeline.fit``'s arguments), checked together."""

    features: FeaturesConfig = FeaturesConfig()
    sample: SampleConfig = SampleConfig()
    model: ModelConfig = ModelConfig()
    classes: tuple[ClassConfig, ...] | ClassNames | None = setting(
        None, hint='use a list with one entry per class 1..k, e.g. [{name: water, color: "#1f78b4"}, ...], or {names: auto}'
    )
    """Names (and optional colours) of classes 1..k, in label order; {names: auto} = suggested
    from each class's spectrum; None = "class 1", ...."""

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_tuple(cls, value: Any) -> Any:
        # A mapping is only ever {names: auto}: checked here so that its errors are not mixed with the list's.
        if value == "auto":
            return ClassNames()
        if isinstance(value, dict):
            if set(value) - {"names"} or value.get("names", "auto") != "auto":
                raise ValueError("as a mapping, classes takes only names: auto")
            return ClassNames()
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _features_named(self) -> FitSettings:
        # Checked here so that the message is not decorated with the whole features section.
        features = self.features
        if features.bands is not None and not features.bands and not features.indices:
            raise ValueError("features.bands is empty and features.indices lists nothing; give at least one feature")
        names = (features.bands or ()) + tuple(i if isinstance(i, str) else i.name for i in features.indices)
        try:
            unique_names(names)
        except ValueError as exc:
            raise ValueError(f"features: {exc} in {list(names)}; give every feature its own name") from None
        return self

    @model_validator(mode="after")
    def _sample_holds_k(self) -> FitSettings:
        if isinstance(self.sample.size, int) and self.sample.size < self.model.k:
            raise ValueError(
                f"sample.size ({self.sample.size}) is smaller than model.k ({self.model.k}); "
                "raise sample.size or lower model.k"
            )
        return self

    @model_validator(mode="after")
    def _isodata_range(self) -> FitSettings:
        m = self.model
        if m.method != "isodata":
            return self
        k_min, k_max = m.isodata.k_range(m.k)
        if k_min > k_max:
            raise ValueError(f"model.isodata.k_min ({k_min}) is above model.isodata.k_max ({k_max}); give k_min <= model.k <= k_max")
        if not k_min <= m.k <= k_max:
            raise ValueError(
                f"model.k ({m.k}), where ISODATA starts, is outside model.isodata.k_min..k_max ({k_min}..{k_max}); "
                "give k_min <= model.k <= k_max"
            )
        if isinstance(self.classes, tuple):
            raise ValueError(
                "classes: a list names classes 1..k, but model.method: isodata chooses k from the data; "
                "use classes: {names: auto}, or leave classes out"
            )
        return self

    @model_validator(mode="after")
    def _one_name_per_class(self) -> FitSettings:
        if not isinstance(self.classes, tuple) or self.model.method == "isodata":
            return self
        if len(self.classes) != self.model.k:
            raise ValueError(
                f"classes: {len(self.classes)} entries but model.k is {self.model.k}; "
                "give one {name, color} entry per class 1..k, in label order"
            )
        names = [c.name for c in self.classes]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ValueError(f"classes: the name {twice!r} is given twice; make each class name unique (e.g. '{twice} 2')")
        return self

    @property
    def suggest_names(self) -> bool:
        return isinstance(self.classes, ClassNames)

    @property
    def given_classes(self) -> tuple[ClassConfig, ...] | None:
        """The configured {name, color} entries, if any."""
        return self.classes if isinstance(self.classes, tuple) else None

    def class_names(self) -> tuple[str, ...]:
        """The name of each class 1..k as configured ("class i" when not configured or suggested)."""
        if not isinstance(self.classes, tuple):
            return tuple(f"class {i}" for i in range(1, self.model.k + 1))
        return tuple(c.name for c in self.classes)


class ComputeSettings(Section):
    """Where and in which chunks a command computes (``predict --set dask.KEY=VALUE``)."""

    dask: DaskConfig = DaskConfig()

    @model_validator(mode="after")
    def _dask_options_fit_scheduler(self) -> ComputeSettings:
        # Cross-field checks live on Config, so that the message is not followed by the whole section.
        d = self.dask
        for key in ("threads_per_worker", "memory_limit"):
            if getattr(d, key) is not None and d.scheduler != "local-cluster":
                raise ValueError(
                    f"dask.{key} applies only to dask.scheduler: local-cluster (got {d.scheduler}); remove it"
                )
        if d.workers is not None and d.scheduler not in _LOCAL_SCHEDULERS:
            raise ValueError(
                "dask.workers: a running cluster has the workers it was started with (dask worker ...); "
                "remove dask.workers"
            )
        return self


class PredictSettings(ComputeSettings):
    """What ``predict --set`` may change: the scheduler and chunks, and the model's postprocess
    (the keys given replace the model's, the others are the model's)."""

    postprocess: PostprocessConfig = PostprocessConfig()


class Config(FitSettings, ComputeSettings):
    input: InputConfig
    output: OutputConfig = OutputConfig()
    postprocess: PostprocessConfig = PostprocessConfig()

    @model_validator(mode="after")
    def _one_source(self) -> Config:
        if (self.input.paths is None) == (self.input.stac is None):
            raise ValueError("input: give either input.paths (files, globs, URLs) or input.stac (a STAC search), not both")
        return self

    @model_validator(mode="after")
    def _resolution_needs_crs(self) -> Config:
        if self.input.resolution is not None and self.input.crs is None:
            raise ValueError("input.resolution needs input.crs (the CRS whose units it is in); set both")
        return self

    @model_validator(mode="after")
    def _raw_needs_cleanup(self) -> Config:
        p = self.postprocess
        if self.output.raw and p.majority <= 1 and p.sieve in (0, 1):
            raise ValueError("output.raw writes the labels before postprocess, which is off; set postprocess.majority or postprocess.sieve, or remove output.raw")
        return self

    @property
    def output_path(self) -> Path:
        return Path(self.output.path)

    def to_yaml(self) -> str:
        dump = self.model_dump(mode="json")
        order = ("input", "features", "sample", "model", "postprocess", "output", "dask", "classes")
        return yaml.safe_dump({key: dump[key] for key in order}, sort_keys=False)
