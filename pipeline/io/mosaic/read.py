"""Decoding one window of the mosaic: its tiles only, reprojected where needed, corrections
applied, NaN where invalid.

A pixel is invalid where the file's alpha band or internal mask says so, otherwise only where
*every* band equals nodata: real NAIP water reads 0 in NIR alone. (rasterio's ``dataset_mask()``
uses band 4's mask alone for RGB-tagged 4-band files, which would drop that water, so we compute
it ourselves.)
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from pipeline.errors import ReadError
from pipeline.io.access import Access, Failure, attempt
from pipeline.io.mosaic.plan import Mosaic, Tile, WindowRead
from pipeline.io.remote import remote_fix, where
from pipeline.io.reproject import source_positions, source_window, warp_nearest
from pipeline.io.sources import gdal_options

_OPEN_PER_THREAD = 32  # datasets kept open per thread; a state has thousands of tiles


_local = threading.local()


def _dataset(name: str, tile: Tile) -> rasterio.DatasetReader:
    """One open dataset per thread and tile (GDAL handles are not thread-safe), LRU-bounded.
    ``name`` is the one GDAL opens: when a token is renewed, the tile is opened again with it."""
    cache: OrderedDict[str, tuple[str, rasterio.DatasetReader]] = getattr(_local, "datasets", None) or OrderedDict()
    _local.datasets = cache
    key = tile.path.gdal
    if key in cache:
        opened, src = cache[key]
        if opened == name:
            cache.move_to_end(key)
            return src
        _forget(tile)
    src = rasterio.open(name)  # under read()'s GDAL settings
    cache[key] = (name, src)
    if len(cache) > _OPEN_PER_THREAD:
        cache.popitem(last=False)[1][1].close()
    return src


def _forget(tile: Tile) -> None:
    """Close the thread's dataset of ``tile``, so that a retry opens it afresh."""
    entry = getattr(_local, "datasets", {}).pop(tile.path.gdal, None)
    if entry is not None:
        entry[1].close()


def read(job: WindowRead) -> np.ndarray:
    """Decode one mosaic window: float32 (band, h, w), NaN where no tile has a valid pixel."""
    # Set here, in the task, not by the client: a distributed worker does not inherit the
    # client's rasterio.Env, and the HTTP settings are read when a file is opened and read.
    with rasterio.Env(**gdal_options((t.path.gdal for t in job.tiles), job.access)):
        return _read(job)


def _read(job: WindowRead) -> np.ndarray:
    window, bands = job.window, job.bands
    h, w = int(window.height), int(window.width)
    parts = []
    for tile in job.tiles:
        top = max(window.row_off, tile.row_off)
        left = max(window.col_off, tile.col_off)
        bottom = min(window.row_off + h, tile.row_off + tile.height)
        right = min(window.col_off + w, tile.col_off + tile.width)
        parts.append((tile, top, left, bottom, right))
    if len(parts) == 1 and (parts[0][3] - parts[0][1], parts[0][4] - parts[0][2]) == (h, w):
        # One tile covers the window (most windows of most mosaics): no compositing needed.
        data, valid = _read_part(job.access, bands, *parts[0])
        out = _corrected(parts[0][0], data)
        if not valid.all():
            out[:, ~valid] = np.nan
        return out
    out = np.full((len(bands), h, w), np.nan, dtype=np.float32)
    for tile, top, left, bottom, right in parts:
        data, valid = _read_part(job.access, bands, tile, top, left, bottom, right)
        if tile.gains is not None:
            data = _corrected(tile, data)
        dst = out[:, top - window.row_off : bottom - window.row_off, left - window.col_off : right - window.col_off]
        np.copyto(dst, data, where=valid, casting="unsafe")
    return out


def _corrected(tile: Tile, data: np.ndarray) -> np.ndarray:
    """The tile's pixels in float32 with its correction applied, per tile part, so a pixel gets
    the same value in any window, chunking or scheduler (float32 arithmetic throughout)."""
    out = data.astype(np.float32)
    if tile.gains is not None:
        out *= np.asarray(tile.gains, dtype=np.float32)[:, None, None]
        out += np.asarray(tile.offsets, dtype=np.float32)[:, None, None]
    return out


def read_window(mosaic: Mosaic, window: Window) -> np.ndarray:
    """``read`` of one window of ``mosaic``, planned through its tile index."""
    return read(mosaic.plan(window))


