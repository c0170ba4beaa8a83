"""Nearest-neighbour reprojection of a tile window onto the mosaic grid (pure numpy and numba).

Source positions are computed exactly (PROJ) at the nodes of a lattice every ``LATTICE`` pixels
of the tile's footprint and interpolated bilinearly in between (a UTM-to-UTM map is linear to
~1e-7 over 32 pixels); each pixel then takes the source pixel that contains its position. The
lattice is anchored to the footprint, so a pixel gets the same value in any window or chunking.
GDAL's WarpedVRT does the same job at ~1 MP/s here (2.3 s for one 2.4 MP NAIP-like tile, against
68 ms for ``rasterio.warp.reproject`` of the same array in memory): at state scale, where a third
or more of the tiles are in another UTM zone, it would have dominated the run.
"""

from __future__ import annotations

import numba
import numpy as np
from affine import Affine
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

LATTICE = 32


def source_positions(
    window: Window, footprint: Affine, crs: str, source_crs: str, source_transform: Affine
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(rows, cols): the source's fractional pixel coordinates at the lattice nodes covering
    ``window`` of the footprint grid; and the (row, col) of the lattice's first node."""
    top, left = int(window.row_off), int(window.col_off)
    lat_r = np.arange(top // LATTICE, -(-(top + int(window.height)) // LATTICE) + 1) * LATTICE
    lat_c = np.arange(left // LATTICE, -(-(left + int(window.width)) // LATTICE) + 1) * LATTICE
    grid_c, grid_r = np.meshgrid(lat_c + 0.5, lat_r + 0.5)  # pixel centres
    xs, ys = _apply(footprint, grid_c.ravel(), grid_r.ravel())
    sx, sy = transform_points(crs, source_crs, xs, ys)
    cols, rows = _apply(~source_transform, np.asarray(sx), np.asarray(sy))
    shape = (len(lat_r), len(lat_c))
    return np.reshape(rows, shape), np.reshape(cols, shape), (int(lat_r[0]), int(lat_c[0]))


def _apply(t: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``t * (x, y)`` on arrays (affine's ``*`` warns on them)."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def source_window(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> Window | None:
    """The window of the source (``height`` x ``width``) holding every position, None if none is inside.

    Bilinear interpolation stays within the nodes' range, so the nodes bound every pixel's position."""
    r0, r1 = max(0, int(np.floor(rows.min()))), min(height, int(np.floor(rows.max())) + 1)
    c0, c1 = max(0, int(np.floor(cols.min()))), min(width, int(np.floor(cols.max())) + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


@numba.njit(nogil=True, cache=True)
def warp_nearest(source, source_valid, source_origin, rows, cols, lattice_origin, window_origin, out, out_valid):  # pragma: no cover - compiled
    """Fill ``out`` (band, h, w) and ``out_valid`` (h, w), the footprint window whose first pixel is
    ``window_origin`` (row, col), from ``source`` (band, H, W) and its validity, read from the
    file at ``source_origin``, through the lattice ``rows``/``cols`` whose first node is at
    ``lattice_origin`` of the footprint."""
    bands, height, width = source.shape
    h, w = out_valid.shape
    lat_top, lat_left = lattice_origin
    top, left = window_origin
    r_off, c_off = source_origin
    for y in range(h):
        i = (top + y - lat_top) // LATTICE
        fr = (top + y - lat_top - i * LATTICE) / LATTICE
        for x in range(w):
            j = (left + x - lat_left) // LATTICE
            fc = (left + x - lat_left - j * LATTICE) / LATTICE
            r = int(np.floor(_bilinear(rows, i, j, fr, fc))) - r_off
            c = int(np.floor(_bilinear(cols, i, j, fr, fc))) - c_off
            if 0 <= r < height and 0 <= c < width and source_valid[r, c]:
                for b in range(bands):
                    out[b, y, x] = source[b, r, c]
                out_valid[y, x] = True


@numba.njit(inline="always")
def _bilinear(values, i, j, fr, fc):  # pragma: no cover - compiled
    upper = values[i, j] * (1 - fc) + values[i, j + 1] * fc
    lower = values[i + 1, j] * (1 - fc) + values[i + 1, j + 1] * fc
    return upper * (1 - fr) + lower * fr
