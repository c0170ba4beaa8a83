"""pydantic's validation errors as one line naming the YAML key and the fix."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

from pydantic import (
    BaseModel,
)

from pipeline.config.schema import Config

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