def _read_part(
    access: Access, bands: tuple[int, ...], tile: Tile, top: int, left: int, bottom: int, right: int
) -> tuple[np.ndarray, np.ndarray]:
    src_window = Window(left - tile.col_off, top - tile.row_off, right - left, bottom - top)

    def read_named(name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            return _read_tile(name, tile, bands, src_window)
        except Exception:
            _forget(tile)
            raise

    try:
        return attempt(tile.path, access, read_named, item=tile.item)
    except Failure as caught:
        failed = caught
    # Raised outside the handler, so with no chain of GDAL's exceptions: distributed sends an
    # error with its chain, and GDAL's cannot be pickled (the client would get a bare Exception).
    raise _read_error(tile, access, failed, f"window {src_window.flatten()}")


def _read_error(tile: Tile, access: Access, failed: Failure, what: str) -> ReadError:
    if tile.path.remote:
        verb, fix = "read", remote_fix(failed.reason, tile.path, signed=access.signs)
    else:
        verb, fix = "decode", "the file is damaged, replace it or leave it out with input.exclude"
    return ReadError(f"{where(tile.path, tile.item)}: cannot {verb} {what} ({failed.reason}){failed.after()}; {fix}")


@dataclass(frozen=True)
class Overview:
    """One overview level of a tile's file, read whole."""

    data: np.ndarray
    """float32 (band, h, w), NaN where invalid, the tile's correction applied."""
    factor: int
    transform: Affine | None
    """Of the overview's pixels, in the file's CRS: for a tile reprojected onto the mosaic (else None)."""
    crs: str | None


def read_overview(tile: Tile, bands: tuple[int, ...], access: Access, *, side: int, most: int) -> Overview | None:
    """The coarsest overview of the tile's file that is at least ``side`` pixels across, if it
    has one of at most ``most`` pixels (None otherwise: reading it would cost more than a look)."""

    def read_named(name: str) -> Overview | None:
        try:
            src = _dataset(name, tile)
            usable = [f for f in src.overviews(1) if min(-(-src.height // f), -(-src.width // f)) >= side]
            if not usable:
                return None
            factor = max(usable)
            shape = (-(-src.height // factor), -(-src.width // factor))
            if shape[0] * shape[1] > most:
                return None
            data, valid = _read_source(src, tile, bands, None, out_shape=shape)
            transform = crs = None
            if tile.warp is not None:  # placed through the file's own CRS (a thousandth of a second a tile)
                t, sx, sy = src.transform, src.width / shape[1], src.height / shape[0]
                transform, crs = Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f), src.crs.to_string()
        except Exception:
            _forget(tile)
            raise
        out = _corrected(tile, data)
        out[:, ~valid] = np.nan
        return Overview(out, factor, transform, crs)

    with rasterio.Env(**gdal_options([tile.path.gdal], access)):
        try:
            return attempt(tile.path, access, read_named, item=tile.item)
        except Failure as caught:
            failed = caught
    raise _read_error(tile, access, failed, "its overviews")


def _read_tile(name: str, tile: Tile, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Feature bands of one window of the tile's footprint, in the file's dtype, and its validity."""
    src = _dataset(name, tile)
    if tile.warp is None:
        return _read_source(src, tile, bands, window)
    crs, footprint = tile.warp
    rows, cols, lattice_origin = source_positions(window, footprint, crs, src.crs, src.transform)
    data = np.zeros((len(bands), int(window.height), int(window.width)), dtype=src.dtypes[0])
    valid = np.zeros(data.shape[1:], dtype=bool)
    needed = source_window(rows, cols, src.height, src.width)
    if needed is not None:
        source, source_valid = _read_source(src, tile, bands, needed)
        origin = (int(needed.row_off), int(needed.col_off))
        warp_nearest(source, source_valid, origin, rows, cols, lattice_origin, (int(window.row_off), int(window.col_off)), data, valid)
    return data, valid


def _read_source(
    src: rasterio.DatasetReader, tile: Tile, bands: tuple[int, ...], window: Window | None, out_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Feature bands of one window of the file itself (the whole file for None; at ``out_shape``
    (h, w), GDAL's overview of that size where the file has one) and its validity mask."""
    def shape(count: int) -> tuple[int, ...] | None:
        return None if out_shape is None else (count, *out_shape)

    if tile.mask == "nodata":
        # Every band takes part in the mask (dataset-mask semantics), not only the features.
        everything = src.read(window=window, out_shape=shape(src.count))
        valid = np.zeros(everything.shape[1:], dtype=bool)
        for band, value in zip(everything, tile.nodata):
            valid |= _differs(band, value)
        data = everything if bands == tuple(range(1, len(everything) + 1)) else everything[[b - 1 for b in bands]]
    else:
        data = src.read(list(bands), window=window, out_shape=shape(len(bands)))
        if tile.mask == "alpha":
            valid = src.read(tile.alpha, window=window, out_shape=out_shape) > 0
        elif tile.mask == "mask":
            valid = src.read_masks(1, window=window, out_shape=out_shape) > 0
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
