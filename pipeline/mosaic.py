"""Open one raster, a VRT or many tiles as one lazy, chunked mosaic.

The mosaic is a float32 dask array (band, y, x) in which invalid pixels are NaN. A pixel is
invalid where the file's alpha band or internal mask says so, otherwise only where *every* band
equals nodata: real NAIP water reads 0 in NIR alone. (rasterio's ``dataset_mask()`` uses band 4's
mask alone for RGB-tagged 4-band files, which would drop that water, so we compute it ourselves.) Each chunk
is one task that reads the windows of the tiles it overlaps; later tiles are drawn on top, as
``gdalbuildvrt`` does. Tiles must share CRS, resolution, band count and dtype: mixing them is
refused, never silently dropped.
"""

from __future__ import annotations

import glob
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from dask.highlevelgraph import HighLevelGraph
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from .config import InputConfig
from .errors import InputError

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Tile:
    """One input file and where it sits in the mosaic grid."""

    path: str
    row_off: int
    col_off: int
    height: int
    width: int
    mask: str
    """How validity is read: "nodata", "alpha", "mask" (internal per-dataset mask) or "none"."""
    alpha: int | None
    nodata: tuple[float | None, ...]
    """Per-band nodata of the file (or the config override), for the "nodata" mask."""
    warp: tuple[str, Affine] | None = None
    """(CRS, transform) of the tile's footprint on the mosaic grid when it is reprojected onto it
    (nearest neighbour, through a WarpedVRT); None = read as it is."""


@dataclass(frozen=True)
class Mosaic:
    """The grid, the tiles on it, and the feature bands; everything needed to read any chunk."""

    tiles: tuple[Tile, ...]
    crs: str
    transform: Affine
    height: int
    width: int
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    dtype: str
    chunk: int
    count: int
    """Bands in each file (alpha and unused bands included)."""

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (len(self.bands),), _split(self.height, self.chunk), _split(self.width, self.chunk)

    def windows(self) -> list[tuple[tuple[int, int], Window]]:
        """(block index, window in the mosaic) of every chunk, row-major."""
        out = []
        for i, row in enumerate(range(0, self.height, self.chunk)):
            for j, col in enumerate(range(0, self.width, self.chunk)):
                h, w = min(self.chunk, self.height - row), min(self.chunk, self.width - col)
                out.append(((i, j), Window(col, row, w, h)))
        return out

    def pixel_area(self) -> float:
        return abs(self.transform.a * self.transform.e)

    def to_dask(self) -> da.Array:
        """Lazy float32 (band, y, x) array; NaN marks invalid pixels."""
        name = f"read-mosaic-{_token(self)}"
        graph = {
            (name, 0, i, j): (read_window, self, window) for (i, j), window in self.windows()
        }
        hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
        return da.Array(hlg, name, chunks=self.chunks, dtype=np.float32)

    def to_xarray(self) -> xr.DataArray:
        """The mosaic with coordinates and CRS, for users who want to explore it."""
        xs = self.transform.c + self.transform.a * (np.arange(self.width) + 0.5)
        ys = self.transform.f + self.transform.e * (np.arange(self.height) + 0.5)
        array = xr.DataArray(
            self.to_dask(), dims=("band", "y", "x"), coords={"band": list(self.bands), "y": ys, "x": xs}
        )
        return array.rio.write_crs(self.crs).rio.write_transform(self.transform)


def _split(length: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, length - start) for start in range(0, length, chunk))


def _token(mosaic: Mosaic) -> str:
    from dask.base import tokenize

    return tokenize(mosaic.tiles, mosaic.bands, mosaic.chunk, mosaic.height, mosaic.width)


# --- opening -------------------------------------------------------------------------------------


def expand_paths(patterns: tuple[str, ...]) -> list[str]:
    """Files from paths and globs, in the order given (each glob sorted); errors name the entry."""
    files: list[str] = []
    for pattern in patterns:
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
        raise InputError(f"input.paths: {list(patterns)} names no raster file")
    return unique


_MUST_MATCH = (
    ("crs", "CRS", "set input.crs (e.g. {crs}) to reproject them on the fly, or reproject the tiles first (gdalwarp -t_srs)"),
    ("res", "resolution", "set input.crs and input.resolution to resample them on the fly, or resample first (gdalwarp -tr)"),
    ("count", "band count", "mosaic tiles must have the same bands; remove or convert the odd file"),
    ("dtype", "dtype", "mosaic tiles must share a dtype; remove or convert the odd file"),
)


