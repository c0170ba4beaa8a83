"""The mosaic grid and its tiles, planned from file headers without reading a pixel.

Later tiles are drawn on top, as ``gdalbuildvrt`` does. Tiles must share CRS, resolution, band
count and dtype unless ``input.crs`` reprojects them: mixing them is refused, never silently dropped.
A state is thousands of tiles, so nothing per window may cost O(all tiles): a ``TileIndex`` maps
each cell of a regular grid over the mosaic to the few tiles that overlap it, and a window is read
as a ``WindowRead`` (its window and its own tiles, as plain data).
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from affine import Affine
from dask.base import tokenize
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from pipeline.errors import InputError
from pipeline.io.access import Access
from pipeline.io.remote import Href, where
from pipeline.io.sources import Header
from pipeline.io.spec import InputSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """One input file and where it sits in the mosaic grid."""

    path: Href
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
    (nearest neighbour, see ``reproject.py``); None = read as it is."""
    item: str | None = None
    """The STAC item the file is an asset of, to name it in messages."""
    gains: tuple[float, ...] | None = None
    """Radiometric correction per feature band (``features.balance``, see ``algo/balance``):
    value * gain + offset, applied to the tile's own pixels before compositing; None = as read."""
    offsets: tuple[float, ...] | None = None

    def overlaps(self, window: Window) -> bool:
        return (
            self.row_off < window.row_off + window.height
            and window.row_off < self.row_off + self.height
            and self.col_off < window.col_off + window.width
            and window.col_off < self.col_off + self.width
        )


@dataclass(frozen=True)
class WindowRead:
    """Everything one task needs to decode one window of the mosaic: small, plain data."""

    window: Window
    tiles: tuple[Tile, ...]
    """The tiles overlapping the window, in drawing order (later on top)."""
    bands: tuple[int, ...]
    access: Access = Access()
    """How the tiles' files are reached (signing, GDAL settings, retries)."""


