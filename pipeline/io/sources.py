"""Inputs → tile headers: what the mosaic needs to know of each file, without reading a pixel.

A ``Header`` is a small, plain record (path, CRS, transform, shape, bands, mask), so planning a
mosaic of thousands of tiles never holds an open dataset. Headers of many files are read in
parallel: opening a file costs a few milliseconds locally and a round trip or more remotely.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags

from pipeline.errors import InputError
from pipeline.io.access import Access, Failure, attempt
from pipeline.io.remote import (
    Href,
    gdal_path,
    is_remote,
    read_options,
    redact,
    remote_fix,
    where,
)
from pipeline.io.spec import InputSpec

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")
HEADER_THREADS = 16  # opening is latency, not CPU: more threads than cores pay off
# GDAL lists a file's folder on every open to look for sidecars: O(files) per open, so O(files²)
# for a folder of thousands of tiles (10,240 headers: 33 s against 23 s on a busy machine). TRUE
# probes the few sidecar names (.msk, .aux.xml, .ovr) instead.
OPEN_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "TRUE"}
# GDAL's block cache defaults to 5 % of RAM per process, unseen by dask (1.2 GB here, 3 GB on a
# 64 GB worker). Each block is decoded about once, so a small cache holds what neighbouring
# windows share: on the 601 MP benchmark 256 MB bought no time (wall 1.00x) for 290 MB more peak
# memory than none. Set where files are opened and read, so on every worker. rasterio passes an
# integer GDAL_CACHEMAX to GDALSetCacheMax64: bytes, not GDAL's megabytes (the client-side 256
# this replaces was a 256-byte cache).
CACHE_BYTES = 64 * 2**20


def gdal_options(paths: Iterable[str], access: Access) -> dict[str, str | int]:
    """The GDAL settings for opening and reading ``paths`` (remote ones win where both set a key;
    an environment variable wins over ours, ``input.remote`` over both)."""
    cache = {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": CACHE_BYTES}
    return {**cache, **OPEN_OPTIONS, **read_options(paths), **dict(access.gdal)}


@dataclass(frozen=True)
class Header:
    """One input file as the mosaic sees it."""

    path: Href
    crs: str
    transform: Affine
    height: int
    width: int
    count: int
    """Bands in the file (alpha and unused bands included)."""
    dtype: str
    alpha: int | None
    """The 1-based alpha band, if one masks the pixels."""
    mask: str
    """How validity is read: "nodata", "alpha", "mask" (internal per-dataset mask) or "none"."""
    nodata: tuple[float | None, ...]
    """Per-band nodata of the file (or the config override), for the "nodata" mask."""
    names: tuple[str, ...]
    """Band descriptions, or band1, band2, ... where there are none."""
    item: str | None = None
    """The STAC item the file is an asset of, to name it in messages."""

    @property
    def bounds(self) -> BoundingBox:
        t = self.transform
        return BoundingBox(t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    @property
    def res(self) -> tuple[float, float]:
        return round(abs(self.transform.a), 9), round(abs(self.transform.e), 9)


def expand_paths(patterns: tuple[str, ...]) -> list[Href]:
    """Files from paths, globs and URLs, in the order given (each glob sorted); errors name the entry.

    URLs become GDAL names (``/vsicurl/https://...``); they are not checked here, opening them
    is (one round trip each, in parallel).
    """
    files: list[str] = []
    for pattern in patterns:
        if is_remote(pattern):
            if _GLOB_CHARS - {"?"} & set(redact(pattern)):  # "?" starts a URL's query
                raise InputError(
                    f"input.paths: '{redact(pattern)}' is a glob over a URL, which GDAL cannot list; "
                    "give the URLs one by one, or use input.stac to search a catalog"
                )
            files.append(gdal_path(pattern))
            continue
        if _GLOB_CHARS & set(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"input.paths: '{pattern}' matches no file; check the folder and pattern")
            files.extend(m for m in matches if Path(m).is_file())
            continue
        path = Path(pattern)
        if path.is_dir():
            raise InputError(f"{pattern}: is a directory; give its files, e.g. '{pattern}/*.tif'")
        if not path.exists():
            raise InputError(f"{pattern}: file not found; check input.paths")
        files.append(pattern)
    unique = list(dict.fromkeys(files))
    if not unique:
        raise InputError(f"input.paths: {[redact(p) for p in patterns]} names no raster file")
    return [Href(path) for path in unique]


def left_in(hrefs: list[Href], exclude: tuple[str, ...], *, items: list[str] | None = None) -> list[int]:
    """The positions of the inputs ``input.exclude`` does not name (by STAC item id, or by path or
    URL as written, signatures aside). An entry that names no input is refused: a typo would
    leave the tile in."""
    if not exclude:
        return list(range(len(hrefs)))
    names = [{_as_written(str(h))} | ({items[n]} if items else set()) for n, h in enumerate(hrefs)]
    forms = {entry: {entry, _as_written(redact(gdal_path(entry)))} for entry in exclude}
    unknown = [entry for entry, form in forms.items() if not any(form & name for name in names)]
    if unknown:
        example = items[0] if items else str(hrefs[0])
        raise InputError(
            f"input.exclude: {redact(unknown[0])!r} names no input of this run (e.g. {example!r}); "
            f"give {'STAC item ids or ' if items else ''}paths and URLs as in input.paths"
        )
    wanted = set().union(*forms.values())
    kept = [n for n, name in enumerate(names) if not name & wanted]
    if not kept:
        raise InputError("input.exclude: leaves no input; remove some entries")
    log.info("input.exclude: %d input(s) left out", len(hrefs) - len(kept))
    return kept


def _as_written(name: str) -> str:
    return name if "://" in name else os.path.normpath(name)


def read_headers(paths: list[Href], spec: InputSpec, *, items: list[str | None] | None = None) -> list[Header]:
    """The header of every file, read in parallel; the first bad file in input order is reported.

    ``items``: the STAC item id of each path, for messages.
    """
    items = items or [None] * len(paths)
    with rasterio.Env() as env:
        # The caller's GDAL settings, for every thread; and those of remote reading if needed.
        # Not the credentials rasterio's session put there: each thread's Env finds its own.
        session = set(env.session.get_credential_options()) if env.session else set()
        caller = {key: value for key, value in env.options.items() if key not in session}
        options = {**caller, **gdal_options((p.gdal for p in paths), spec.access)}
    if len(paths) == 1:
        headers = [_read_header_with(options, paths[0], spec, items[0])]
    else:
        with ThreadPoolExecutor(HEADER_THREADS) as pool:
            headers = list(pool.map(lambda path, item: _read_header_with(options, path, spec, item), paths, items))
    marked = [h for h in headers if h.alpha is not None] if spec.alpha == "auto" else []
    if marked:  # once, not once per tile of a state
        more = f" and {len(marked) - 1} other file(s)" if len(marked) > 1 else ""
        log.warning(
            "%s%s: band %d is marked alpha, so it masks pixels and is not a feature; "
            "if it holds data (e.g. NIR), set input.alpha: none",
            where(marked[0].path, marked[0].item), more, marked[0].alpha,
        )
    return headers


def _read_header_with(options: dict, path: Href, spec: InputSpec, item: str | None = None) -> Header:
    with rasterio.Env(**options):
        return read_header(path, spec, item=item)


def read_header(path: Href, spec: InputSpec, *, item: str | None = None) -> Header:
    try:
        return attempt(path, spec.access, lambda name: _header(name, path, spec, item), item=item)
    except Failure as failed:
        name = where(path, item)
        if path.remote:
            fix = remote_fix(failed.reason, path, signed=spec.access.signs)
            raise InputError(f"{name}: cannot open ({failed.reason}){failed.after()}; {fix}") from None
        raise InputError(f"{name}: not a readable raster ({failed.reason}); check the file") from None


def _header(gdal_name: str, path: Href, spec: InputSpec, item: str | None) -> Header:
    name = where(path, item)
    with rasterio.open(gdal_name) as src:
        if src.crs is None:
            raise InputError(f"{name}: has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:xxxx) and retry")
        t = src.transform
        if t.b != 0 or t.d != 0:
            raise InputError(f"{name}: has a rotated geotransform; warp it north-up (gdalwarp) first")
        alpha = _alpha_band(src, spec.alpha, name)
        flags = src.mask_flag_enums[0] if src.count else []
        if spec.nodata is not None:
            mask = "nodata"
            nodata: tuple[float | None, ...] = (spec.nodata,) * src.count
        elif alpha is not None:
            mask, nodata = "alpha", src.nodatavals
        elif MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
            mask, nodata = "mask", src.nodatavals
        elif any(v is not None for v in src.nodatavals):
            mask, nodata = "nodata", src.nodatavals
        else:
            mask, nodata = "none", src.nodatavals
        return Header(
            path=path,
            crs=_crs_name(src.crs.to_wkt()),
            transform=t,
            height=src.height,
            width=src.width,
            count=src.count,
            dtype=src.dtypes[0],
            alpha=alpha,
            mask=mask,
            nodata=tuple(nodata),
            names=tuple(d or f"band{i + 1}" for i, d in enumerate(src.descriptions)),
            item=item,
        )


@lru_cache(maxsize=64)
def _crs_name(wkt: str) -> str:
    """"EPSG:26914" where PROJ knows the code, else the WKT: identifying a CRS costs milliseconds,
    and a state's thousands of tiles share two or three."""
    return CRS.from_wkt(wkt).to_string()


def _alpha_band(src: rasterio.DatasetReader, setting: str | int, name: str) -> int | None:
    if setting == "none":
        return None
    if isinstance(setting, int):
        if setting > src.count:
            raise InputError(f"input.alpha: band {setting} does not exist in {name}, which has {src.count} band(s)")
        return setting
    return next((i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha), None)