def open_mosaic(spec: InputConfig, *, chunk: int) -> Mosaic:
    """Read the metadata of every input file and plan the mosaic; no pixel is read."""
    files = expand_paths(spec.paths)
    metas = [_describe(path, spec) for path in files]
    first = metas[0]
    # With input.crs, tiles of another CRS or resolution are reprojected instead of refused.
    must_match = _MUST_MATCH if spec.crs is None else _MUST_MATCH[2:]
    for meta in metas[1:]:
        for key, label, fix in must_match:
            if meta[key] != first[key]:
                raise InputError(
                    f"{meta['path']}: {label} {meta[key]} differs from {first['path']} ({first[key]}); {fix.format(crs=first['crs'])}"
                )
    bands = _feature_bands(spec.bands, first)
    names = tuple(first["names"][b - 1] for b in bands)
    if spec.band_names is not None:
        if len(spec.band_names) != len(bands):
            raise InputError(
                f"input.band_names: {len(spec.band_names)} name(s) for the {len(bands)} band(s) read from "
                f"{first['path']} (bands {list(bands)}); give one name per band"
            )
        names = spec.band_names
    if spec.crs is not None:
        return _reprojected_mosaic(metas, spec, bands=bands, names=names, chunk=chunk)
    res_x, res_y = first["res"]
    left = min(m["bounds"].left for m in metas)
    top = max(m["bounds"].top for m in metas)
    right = max(m["bounds"].right for m in metas)
    bottom = min(m["bounds"].bottom for m in metas)
    width, height = round((right - left) / res_x), round((top - bottom) / res_y)
    transform = Affine(res_x, 0.0, left, 0.0, -res_y, top)

    tiles = tuple(
        Tile(
            path=m["path"],
            row_off=round((top - m["bounds"].top) / res_y),
            col_off=round((m["bounds"].left - left) / res_x),
            height=m["height"],
            width=m["width"],
            mask=m["mask"],
            alpha=m["alpha"],
            nodata=m["nodata"],
        )
        for m in metas
    )
    log.info("mosaic: %d file(s), %d x %d pixels, bands %s", len(files), width, height, list(bands))
    return Mosaic(tiles, first["crs"], transform, height, width, bands, names, first["dtype"], chunk, first["count"])


_EPS = 1e-6  # pixels: bounds within this of a grid line are on it (float noise of transforms)


def _reprojected_mosaic(
    metas: list[dict], spec: InputConfig, *, bands: tuple[int, ...], names: tuple[str, ...], chunk: int
) -> Mosaic:
    """The grid of ``input.crs`` covering every tile's reprojected bounds.

    Tiles already in that CRS and resolution are placed as they are (origins snapped, as without
    input.crs); the others are warped onto the grid with nearest neighbour, so reflectances are
    copied, never blended. The grid is aligned to the first tile read as it is, if any.
    """
    crs = CRS.from_user_input(spec.crs)
    bounds = [transform_bounds(m["crs"], crs, *m["bounds"], densify_pts=21) for m in metas]
    same_crs = [CRS.from_user_input(m["crs"]) == crs for m in metas]
    # Tiles already in input.crs set the resolution; an estimate after reprojection (GDAL's, as
    # gdalwarp's default) is used only when there are none: it is rarely a round number.
    if spec.resolution is not None:
        res, source = spec.resolution, "input.resolution"
    elif any(same_crs):
        res = min(min(m["res"]) for m, same in zip(metas, same_crs) if same)
        source = f"the finest of the tiles in {spec.crs}"
    else:
        res = min(_resolution_in(m, crs) for m in metas)
        source = f"no tile is in {spec.crs}: the finest estimated after reprojection; set input.resolution to choose"
    direct = [same and m["res"] == (res, res) for m, same in zip(metas, same_crs)]

    left, bottom = min(b[0] for b in bounds), min(b[1] for b in bounds)
    right, top = max(b[2] for b in bounds), max(b[3] for b in bounds)
    anchor_x, anchor_y = next(((b[0], b[3]) for b, d in zip(bounds, direct) if d), (left, top))
    left = anchor_x - math.ceil((anchor_x - left) / res - _EPS) * res
    top = anchor_y + math.ceil((top - anchor_y) / res - _EPS) * res
    width, height = math.ceil((right - left) / res - _EPS), math.ceil((top - bottom) / res - _EPS)
    transform = Affine(res, 0.0, left, 0.0, -res, top)

    tiles = []
    for m, b, as_is in zip(metas, bounds, direct):
        common = {"path": m["path"], "mask": m["mask"], "alpha": m["alpha"], "nodata": m["nodata"]}
        if as_is:
            row_off, col_off = round((top - b[3]) / res), round((b[0] - left) / res)
            tiles.append(Tile(row_off=row_off, col_off=col_off, height=m["height"], width=m["width"], **common))
            continue
        col_off, row_off = math.floor((b[0] - left) / res + _EPS), math.floor((top - b[3]) / res + _EPS)
        tile_width = math.ceil((b[2] - left) / res - _EPS) - col_off
        tile_height = math.ceil((top - b[1]) / res - _EPS) - row_off
        warp = (crs.to_string(), transform @ Affine.translation(col_off, row_off))
        tiles.append(Tile(row_off=row_off, col_off=col_off, height=tile_height, width=tile_width, warp=warp, **common))
    log.info(
        "mosaic: %d file(s) on %s at %g (%s), %d reprojected, %d x %d pixels, bands %s",
        len(metas), spec.crs, res, source, direct.count(False), width, height, list(bands),
    )
    first = metas[0]
    return Mosaic(tuple(tiles), crs.to_string(), transform, height, width, bands, names, first["dtype"], chunk, first["count"])