class TileIndex:
    """Which tiles overlap each ``cell`` x ``cell`` square of the mosaic grid.

    Built once in O(tiles x cells per tile); a lookup costs O(cells the window spans + tiles
    found), whatever the number of tiles in the mosaic.
    """

    def __init__(self, tiles: tuple[Tile, ...], *, cell: int, height: int, width: int) -> None:
        self.cell = cell
        self.shape = (-(-height // cell), -(-width // cell))
        self._cells: dict[tuple[int, int], list[int]] = {}
        for number, tile in enumerate(tiles):
            for key in self._cells_of(tile.row_off, tile.col_off, tile.height, tile.width):
                self._cells.setdefault(key, []).append(number)

    def _cells_of(self, row: int, col: int, height: int, width: int) -> list[tuple[int, int]]:
        rows, cols = self.shape
        r0, r1 = max(0, row // self.cell), min(rows - 1, (row + height - 1) // self.cell)
        c0, c1 = max(0, col // self.cell), min(cols - 1, (col + width - 1) // self.cell)
        return [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    def candidates(self, window: Window) -> list[int]:
        """Numbers of the tiles in the cells the window spans, ascending (a superset)."""
        found: set[int] = set()
        for key in self._cells_of(int(window.row_off), int(window.col_off), int(window.height), int(window.width)):
            found.update(self._cells.get(key, ()))
        return sorted(found)


@dataclass(frozen=True)
class Mosaic:
    """The grid, the tiles on it, and the feature bands; everything needed to read any window."""

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
    access: Access = Access()
    """How the tiles' files are reached; not part of the token: it never changes a pixel."""

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (len(self.bands),), _split(self.height, self.chunk), _split(self.width, self.chunk)

    @cached_property
    def index(self) -> TileIndex:
        return TileIndex(self.tiles, cell=self.chunk, height=self.height, width=self.width)

    @cached_property
    def token(self) -> str:
        # Pickled bytes hash in milliseconds; dask's tokenize walks thousands of tile dataclasses.
        return tokenize(pickle.dumps((self.tiles, self.bands, self.chunk, self.height, self.width)))

    def windows(self) -> list[tuple[tuple[int, int], Window]]:
        """(block index, window in the mosaic) of every chunk, row-major."""
        out = []
        for i, row in enumerate(range(0, self.height, self.chunk)):
            for j, col in enumerate(range(0, self.width, self.chunk)):
                h, w = min(self.chunk, self.height - row), min(self.chunk, self.width - col)
                out.append(((i, j), Window(col, row, w, h)))
        return out

    def tiles_in(self, window: Window) -> tuple[Tile, ...]:
        """The tiles sharing at least one pixel with ``window`` (a single corner pixel is enough), in drawing order."""
        return tuple(self.tiles[n] for n in self.index.candidates(window) if self.tiles[n].overlaps(window))

    def plan(self, window: Window) -> WindowRead:
        return WindowRead(window, self.tiles_in(window), self.bands, self.access)

    def covered(self, size: int) -> np.ndarray:
        """(rows, cols) booleans: which ``size``-wide windows of the grid overlap some tile's footprint."""
        rows, cols = -(-self.height // size), -(-self.width // size)
        out = np.zeros((rows, cols), dtype=bool)
        for t in self.tiles:
            out[t.row_off // size : (t.row_off + t.height - 1) // size + 1, t.col_off // size : (t.col_off + t.width - 1) // size + 1] = True
        return out

    def pixel_area(self) -> float:
        return abs(self.transform.a * self.transform.e)


def _split(length: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, length - start) for start in range(0, length, chunk))


_MUST_MATCH = (
    ("crs", "CRS", "set input.crs (e.g. {crs}) to reproject them on the fly, or reproject the tiles first (gdalwarp -t_srs)"),
    ("res", "resolution", "set input.crs and input.resolution to resample them on the fly, or resample first (gdalwarp -tr)"),
    ("count", "band count", "mosaic tiles must have the same bands; remove or convert the odd file"),
    ("dtype", "dtype", "mosaic tiles must share a dtype; remove or convert the odd file"),
)


def plan_mosaic(headers: list[Header], spec: InputSpec, *, chunk: int) -> Mosaic:
    """The mosaic grid over the tiles described by ``headers`` (pure: no file is opened)."""
    first = headers[0]
    # With input.crs, tiles of another CRS or resolution are reprojected instead of refused.
    must_match = _MUST_MATCH if spec.crs is None else _MUST_MATCH[2:]
    for header in headers[1:]:
        for key, label, fix in must_match:
            value, expected = getattr(header, key), getattr(first, key)
            if value != expected:
                raise InputError(
                    f"{where(header.path, header.item)}: {label} {value} differs from {where(first.path, first.item)} "
                    f"({expected}); {fix.format(crs=first.crs)}"
                )
    bands = _feature_bands(spec.bands, first)
    names = tuple(first.names[b - 1] for b in bands)
    if spec.band_names is not None:
        if len(spec.band_names) != len(bands):
            raise InputError(
                f"input.band_names: {len(spec.band_names)} name(s) for the {len(bands)} band(s) read from "
                f"{where(first.path, first.item)} (bands {list(bands)}); give one name per band"
            )
        names = spec.band_names
    if spec.crs is not None:
        return _reprojected_mosaic(headers, spec, bands=bands, names=names, chunk=chunk)
    res_x, res_y = first.res
    all_bounds = [h.bounds for h in headers]
    left = min(b.left for b in all_bounds)
    top = max(b.top for b in all_bounds)
    right = max(b.right for b in all_bounds)
    bottom = min(b.bottom for b in all_bounds)
    width, height = round((right - left) / res_x), round((top - bottom) / res_y)
    transform = Affine(res_x, 0.0, left, 0.0, -res_y, top)

    tiles = tuple(
        Tile(
            path=h.path,
            row_off=round((top - b.top) / res_y),
            col_off=round((b.left - left) / res_x),
            height=h.height,
            width=h.width,
            mask=h.mask,
            alpha=h.alpha,
            nodata=h.nodata,
            item=h.item,
        )
        for h, b in zip(headers, all_bounds)
    )
    log.info("mosaic: %d file(s), %d x %d pixels, bands %s", len(headers), width, height, list(bands))
    return Mosaic(tiles, first.crs, transform, height, width, bands, names, first.dtype, chunk, first.count, spec.access)


_EPS = 1e-6  # pixels: bounds within this of a grid line are on it (float noise of transforms)


def _reprojected_mosaic(
    headers: list[Header], spec: InputSpec, *, bands: tuple[int, ...], names: tuple[str, ...], chunk: int
) -> Mosaic:
    """The grid of ``input.crs`` covering every tile's reprojected bounds.

    Tiles already in that CRS and resolution are placed as they are (origins snapped, as without
    input.crs); the others are warped onto the grid with nearest neighbour, so reflectances are
    copied, never blended. The grid is aligned to the first tile read as it is, if any.
    """
    crs = CRS.from_user_input(spec.crs)
    # A state has thousands of tiles in two or three CRSs: parse each CRS once.
    is_target = {name: CRS.from_user_input(name) == crs for name in {h.crs for h in headers}}
    bounds = [
        tuple(h.bounds) if is_target[h.crs] else transform_bounds(h.crs, crs, *h.bounds, densify_pts=21) for h in headers
    ]
    same_crs = [is_target[h.crs] for h in headers]
    # Tiles already in input.crs set the resolution; an estimate after reprojection (GDAL's, as
    # gdalwarp's default) is used only when there are none: it is rarely a round number.
    if spec.resolution is not None:
        res, source = spec.resolution, "input.resolution"
    elif any(same_crs):
        res = min(min(h.res) for h, same in zip(headers, same_crs) if same)
        source = f"the finest of the tiles in {spec.crs}"
    else:
        res = min(_resolution_in(h, crs) for h in headers)
        source = f"no tile is in {spec.crs}: the finest estimated after reprojection; set input.resolution to choose"
    direct = [same and h.res == (res, res) for h, same in zip(headers, same_crs)]

    left, bottom = min(b[0] for b in bounds), min(b[1] for b in bounds)
    right, top = max(b[2] for b in bounds), max(b[3] for b in bounds)
    anchor_x, anchor_y = next(((b[0], b[3]) for b, d in zip(bounds, direct) if d), (left, top))
    left = anchor_x - math.ceil((anchor_x - left) / res - _EPS) * res
    top = anchor_y + math.ceil((top - anchor_y) / res - _EPS) * res
    width, height = math.ceil((right - left) / res - _EPS), math.ceil((top - bottom) / res - _EPS)
    transform = Affine(res, 0.0, left, 0.0, -res, top)

    tiles = []
    for h, b, as_is in zip(headers, bounds, direct):
        common = {"path": h.path, "mask": h.mask, "alpha": h.alpha, "nodata": h.nodata, "item": h.item}
        if as_is:
            row_off, col_off = round((top - b[3]) / res), round((b[0] - left) / res)
            tiles.append(Tile(row_off=row_off, col_off=col_off, height=h.height, width=h.width, **common))
            continue
        col_off, row_off = math.floor((b[0] - left) / res + _EPS), math.floor((top - b[3]) / res + _EPS)
        tile_width = math.ceil((b[2] - left) / res - _EPS) - col_off
        tile_height = math.ceil((top - b[1]) / res - _EPS) - row_off
        warp = (crs.to_string(), transform @ Affine.translation(col_off, row_off))
        tiles.append(Tile(row_off=row_off, col_off=col_off, height=tile_height, width=tile_width, warp=warp, **common))
    log.info(
        "mosaic: %d file(s) on %s at %g (%s), %d reprojected, %d x %d pixels, bands %s",
        len(headers), spec.crs, res, source, direct.count(False), width, height, list(bands),
    )
    first = headers[0]
    return Mosaic(tuple(tiles), crs.to_string(), transform, height, width, bands, names, first.dtype, chunk, first.count, spec.access)


def _resolution_in(header: Header, crs: CRS) -> float:
    """The pixel size GDAL would choose for the tile reprojected into ``crs``."""
    transform, _, _ = calculate_default_transform(header.crs, crs, header.width, header.height, *header.bounds)
    return min(abs(transform.a), abs(transform.e))


def _feature_bands(requested: tuple[int, ...] | None, header: Header) -> tuple[int, ...]:
    alpha = header.alpha
    if requested is None:
        return tuple(b for b in range(1, header.count + 1) if b != alpha)
    for band in requested:
        if band > header.count:
            raise InputError(
                f"input.bands: band {band} does not exist in {where(header.path, header.item)}, which has {header.count} band(s)"
            )
        if band == alpha:
            raise InputError(
                f"input.bands: band {band} of {where(header.path, header.item)} is its alpha band (a mask, never a feature); "
                "remove it from input.bands"
            )
    return requested
