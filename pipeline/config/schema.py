"""The run configuration's sections: frozen, strict pydantic models, one docstring per key."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from dask.utils import parse_bytes
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from pipeline.io.remote import redact

INPUT_BLOCK = 512  # NAIP and our COGs use 512-pixel tiles; chunks must align to them.


class _Section(BaseModel):
    # strict: "7" is not a k, "yes" is not a bool; YAML already gives real types.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _one_or_many(value: Any) -> Any:
    """A YAML string or list as a tuple (one entry, or many)."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


class StacConfig(_Section):
    """A STAC search (or a static catalog) whose items' asset become the mosaic's tiles."""

    source: str
    """A STAC API URL, or a catalog, collection or item collection (a file or a URL)."""
    collections: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    """west, south, east, north in degrees of longitude and latitude."""
    datetime: str | None = None
    """One date, or a range "2020-01-01/2020-12-31" (".." for an open end)."""
    query: dict[str, Any] | None = None
    """STAC API query extension, e.g. {"naip:state": {"eq": "nd"}} (APIs only)."""
    asset: str = "image"
    """The asset of each item that is read (Planetary Computer's NAIP: image)."""
    sign: Literal["none", "planetary-computer"] = "none"
    """"planetary-computer" signs the hrefs (needs the extra: pip install 'landcover-pipeline[planetary-computer]')."""
    on_top: Literal["newest", "oldest"] = "newest"
    """Which item wins where items overlap (years, re-flights), by the items' datetime."""
    max_items: int | None = Field(default=None, ge=1)
    """Stop after this many items (a first try on a small area); None = every item found."""

    @field_validator("collections", mode="before")
    @classmethod
    def _collections_as_tuple(cls, value: Any) -> Any:
        return _one_or_many(value)

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox_as_tuple(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(float(v) if isinstance(v, int) else v for v in value)
        return value

    @field_validator("bbox")
    @classmethod
    def _bbox_in_degrees(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None:
            west, south, east, north = value
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise ValueError("not west < east in -180..180 and south < north in -90..90")
        return value

    @field_validator("datetime", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        # YAML reads 2020-01-01 as a date: it means the same as the text.
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value

    @field_serializer("source", when_used="json")
    def _source_redacted(self, value: str) -> str:
        return redact(value)


class InputConfig(_Section):
    paths: tuple[str, ...] | None = Field(default=None, min_length=1)
    """Files, globs, a .vrt or URLs (https, s3, az, gs, /vsi...); later files are drawn on top
    where tiles overlap."""
    stac: StacConfig | None = None
    """A STAC search or catalog, in place of ``paths``."""
    bands: tuple[int, ...] | None = None
    """1-based band numbers used as features; None = every band except alpha."""
    nodata: float | None = None
    """Overrides the rasters' nodata: a pixel is invalid when every band equals it."""
    alpha: Literal["auto", "none"] | int = "auto"
    """The alpha (mask) band: "auto" = the band the file marks alpha, "none", or a band number.
    GDAL marks band 4 of any 4-band uint8 GeoTIFF written without PHOTOMETRIC=MINISBLACK as
    alpha, so an RGB+NIR file may need "none"."""
    band_names: tuple[str, ...] | None = None
    """One name per band read (e.g. red, green, blue, nir); None = the files' band descriptions,
    or band1, band2, ... where they have none. Features and model.order_by refer to these names."""
    crs: str | None = None
    """The mosaic's CRS, e.g. "EPSG:26914": tiles in other CRSs are reprojected onto its grid on
    the fly (nearest neighbour). None = every tile must share one CRS."""
    resolution: float | None = Field(default=None, gt=0)
    """Pixel size in units of ``crs``; None = the finest of the tiles' (estimated in ``crs``)."""

    @field_validator("paths", mode="before")
    @classmethod
    def _paths_as_tuple(cls, value: Any) -> Any:
        return _one_or_many(value)

    @field_serializer("paths", when_used="json")
    def _paths_redacted(self, value: tuple[str, ...] | None) -> list[str] | None:
        # Records (report, HTML page, --show-config) never carry a signed href's secret.
        return None if value is None else [redact(p) for p in value]

    @field_validator("crs")
    @classmethod
    def _crs_known(cls, value: str | None) -> str | None:
        if value is not None:
            import rasterio
            from rasterio.crs import CRS
            from rasterio.errors import CRSError

            try:
                with rasterio.Env():  # routes PROJ's complaint into the exception, not to stderr
                    CRS.from_user_input(value)
            except CRSError:
                raise ValueError("not a CRS that PROJ knows") from None
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha_positive(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("band numbers are 1-based")
        return value

    @field_validator("bands", "band_names", mode="before")
    @classmethod
    def _bands_as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("band_names")
    @classmethod
    def _names_unique(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return value if value is None else _unique_names(value)

    @field_validator("bands")
    @classmethod
    def _bands_valid(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return value
        if not value or any(b < 1 for b in value):
            raise ValueError("band numbers are 1-based and the list must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("a band is listed twice")
        return value


def _unique_names(names: tuple[str, ...]) -> tuple[str, ...]:
    if any(not name.strip() for name in names):
        raise ValueError("a name is empty")
    lowered = [name.lower() for name in names]
    if len(set(lowered)) != len(lowered):
        raise ValueError("a name is listed twice (names are compared ignoring case)")
    return names


class NormalizedDifference(_Section):
    """A derived feature (a - b) / (a + b) of two input bands, named by the user."""

    name: str
    a: str
    b: str


class FeaturesConfig(_Section):
    bands: tuple[str, ...] | None = None
    """Input bands (by name) used as features as they are; None = every band read."""
    indices: tuple[Literal["ndvi"] | NormalizedDifference, ...] = ()
    """Derived features computed per block: "ndvi" (bands named nir and red) or {name, a, b}."""
    scaling: Literal["none", "standard"] = "none"
    """"standard" subtracts each feature's mean and divides by its standard deviation, both
    measured on the sample, so that no feature dominates the distances by its units alone."""
    balance: Literal["none", "overlaps"] = "none"
    """"overlaps": a gain and offset per tile and band, solved from where tiles overlap (the
    same ground seen twice) and applied to every pixel before the features; see balance.py."""

    @field_validator("bands", "indices", mode="before")
    @classmethod
    def _as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class SampleConfig(_Section):
    size: int | Literal["all"] = 1_000_000
    """Valid pixels drawn for fitting; "all" fits on every valid pixel (slow on big mosaics)."""
    seed: int = Field(default=0, ge=0)

    @field_validator("size")
    @classmethod
    def _size_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError('must be a positive number of pixels or "all"')
        return value


class ModelConfig(_Section):
    k: int = Field(default=7, ge=2, le=254)
    """Number of classes; labels are 1..k and 0 is nodata, so k fits in uint8."""
    init: Literal["k-means++", "k-means||"] = "k-means++"
    """How each restart draws its k starting centres (see ``kmeans.py``). "k-means++": greedy
    k-means++, one centre at a time, each the best of 2 + ln k pixels drawn in proportion to their
    squared distance to the centres so far. "k-means||": scalable k-means++, 5 passes each drawing
    about 2k candidate pixels at once in the same proportion, then reduced to k centres by
    k-means++ with each candidate weighted by the pixels nearest to it."""
    n_init: int = Field(default=20, ge=1, le=100)
    """Restarts (seeded by ``init``) on 100 000 pixels of the sample, each from its own seed; the
    two best different maps are run to convergence on the whole sample and the lower inertia wins."""
    max_iter: int = Field(default=300, ge=1)
    tol: float = Field(default=1e-4, ge=0)
    """Relative to the sample's mean band variance, as in scikit-learn."""
    order_by: Literal["brightness", "ndvi", "none"] = "brightness"
    """How classes are numbered: by the mean of their input bands, by their NDVI (needs bands
    named red and nir), or as fitted. Computed from each class's mean spectrum on the sample."""


class OutputConfig(_Section):
    path: str = "out/labels.tif"
    """The COG; ``.model.json``, ``.report.json`` and ``.png`` sit beside it."""
    overwrite: bool = False
    confidence: bool = False
    """Also write ``<stem>.confidence.tif``: per pixel, the distance to the second-nearest
    centroid minus the distance to the nearest (feature units; small = doubtful)."""


class ClassConfig(_Section):
    name: str = Field(min_length=1)
    """What the class is, e.g. "water"; goes into the COG tags, the legend and the STAC item."""
    color: str | None = None
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


_LOCAL_SCHEDULERS = ("threads", "processes", "local-cluster")


_ADDRESS = re.compile(r"(tcp|tls)://[^\s/:]+:\d+")


class DaskConfig(_Section):
    chunk: int = Field(default=2048, ge=INPUT_BLOCK)
    """Pixels per chunk side; a multiple of the 512-pixel input blocks."""
    scheduler: str = "threads"
    """threads, processes, local-cluster, or the address of a running scheduler (tcp://host:port)."""
    workers: int | None = Field(default=None, ge=1)
    """Threads (threads), processes (processes) or worker processes (local-cluster); None = one per core."""
    threads_per_worker: int | None = Field(default=None, ge=1)
    """local-cluster only."""
    memory_limit: str | None = None
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


class FitSettings(_Section):
    """The keys the fit stage takes (``pipeline.fit``'s arguments), checked together."""

    features: FeaturesConfig = FeaturesConfig()
    sample: SampleConfig = SampleConfig()
    model: ModelConfig = ModelConfig()
    classes: tuple[ClassConfig, ...] | None = None
    """Names (and optional colours) of classes 1..k, in label order; None = "class 1", ...."""

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _features_named(self) -> FitSettings:
        # Checked here so that the message is not decorated with the whole features section.
        features = self.features
        if features.bands is not None and not features.bands and not features.indices:
            raise ValueError("features.bands is empty and features.indices lists nothing; give at least one feature")
        names = (features.bands or ()) + tuple(i if isinstance(i, str) else i.name for i in features.indices)
        try:
            _unique_names(names)
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
    def _one_name_per_class(self) -> FitSettings:
        if self.classes is None:
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

    def class_names(self) -> tuple[str, ...]:
        """The name of each class 1..k ("class i" when not configured)."""
        if self.classes is None:
            return tuple(f"class {i}" for i in range(1, self.model.k + 1))
        return tuple(c.name for c in self.classes)


class ComputeSettings(_Section):
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


class Config(FitSettings, ComputeSettings):
    input: InputConfig
    output: OutputConfig = OutputConfig()

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

    @property
    def output_path(self) -> Path:
        return Path(self.output.path)

    def to_yaml(self) -> str:
        dump = self.model_dump(mode="json")
        order = ("input", "features", "sample", "model", "output", "dask", "classes")
        return yaml.safe_dump({key: dump[key] for key in order}, sort_keys=False)
