"""The first look at the whole mosaic, and what the sample learns from it: where the spectra are.

1. **Look** (``io/mosaic/look.py``): every tile's coarsest overview, and a lattice of windows
   where a file has no overview to use (an array from Python: the lattice alone), about
   ``PER_WINDOW`` pixels of every sample window.
2. **Pre-fit**: ``PREFIT_K`` centres (greedy k-means++ and Lloyd, from a fixed seed: the same for
   every sample seed) on up to ``PREFIT_PIXELS`` look pixels spread over all of it, bands
   z-scored so that no band's units dominate.
3. **Per window**, from its look pixels: its valid pixels ``V`` (its area times the look's valid
   share) and how much the sample should see of them, ``boost``, the mean over them of

       g = clip(max(RARE / share of the pixel's class, d^2 / (FAR x mean d^2)), 1, MOST_BOOST)

   with d the pixel's distance to the nearest centre. A window's mass is ``V x boost``, at least
   ``FLOOR`` of a whole window's pixels (the look may miss a few valid pixels, and a sliver at
   the mosaic's edge must not be so unlikely that its pixels' rate would pass 1), summing to 1
   over the windows. Every spectral group the pre-fit finds thus gets at least ``RARE`` (1 / ``PREFIT_K``)
   of the windows' mass, all of its windows when it has fewer, and pixels far from every centre
   (a surface the pre-fit gave no centre) count up to ``MOST_BOOST`` times; a group spread thinly
   over many windows, or the common ones, leave the mass uniform over the valid area. This is
   the sensitivity of a window for K-Means as coresets bound it (Feldman and Langberg; Bachem
   et al., "Scalable k-means clustering via lightweight coresets", 2018): a pixel's distance to
   a rough solution, and the inverse size of its cluster.

A window the look did not see (a lattice cell's other windows) takes its lattice window's values,
else the look's averages. The look runs once when all of it fits in memory (``IN_MEMORY`` look
pixels, about 32 GP at ``PER_WINDOW``); otherwise twice, as at state scale: a first pass keeps a
few pixels of each tile for the pre-fit, a second scores every look pixel where it is read and
returns per-window sums only, so the client's memory grows with the windows, not the look.
Nothing here depends on the seed or the scheduler.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from pipeline.algo.kernel import nearest
from pipeline.algo.lloyd import lloyd
from pipeline.algo.seeding import kmeans_plusplus
from pipeline.algo.zorder import morton
from pipeline.io.access import Access
from pipeline.io.imagery import Imagery, as_float
from pipeline.io.mosaic import Mosaic
from pipeline.io.mosaic.look import (
    PER_WINDOW,
    Look,
    LookGrid,
    lattice,
    look_tile,
    look_window,
    window_look,
)

log = logging.getLogger(__name__)

PREFIT_K = 16
PREFIT_PIXELS = 100_000
PREFIT_ITERATIONS = 50
RARE = 1 / PREFIT_K  # the least share of the windows' mass a spectral group gets
FAR = 4.0  # a pixel is far from every centre beyond FAR x the mean squared distance
MOST_BOOST = 64.0
FLOOR = 0.1  # of a whole window's pixels: the least mass of a window, in pixels
IN_MEMORY = 2_000_000  # look pixels held at once: one pass below this, two above
MOST_PER_WINDOW = 4096  # look pixels per window in a small mosaic: every 8th pixel of every 8th row
TILES_PER_TASK = 16
LOOK_THREADS = 8  # per task of remote tiles (local ones: 1.2-1.8x slower with 8 than with 1, measured)
WINDOWS_PER_TASK = 8
LATTICE_STRIDES = (4, 2, 1)  # the widest whose lattice still has LATTICE_MIN windows
LATTICE_MIN = 64


@dataclass(frozen=True)
class LookRecord:
    """How the first look saw the mosaic (for the model, the report and the page)."""

    tiles: int
    levels: dict[int, int]
    """Overview factor -> tiles looked at through it."""
    lattice_stride: int
    lattice_windows: int
    """Windows read where files had no overview to use (one in stride x stride)."""
    pixels: int
    passes: int
    seconds: float = field(default=0.0, compare=False)

    def to_json(self) -> dict:
        return {
            "tiles": self.tiles, "overview_levels": {str(f): n for f, n in sorted(self.levels.items())},
            "lattice_stride": self.lattice_stride, "lattice_windows": self.lattice_windows, "pixels": self.pixels,
            "passes": self.passes,
        }


@dataclass(frozen=True)
class Prefit:
    """The pre-fit's centres in z-scored bands, and what a look pixel's scores are measured against."""

    mean: np.ndarray
    sd: np.ndarray
    centres: np.ndarray
    mean_distance: float
    rarity: np.ndarray
    """Per centre: ``RARE`` / its class's share of the pre-fit's pixels."""

    def boosts(self, values: np.ndarray) -> np.ndarray:
        """``g`` (see the module docstring) of (n, band) valid look pixels."""
        z = ((values - self.mean) / self.sd).astype(np.float32)
        labels, distance = nearest(z.T, self.centres)
        far = distance.astype(np.float64) / (FAR * self.mean_distance) if self.mean_distance > 0 else np.ones(len(values))
        return np.clip(np.maximum(self.rarity[labels.astype(np.intp) - 1], far), 1.0, MOST_BOOST)


@dataclass(frozen=True)
class WindowSums:
    """Per window a look saw: look positions, valid ones, and the sum of their boosts."""

    numbers: np.ndarray
    positions: np.ndarray
    valid: np.ndarray
    boost: np.ndarray


@dataclass(frozen=True)
class FirstLook:
    """Per window of the grid (row-major, ``grid.columns`` wide): its valid share and boost, the
    pre-fit's pixels (input units: the same for every seed) and the record."""

    valid_share: np.ndarray
    boost: np.ndarray
    reference: np.ndarray
    """(n, band) float32: the look pixels the pre-fit ran on."""
    record: LookRecord
    window: int
    """Side of the windows."""

    def mass(self, numbers: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """The windows' masses (see the module docstring), summing to 1 over ``numbers``, from
        their pixel counts (``pixels``, cut at the mosaic's edges)."""
        mass = np.maximum(pixels * self.valid_share[numbers] * self.boost[numbers], FLOOR * self.window**2)
        return mass / mass.sum()


def first_look(source: Mosaic | Imagery, *, window: int) -> FirstLook:
    """Look at the whole mosaic (or array) as the module docstring says."""
    started = time.perf_counter()
    mosaic = source if isinstance(source, Mosaic) else source.mosaic
    covered = source.covered(window)
    stride = next((s for s in LATTICE_STRIDES if covered[::s, ::s].sum() >= min(LATTICE_MIN, covered.sum())), 1)
    in_memory = covered.sum() * PER_WINDOW <= IN_MEMORY
    # A small mosaic's look keeps more of what it reads: the pre-fit and the fit's reference gain.
    per_window = min(MOST_PER_WINDOW, IN_MEMORY // int(covered.sum())) if in_memory else PER_WINDOW
    grid = LookGrid(
        source.height, source.width, window, mosaic.bands if mosaic else (), mosaic.access if mosaic else Access(),
        per_window=per_window, stride=stride,
    )
    identity = mosaic.token if mosaic is not None else source.raw.name
    tiles = _tiles_in_order(mosaic, window) if mosaic is not None else []
    # First pass: the tiles' overviews; then the lattice windows over the files that have none.
    tile_looks = _compute(_tile_tasks(tiles, grid, None if in_memory else _thinning(len(tiles)), identity))
    blind = [t for t, look in zip(tiles, tile_looks) if look is None]
    numbers = _lattice_numbers(source, mosaic, blind, grid, covered, stride)
    window_looks = _compute(_window_tasks(source, numbers, grid, None if in_memory else _thinning(len(numbers)), identity))
    looks = [look for look in tile_looks if look is not None] + window_looks
    prefit, reference = _prefit(looks)
    if in_memory:
        sums = [_window_sums(look, prefit) for look in looks]
        passes = 1
    else:  # again, each look scored where it is read: only per-window sums come back
        seen = [t for t, look in zip(tiles, tile_looks) if look is not None]
        sums = _compute(_tile_tasks(seen, grid, prefit, identity)) + _compute(_window_tasks(source, numbers, grid, prefit, identity))
        passes = 2
    valid_share, boost = _per_window(sums, covered, stride, grid)
    record = LookRecord(
        tiles=len(tiles), levels=dict(Counter(look.factor for look in tile_looks if look is not None)),
        lattice_stride=stride, lattice_windows=len(numbers), pixels=int(sum(s.valid.sum() for s in sums)), passes=passes,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "first look: %d tile(s) through overviews %s, %d lattice window(s) (one in %d x %d), %d pixels, %d pass(es) in %.1f s",
        sum(record.levels.values()), {f"/{f}": n for f, n in sorted(record.levels.items())}, len(numbers), stride, stride,
        record.pixels, passes, record.seconds,
    )
    return FirstLook(valid_share, boost, reference, record, window)


def _tiles_in_order(mosaic: Mosaic, window: int) -> list:
    """The tiles in Morton order of their corners, so that a task's tiles are neighbours."""
    rows = np.array([t.row_off // window for t in mosaic.tiles])
    cols = np.array([t.col_off // window for t in mosaic.tiles])
    return [mosaic.tiles[i] for i in np.argsort(morton(rows, cols), kind="stable")]


def _lattice_numbers(source, mosaic: Mosaic | None, blind: list, grid: LookGrid, covered: np.ndarray, stride: int) -> list[int]:
    """The lattice windows to read: all of them for an array, those over a file without overviews
    for a mosaic."""
    numbers = lattice(grid, covered, stride=stride)
    if mosaic is None:
        return [int(n) for n in numbers]
    if not blind:
        return []
    paths = {t.path for t in blind}
    return [int(n) for n in numbers if any(t.path in paths for t in mosaic.tiles_in(grid.lattice_window(int(n))))]


def _thinning(units: int) -> int:
    """Look pixels each of ``units`` tiles (or lattice windows) keeps in a first pass of two: its
    share of the pre-fit's pixels."""
    return max(1, math.ceil(PREFIT_PIXELS / max(units, 1)))


def _thinned(look: Look | None, keep: int) -> Look | None:
    """``keep`` evenly spaced valid pixels of a look (all of them if fewer)."""
    if look is None:
        return None
    valid = np.flatnonzero(~np.isnan(look.values).any(axis=1))
    chosen = valid[np.linspace(0, len(valid), num=min(keep, len(valid)), endpoint=False).astype(np.intp)]
    return Look(look.values[chosen], look.windows[chosen], look.factor)


def _window_sums(look: Look, prefit: Prefit) -> WindowSums:
    valid = ~np.isnan(look.values).any(axis=1)
    boosts = prefit.boosts(look.values[valid]) if valid.any() else np.empty(0)
    if len(look.windows) == 0:
        return WindowSums(*(np.empty(0, dtype) for dtype in (np.int64, np.int64, np.int64, np.float64)))
    first = int(look.windows.min())
    at = look.windows - first  # a look's windows are a small stretch of the grid: count, not sort
    span = int(at.max()) + 1
    positions = np.bincount(at, minlength=span)
    seen = np.flatnonzero(positions)
    counts = np.bincount(at[valid], minlength=span)[seen]
    return WindowSums(seen + first, positions[seen], counts, np.bincount(at[valid], weights=boosts, minlength=span)[seen])


def _apply(look: Look | None, action: Prefit | int | None):
    """What a task returns of one look: the look, thinned to ``action`` pixels, or scored."""
    if look is None or action is None:
        return look
    if isinstance(action, Prefit):
        return _window_sums(look, action)
    return _thinned(look, action)


def _look_tiles(tiles: tuple, grid: LookGrid, action) -> list:
    if not any(tile.path.remote for tile in tiles):  # decoding: the task's own thread is the core's
        return [_apply(look_tile(tile, grid), action) for tile in tiles]
    # Threads, as for the headers: a remote tile's look is one or two round trips, not CPU.
    with ThreadPoolExecutor(min(LOOK_THREADS, len(tiles))) as pool:
        return list(pool.map(lambda tile: _apply(look_tile(tile, grid), action), tiles))


def _look_windows(jobs: tuple, grid: LookGrid, action) -> list:
    return [_apply(look_window(job, grid), action) for job in jobs]


def _look_blocks(blocks: tuple, windows: tuple, nodata, grid: LookGrid, action) -> list:
    return [_apply(window_look(as_float(block, nodata=nodata), w, grid), action) for block, w in zip(blocks, windows)]


def _tile_tasks(tiles: list, grid: LookGrid, action, identity: str) -> list[Delayed]:
    """One task per ``TILES_PER_TASK`` tiles, built as a plain graph: ``dask.delayed`` would walk
    every tile of every task looking for collections."""
    token = tokenize(identity, grid, action)
    tasks = []
    for start in range(0, len(tiles), TILES_PER_TASK):
        batch = tuple(tiles[start : start + TILES_PER_TASK])
        key = f"look-tiles-{start}-{token}"
        tasks.append(Delayed(key, HighLevelGraph.from_collections(key, {key: (_look_tiles, batch, grid, action)}, dependencies=())))
    return tasks


def _window_tasks(source: Mosaic | Imagery, numbers: list[int], grid: LookGrid, action, identity: str) -> list[Delayed]:
    """One task per ``WINDOWS_PER_TASK`` lattice windows: a mosaic's read tile by tile, an
    array's sliced (dask fuses the slice into its reader, so only the window is read)."""
    mosaic = source if isinstance(source, Mosaic) else source.mosaic
    token = tokenize(identity, grid, action)
    tasks = []
    for start in range(0, len(numbers), WINDOWS_PER_TASK):
        windows = tuple(grid.lattice_window(n) for n in numbers[start : start + WINDOWS_PER_TASK])
        if mosaic is None:
            blocks = tuple(source.raw[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] for w in windows)
            tasks.append(dask.delayed(_look_blocks, pure=True)(blocks, windows, source.nodata, grid, action))
            continue
        key = f"look-windows-{start}-{token}"
        jobs = tuple(mosaic.plan(w) for w in windows)
        tasks.append(Delayed(key, HighLevelGraph.from_collections(key, {key: (_look_windows, jobs, grid, action)}, dependencies=())))
    return tasks


def _compute(tasks: list[Delayed]) -> list:
    return [item for part in dask.compute(*tasks) for item in part] if tasks else []


def _prefit(looks: list[Look]) -> tuple[Prefit, np.ndarray]:
    """The pre-fit on up to ``PREFIT_PIXELS`` valid look pixels, evenly spread over the looks."""
    bands = looks[0].values.shape[1] if looks else 0
    values = np.concatenate([np.empty((0, bands), np.float32)] + [look.values for look in looks])
    values = values[~np.isnan(values).any(axis=1)]
    if len(values) > PREFIT_PIXELS:
        values = values[np.linspace(0, len(values), num=PREFIT_PIXELS, endpoint=False).astype(np.intp)]
    mean = values.mean(axis=0, dtype=np.float64) if len(values) else np.zeros(bands)
    sd = values.std(axis=0, dtype=np.float64) if len(values) else np.ones(bands)
    sd[~(sd > 0)] = 1.0
    z = np.ascontiguousarray(((values - mean) / sd).astype(np.float32).T)
    k = min(PREFIT_K, _distinct(values))
    if k < 2:  # nothing to tell windows apart by: every window as unusual as any other
        return Prefit(mean, sd, np.zeros((1, bands)), 0.0, np.ones(1)), values
    start = kmeans_plusplus(z.T, k, np.random.default_rng(0))
    centres, _, inertia = lloyd(z, start, max_iter=PREFIT_ITERATIONS, tol=0.0)
    labels, _ = nearest(z, centres)
    shares = np.bincount(labels.astype(np.intp) - 1, minlength=k) / len(values)
    rarity = RARE / np.maximum(shares, 1.0 / len(values))
    return Prefit(mean, sd, centres, inertia / len(values), rarity), values


def _distinct(values: np.ndarray) -> int:
    """How many distinct rows ``values`` has, at least up to ``PREFIT_K`` (the first rows are
    enough to tell, except for an image of very few values)."""
    found = 0
    for rows in (values[:4096], values) if len(values) else ():
        as_bytes = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
        found = len(np.unique(as_bytes))
        if found >= PREFIT_K:
            return found
    return found


def _per_window(sums: list[WindowSums], covered: np.ndarray, stride: int, grid: LookGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per window of the grid: valid share and mean boost; a window the look did not see takes its
    lattice cell's, else the look's averages."""
    size = covered.size
    totals = np.zeros((3, size))
    for s in sums:
        for row, values in zip(totals, (s.positions, s.valid, s.boost)):
            np.add.at(row, s.numbers, values)
    positions, valid, boost = totals
    seen = positions > 0
    share = np.divide(valid, positions, out=np.zeros(size), where=seen)
    mean_boost = np.divide(boost, valid, out=np.ones(size), where=valid > 0)
    overall = (valid.sum() / positions.sum() if positions.sum() else 1.0, boost.sum() / valid.sum() if valid.sum() else 1.0)
    rows, cols = np.divmod(np.arange(size), grid.columns)
    cell = (rows // stride * stride) * grid.columns + cols // stride * stride  # each window's lattice window
    from_cell = ~seen & seen[cell]
    out = []
    for values, default in zip((share, mean_boost), overall):
        values = np.where(from_cell, values[cell], values)
        out.append(np.where(seen | from_cell, values, default).astype(np.float32))
    return out[0], out[1]
