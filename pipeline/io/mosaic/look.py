"""The first look at a mosaic: each tile's coarsest overview, or a lattice of windows where a file
has none to use, read decimated, each look pixel with the sample window it lies in.

NAIP COGs (and most imagery published for the web) carry internal overviews: the coarsest level
at least ``SIDE`` pixels across is two or three range requests per remote tile and milliseconds of
decoding: a look at a NAIP quarter-quad for 0.04 % of its bytes. A file without such a level
(or whose level is still large) is not decoded whole for a look: ``lattice`` names the mosaic's
windows on a lattice (one in ``stride`` x ``stride``) and those that such files cover are read
through the mosaic reader, decimated. A look keeps about ``LookGrid.per_window`` pixels of every
sample window it sees (a lattice window as many as the windows of its cell), evenly spaced, NaN
where invalid, so it also says how much of each window is valid.

Window numbers are row-major on the grid of ``LookGrid.window``-wide windows (``algo/sample.py``'s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from pipeline.io.access import Access
from pipeline.io.mosaic.plan import Tile, WindowRead
from pipeline.io.mosaic.read import Overview, read, read_overview

SIDE = 64  # pixels across: the coarsest overview at least this wide
MOST = 1 << 20  # pixels: a larger overview (a 12,000-pixel tile with only a /2 level) costs more than the lattice
PER_WINDOW = 16  # look pixels kept per sample window at least (4 x 4 of 512 x 512); more in a small mosaic


@dataclass(frozen=True)
class LookGrid:
    """What every look task needs to know of the mosaic: small, plain data."""

    height: int
    width: int
    window: int
    """Side of the sample's windows."""
    bands: tuple[int, ...]
    access: Access = Access()
    per_window: int = PER_WINDOW
    """Look pixels kept per sample window, about."""
    stride: int = 1
    """A lattice window stands for the stride x stride windows of its cell, and keeps that many more."""

    @property
    def columns(self) -> int:
        return -(-self.width // self.window)

    def numbers(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Window numbers of mosaic pixel positions (fractional rows and columns)."""
        return (rows // self.window).astype(np.int64) * self.columns + (cols // self.window).astype(np.int64)

    def lattice_window(self, number: int) -> Window:
        row, col = divmod(number, self.columns)
        top, left = row * self.window, col * self.window
        return Window(left, top, min(self.window, self.width - left), min(self.window, self.height - top))


@dataclass(frozen=True)
class Look:
    """What a look saw of one tile or one lattice window."""

    values: np.ndarray
    """(n, band) float32, NaN where invalid."""
    windows: np.ndarray
    """(n,) int64: the sample window each pixel lies in."""
    factor: int
    """Decimation of what was read: the overview's factor; 1 for a lattice window."""


def look_tile(tile: Tile, grid: LookGrid) -> Look | None:
    """The tile's coarsest overview at least ``SIDE`` pixels across, about ``PER_WINDOW`` of its
    pixels per sample window; None when its file has no overview to use (see ``lattice``)."""
    overview = read_overview(tile, grid.bands, grid.access, side=SIDE, most=MOST)
    if overview is None:
        return None
    # Overview pixels per window side, thinned to about sqrt(PER_WINDOW) of them.
    step = max(1, math.ceil(grid.window / overview.factor / math.isqrt(grid.per_window)))
    h, w = overview.data.shape[1:]
    rows, cols = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    rows, cols = rows.ravel(), cols.ravel()
    mosaic_rows, mosaic_cols = _on_mosaic(tile, overview, rows + 0.5, cols + 0.5)
    inside = (mosaic_rows >= 0) & (mosaic_rows < grid.height) & (mosaic_cols >= 0) & (mosaic_cols < grid.width)
    values = overview.data[:, rows[inside], cols[inside]].T
    return Look(np.ascontiguousarray(values), grid.numbers(mosaic_rows[inside], mosaic_cols[inside]), overview.factor)


def _on_mosaic(tile: Tile, overview: Overview, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic pixel positions of positions on the overview's pixel grid."""
    if tile.warp is None:
        scale_y, scale_x = tile.height / overview.data.shape[1], tile.width / overview.data.shape[2]
        return tile.row_off + rows * scale_y, tile.col_off + cols * scale_x
    t = overview.transform
    xs, ys = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
    crs, footprint = tile.warp
    xs, ys = (np.asarray(v) for v in transform_points(overview.crs, crs, xs, ys))
    f = ~footprint
    return tile.row_off + f.d * xs + f.e * ys + f.f, tile.col_off + f.a * xs + f.b * ys + f.c


def lattice(grid: LookGrid, covered: np.ndarray, *, stride: int) -> np.ndarray:
    """Numbers of the covered windows on the lattice: rows and columns multiples of ``stride``."""
    rows, cols = np.nonzero(covered[::stride, ::stride])
    return rows * stride * grid.columns + cols * stride


def look_window(job: WindowRead, grid: LookGrid) -> Look:
    """One lattice window read through the mosaic reader, thinned (see ``window_look``)."""
    return window_look(read(job), job.window, grid)


def window_look(block: np.ndarray, window: Window, grid: LookGrid) -> Look:
    """Evenly spaced pixels of a (band, h, w) float32 lattice window of the mosaic, as many as its
    cell's windows keep (at most every pixel)."""
    step = max(1, math.ceil(grid.window / math.isqrt(grid.per_window * grid.stride**2)))
    h, w = block.shape[1:]
    rows, cols = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    rows, cols = rows.ravel(), cols.ravel()
    values = np.ascontiguousarray(block[:, rows, cols].T)
    numbers = grid.numbers(rows + int(window.row_off), cols + int(window.col_off))
    return Look(values, numbers, 1)
