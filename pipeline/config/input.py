"""The ``input`` section: the files or the STAC search, and how their pixels are read."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import field_serializer, field_validator

from pipeline.config.fields import Section, one_or_many, setting, unique_names
from pipeline.config.remote import RemoteConfig
from pipeline.io.remote import redact


class StacConfig(Section):
    """A STAC search (or a static catalog) whose items' asset become the mosaic's tiles."""

    source: str = setting(..., hint='give a STAC API URL or a catalog, collection or item collection (file or URL)')
    """A STAC API URL, or a catalog, collection or item collection (a file or a URL)."""
    collections: tuple[str, ...] | None = setting(None, hint='give a collection id or a list of them, e.g. [naip]')
    bbox: tuple[float, float, float, float] | None = setting(None, hint='give [west, south, east, north] in degrees, e.g. [-97.0, 46.5, -96.5, 47.0]')
    """west, south, east, north in degrees of longitude and latitude."""
    datetime: str | None = setting(None, hint='give a date or a range, e.g. "2020-01-01/2020-12-31"')
    """One date, or a range "2020-01-01/2020-12-31" (".." for an open end)."""
    query: dict[str, Any] | None = setting(None, hint='give a mapping, e.g. {"naip:state": {"eq": "nd"}}')
    """STAC API query extension, e.g. {"naip:state": {"eq": "nd"}} (APIs only)."""
    asset: str = "image"
    """The asset of each item that is read (Planetary Computer's NAIP: image)."""
    sign: Literal["none", "planetary-computer"] = setting("none", hint='use "none" or "planetary-computer"')
    """"planetary-computer" signs the hrefs (needs the extra: pip install 'landcover-pipeline[planetary-computer]')."""
    on_top: Literal["newest", "oldest"] = setting("newest", hint='use "newest" or "oldest"')
    """Which item wins where items overlap (years, re-flights), by the items' datetime."""
    max_items: int | None = setting(None, ge=1, hint='use a positive integer, or null for every item')
    """Stop after this many items (a first try on a small area); None = every item found."""

    @field_validator("collections", mode="before")
    @classmethod
    def _collections_as_tuple(cls, value: Any) -> Any:
        return one_or_many(value)

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


class InputConfig(Section):
    paths: tuple[str, ...] | None = setting(None, min_length=1, hint='give a file, a glob, a URL or a list of them')
    """Files, globs, a .vrt or URLs (https, s3, az, gs, /vsi...); later files are drawn on top
    where tiles overlap."""
    stac: StacConfig | None = setting(None, hint='give a mapping with source, and optionally collections, bbox, datetime, query, asset, sign')
    """A STAC search or catalog, in place of ``paths``."""
    bands: tuple[int, ...] | None = setting(None, hint='use a list of 1-based band numbers, e.g. [1, 2, 3, 4], or null for all')
    """1-based band numbers used as features; None = every band except alpha."""
    nodata: float | None = setting(None, hint="use a number, or null to use the rasters' own nodata")
    """Overrides the rasters' nodata: a pixel is invalid when every band equals it."""
    alpha: Literal["auto", "none"] | int = setting("auto", hint='use "auto", "none" or a 1-based band number')
    """The alpha (mask) band: "auto" = the band the file marks alpha, "none", or a band number.
    GDAL marks band 4 of any 4-band uint8 GeoTIFF written without PHOTOMETRIC=MINISBLACK as
    alpha, so an RGB+NIR file may need "none"."""
    band_names: tuple[str, ...] | None = setting(None, hint='use one distinct name per band read, e.g. [red, green, blue, nir]')
    """One name per band read (e.g. red, green, blue, nir); None = the files' band descriptions,
    or band1, band2, ... where they have none. Features and model.order_by refer to these names."""
    crs: str | None = setting(None, hint='use an EPSG code such as "EPSG:26914", or null when all tiles share one CRS')
    """The mosaic's CRS, e.g. "EPSG:26914": tiles in other CRSs are reprojected onto its grid on
    the fly (nearest neighbour). None = every tile must share one CRS."""
    resolution: float | None = setting(None, gt=0, hint='use a positive pixel size in the units of input.crs, e.g. 1.0, or null')
    """Pixel size in units of ``crs``; None = the finest of the tiles' (estimated in ``crs``)."""
    exclude: tuple[str, ...] = setting((), hint="give STAC item ids (or paths and URLs as in input.paths) to leave out, e.g. [m_4609601_ne_14_060_20200827]")
    """Items (STAC item ids) or files (as written in ``paths``) left out of the mosaic: a tile
    that cannot be read, a bad flight."""
    remote: RemoteConfig | None = setting(None, hint="give a mapping, e.g. {request_payer: requester, region: us-west-2}")
    """Object stores: requester-pays, profile, region, endpoint, other GDAL settings, retries."""

    @field_validator("paths", "exclude", mode="before")
    @classmethod
    def _paths_as_tuple(cls, value: Any) -> Any:
        return one_or_many(value)

    @field_serializer("paths", "exclude", when_used="json")
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
        return value if value is None else unique_names(value)

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
