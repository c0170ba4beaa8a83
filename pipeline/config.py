"""The run configuration: parsed once from YAML into frozen, typed objects.

Unknown keys, wrong types and impossible values are refused here, before any work, with the YAML
key and the fix in one line. Paths written in a YAML file are relative to that file; paths given
with ``--set`` are relative to the current directory, as a user typing them expects.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, TypeVar, Literal, get_args, get_origin

import yaml
from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from .errors import ConfigError
from .remote import is_remote, redact

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


_HINTS = {
    "input.paths": "give a file, a glob, a URL or a list of them",
    "input.stac": "give a mapping with source, and optionally collections, bbox, datetime, query, asset, sign",
    "input.stac.source": "give a STAC API URL or a catalog, collection or item collection (file or URL)",
    "input.stac.collections": "give a collection id or a list of them, e.g. [naip]",
    "input.stac.bbox": "give [west, south, east, north] in degrees, e.g. [-97.0, 46.5, -96.5, 47.0]",
    "input.stac.datetime": 'give a date or a range, e.g. "2020-01-01/2020-12-31"',
    "input.stac.query": 'give a mapping, e.g. {"naip:state": {"eq": "nd"}}',
    "input.stac.sign": 'use "none" or "planetary-computer"',
    "input.stac.on_top": 'use "newest" or "oldest"',
    "input.stac.max_items": "use a positive integer, or null for every item",
    "input.bands": "use a list of 1-based band numbers, e.g. [1, 2, 3, 4], or null for all",
    "input.nodata": "use a number, or null to use the rasters' own nodata",
    "input.alpha": 'use "auto", "none" or a 1-based band number',
    "input.band_names": "use one distinct name per band read, e.g. [red, green, blue, nir]",
    "features.bands": "use a list of band names, e.g. [red, green, blue, nir], or null for all",
    "features.indices": 'use a list of "ndvi" or {name: ..., a: <band>, b: <band>}',
    "features.scaling": 'use "none" or "standard"',
    "features.balance": 'use "none" or "overlaps"',
    "input.crs": 'use an EPSG code such as "EPSG:26914", or null when all tiles share one CRS',
    "input.resolution": "use a positive pixel size in the units of input.crs, e.g. 1.0, or null",
    "sample.size": 'use a positive integer, or "all"',
    "sample.seed": "use a non-negative integer",
    "model.k": "use an integer from 2 to 254",
    "model.init": 'use "k-means++" or "k-means||"',
    "model.n_init": "use an integer from 1 to 100, e.g. 20",
    "model.max_iter": "use a positive integer",
    "model.tol": "use a non-negative number such as 1.0e-4",
    "model.order_by": 'use "brightness", "ndvi" or "none"',
    "output.path": "use a file path ending in .tif",
    "output.overwrite": "use true or false",
    "output.confidence": "use true or false",
    "dask.chunk": "use a multiple of 512, e.g. 2048",
    "classes": 'use a list with one entry per class 1..k, e.g. [{name: water, color: "#1f78b4"}, ...]',
    "classes.name": "give each class a non-empty name, e.g. water",
    "classes.color": 'use "#rrggbb", e.g. "#1f78b4", or leave it out for the computed colour',
    "dask.scheduler": "use threads, processes, local-cluster, or a running scheduler's address such as tcp://10.0.0.5:8786",
    "dask.workers": "use a positive integer, or null for one per core",
    "dask.threads_per_worker": "use a positive integer, or null to let dask choose",
    "dask.memory_limit": 'use a size per worker such as "4GB", or "auto"',
}


def _key(loc: tuple[Any, ...], root: type[BaseModel] = Config) -> tuple[str, type[BaseModel]]:
    """The dotted YAML key of an error location, and the section that holds it.

    Union members and list indices add parts to pydantic's location that are not YAML keys.
    """
    parts: list[str] = []
    model: type[BaseModel] = root
    section: type[BaseModel] = root
    for part in loc:
        if isinstance(part, int) and parts and model is not section:
            parts[-1] += f"[{part}]"  # an entry of a list of sections, e.g. classes[2]
            section = model
            continue
        if not isinstance(part, str):
            break
        parts.append(part)
        field = model.model_fields.get(part)
        entry = _list_entry(field.annotation) if field is not None else None
        if entry is not None:
            model = entry  # entered only once an index follows
            continue
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        section = model = field.annotation
    return ".".join(parts), section


def _list_entry(annotation: Any) -> type[BaseModel] | None:
    """The section type of a ``tuple[Section, ...] | None`` field, else None."""
    for arg in get_args(annotation):
        inner = get_args(arg) if get_origin(arg) is tuple else (arg,)
        if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            return inner[0]
    return None


def _describe(error: dict[str, Any], root: type[BaseModel] = Config) -> str:
    key, section = _key(error["loc"], root)
    if error["type"] == "extra_forbidden":
        parent = key.rpartition(".")[0]
        where = f"under '{parent}'" if parent else "at the top level"
        return f"unknown key '{key}'; valid keys {where} are: {', '.join(section.model_fields)}"
    if error["type"] == "missing":
        return f"'{key}' is required"
    message = error["msg"].removeprefix("Value error, ")
    if not key:  # a cross-field check: its message already names the keys
        return message
    hint = _HINTS.get(re.sub(r"\[\d+\]", "", key))
    return f"'{key}': {message} (got {error.get('input')!r})" + (f"; {hint}" if hint else "")


_PATH_KEYS = (("input", "paths"), ("output", "path"))
_S = TypeVar("_S", bound=BaseModel)


def _absolute(value: Any, base: Path) -> Any:
    """Relative path strings (alone or in a list) made absolute against ``base``; URLs and
    others untouched."""
    if isinstance(value, str):
        return value if _is_url(value) else os.path.normpath(base / value)
    if isinstance(value, list):
        return [_absolute(v, base) if isinstance(v, str) else v for v in value]
    return value


def _is_url(value: str) -> bool:
    return "://" in value or is_remote(value)


def _apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: write KEY=VALUE, e.g. --set model.k=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    *sections, leaf = key.strip().split(".")
    if tuple(key.strip().split(".")) in _PATH_KEYS:
        value = _absolute(value, Path.cwd())
    node = raw
    for part in sections:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section; see --show-config")
    node[leaf] = value


def parse_config(raw: Any, *, source: str = "config", schema: type[_S] = Config) -> _S:
    """Validate an already-loaded mapping (paths must be resolved by the caller)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections input, features, sample, model, output, dask")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0], schema)}{more}") from None


def dask_settings(overrides: list[str] | tuple[str, ...]) -> DaskConfig:
    """The ``dask`` section from ``--set dask.KEY=VALUE`` overrides alone (predict has no YAML)."""
    raw: dict[str, Any] = {}
    for assignment in overrides:
        _apply_override(raw, assignment)
    return parse_config(raw, source="--set", schema=ComputeSettings).dask


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML run file, apply ``KEY=VALUE`` overrides, validate, and return the Config."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.__class__.__name__}); give a YAML file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with sections input, features, sample, model, output, dask")
    base = path.resolve().parent
    for section, leaf in _PATH_KEYS:
        if isinstance(raw.get(section), dict) and leaf in raw[section]:
            raw[section][leaf] = _absolute(raw[section][leaf], base)
    stac = raw.get("input", {}).get("stac") if isinstance(raw.get("input"), dict) else None
    if isinstance(stac, dict) and isinstance(stac.get("source"), str):
        stac["source"] = _absolute(stac["source"], base)
    for assignment in overrides:
        _apply_override(raw, assignment)
    return parse_config(raw, source=str(path))