def _resolution_in(meta: dict, crs: CRS) -> float:
    """The pixel size GDAL would choose for the tile reprojected into ``crs``."""
    transform, _, _ = calculate_default_transform(meta["crs"], crs, meta["width"], meta["height"], *meta["bounds"])
    return min(abs(transform.a), abs(transform.e))


def _feature_bands(requested: tuple[int, ...] | None, meta: dict) -> tuple[int, ...]:
    alpha = meta["alpha"]
    if requested is None:
        return tuple(b for b in range(1, meta["count"] + 1) if b != alpha)
    for band in requested:
        if band > meta["count"]:
            raise InputError(
                f"input.bands: band {band} does not exist in {meta['path']}, which has {meta['count']} band(s)"
            )
        if band == alpha:
            raise InputError(
                f"input.bands: band {band} of {meta['path']} is its alpha band (a mask, never a feature); "
                "remove it from input.bands"
            )
    return requested


def _describe(path: str, spec: InputConfig) -> dict:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(f"{path}: has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:xxxx) and retry")
            t = src.transform
            if t.b != 0 or t.d != 0:
                raise InputError(f"{path}: has a rotated geotransform; warp it north-up (gdalwarp) first")
            alpha = _alpha_band(src, spec.alpha)
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
            return {
                "path": path,
                "crs": src.crs.to_string(),
                "res": (round(abs(t.a), 9), round(abs(t.e), 9)),
                "count": src.count,
                "dtype": src.dtypes[0],
                "bounds": src.bounds,
                "height": src.height,
                "width": src.width,
                "alpha": alpha,
                "mask": mask,
                "nodata": tuple(nodata),
                "names": tuple(d or f"band{i + 1}" for i, d in enumerate(src.descriptions)),
            }
    except InputError:
        raise
    except RasterioError as exc:
        raise InputError(f"{path}: not a readable raster ({_first_line(exc)}); check the file") from None


def _alpha_band(src: rasterio.DatasetReader, setting: str | int) -> int | None:
    if setting == "none":
        return None
    if isinstance(setting, int):
        if setting > src.count:
            raise InputError(f"input.alpha: band {setting} does not exist in {src.name}, which has {src.count} band(s)")
        return setting
    alpha = next((i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha), None)
    if alpha is not None:
        log.warning(
            "%s: band %d is marked alpha, so it masks pixels and is not a feature; "
            "if it holds data (e.g. NIR), set input.alpha: none",
            src.name,
            alpha,
        )
    return alpha


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


# --- reading -------------------------------------------------------------------------------------

_OPEN_PER_THREAD = 32  # datasets kept open per thread; a state has thousands of tiles
_local = threading.local()


