"""What the I/O layer is asked to read: plain frozen types, built from the config at the stage edge.

The config's ``input`` section validates what a user wrote; these carry the values the readers
need, so the readers never import the config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pipeline.io.access import Access, access_of


@dataclass(frozen=True)
class StacQuery:
    """A STAC search (or a static catalog) whose items' asset become the mosaic's tiles."""

    source: str
    collections: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    query: dict[str, Any] | None = None
    asset: str = "image"
    sign: str = "none"
    on_top: str = "newest"
    max_items: int | None = None


@dataclass(frozen=True)
class InputSpec:
    """The files (or the STAC search) of a mosaic and how to read them (see the ``input`` keys)."""

    paths: tuple[str, ...] | None = None
    stac: StacQuery | None = None
    bands: tuple[int, ...] | None = None
    nodata: float | None = None
    alpha: str | int = "auto"
    band_names: tuple[str, ...] | None = None
    crs: str | None = None
    resolution: float | None = None
    exclude: tuple[str, ...] = ()
    """STAC item ids, or paths and URLs as given, left out of the mosaic."""
    access: Access = Access()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> InputSpec:
        """The spec of an ``input`` section as a report records it (JSON: lists for tuples)."""
        values = {f.name: _tuples(record[f.name]) for f in fields(cls) if record.get(f.name) is not None and f.name != "access"}
        if "stac" in values:
            stac = record["stac"]
            values["stac"] = StacQuery(**{f.name: _tuples(stac[f.name]) for f in fields(StacQuery) if f.name in stac})
        sign = values["stac"].sign if "stac" in values else "none"
        return cls(**values, access=access_of(record.get("remote"), sign=sign))


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