def _dataset(tile: Tile) -> rasterio.DatasetReader | WarpedVRT:
    """One open dataset per thread and tile (GDAL handles are not thread-safe), LRU-bounded."""
    cache: OrderedDict[tuple, rasterio.DatasetReader | WarpedVRT] = getattr(_local, "datasets", None) or OrderedDict()
    _local.datasets = cache
    key = (tile.path, tile.warp)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    src = rasterio.open(tile.path)
    if tile.warp is not None:
        crs, transform = tile.warp
        # GDAL's warped alpha is 0 outside the tile's footprint and where the source is masked
        # (every band nodata, its internal mask or its own alpha band, which is warped as alpha).
        nodata = {"src_nodata": tile.nodata[0]} if tile.mask == "nodata" else {}
        src = WarpedVRT(
            src, crs=crs, transform=transform, width=tile.width, height=tile.height,
            resampling=Resampling.nearest, add_alpha=tile.mask != "alpha", **nodata,
        )
    cache[key] = src
    if len(cache) > _OPEN_PER_THREAD:
        _close(cache.popitem(last=False)[1])
    return src


def _close(dataset: rasterio.DatasetReader | WarpedVRT) -> None:
    dataset.close()
    if isinstance(dataset, WarpedVRT):
        dataset.src_dataset.close()


def read_window(mosaic: Mosaic, window: Window) -> np.ndarray:
    """Decode one mosaic window: float32 (band, h, w), NaN where no tile has a valid pixel."""
    h, w = int(window.height), int(window.width)
    parts = []
    for tile in mosaic.tiles:
        top = max(window.row_off, tile.row_off)
        left = max(window.col_off, tile.col_off)
        bottom = min(window.row_off + h, tile.row_off + tile.height)
        right = min(window.col_off + w, tile.col_off + tile.width)
        if top < bottom and left < right:
            parts.append((tile, top, left, bottom, right))
    if len(parts) == 1 and (parts[0][3] - parts[0][1], parts[0][4] - parts[0][2]) == (h, w):
        # One tile covers the window (most windows of most mosaics): no compositing needed.
        data, valid = _read_part(mosaic, *parts[0])
        out = data.astype(np.float32)
        if not valid.all():
            out[:, ~valid] = np.nan
        return out
    out = np.full((len(mosaic.bands), h, w), np.nan, dtype=np.float32)
    for tile, top, left, bottom, right in parts:
        data, valid = _read_part(mosaic, tile, top, left, bottom, right)
        dst = out[:, top - window.row_off : bottom - window.row_off, left - window.col_off : right - window.col_off]
        np.copyto(dst, data, where=valid, casting="unsafe")
    return out


def _read_part(mosaic: Mosaic, tile: Tile, top: int, left: int, bottom: int, right: int) -> tuple[np.ndarray, np.ndarray]:
    src_window = Window(left - tile.col_off, top - tile.row_off, right - left, bottom - top)
    try:
        return _read_tile(tile, mosaic.bands, src_window)
    except RasterioError as exc:
        # rasterio's own message only says "see previous exception": GDAL's cause names the block.
        reason = _first_line(exc.__cause__ or exc).removeprefix(f"{tile.path}, ")
        raise InputError(
            f"{tile.path}: cannot decode window {src_window.flatten()} ({reason}); "
            "the file is damaged, replace or remove it"
        ) from None


def _read_tile(tile: Tile, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Feature bands of one tile window, in the file's dtype, and its validity mask."""
    src = _dataset(tile)
    if tile.warp is not None:
        alpha = tile.alpha if tile.mask == "alpha" else src.count
        data, valid = src.read(list(bands), window=window), src.read(alpha, window=window) > 0
    elif tile.mask == "nodata":
        # Every band takes part in the mask (dataset-mask semantics), not only the features.
        everything = src.read(window=window)
        valid = np.zeros(everything.shape[1:], dtype=bool)
        for band, value in zip(everything, tile.nodata):
            valid |= _differs(band, value)
        data = everything if bands == tuple(range(1, len(everything) + 1)) else everything[[b - 1 for b in bands]]
    else:
        data = src.read(list(bands), window=window)
        if tile.mask == "alpha":
            valid = src.read(tile.alpha, window=window) > 0
        elif tile.mask == "mask":
            valid = src.read_masks(1, window=window) > 0
        else:
            valid = np.ones(data.shape[1:], dtype=bool)
    if data.dtype.kind == "f":  # integers cannot be NaN or infinite
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


def _differs(band: np.ndarray, value: float | None) -> np.ndarray:
    if value is None:
        return np.ones(band.shape, dtype=bool)
    if math.isnan(value):
        return ~np.isnan(band)
    return band != value
