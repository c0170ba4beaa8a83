"""Which tiles overlap, where to read their shared ground, and the tasks that measure each pair
(one task per pair, carrying its two tiles only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import dask
import numpy as np
from rasterio.windows import Window

from pipeline.algo.balance.maths import pair_statistics
from pipeline.io.access import Access
from pipeline.io.mosaic import Mosaic, Tile, WindowRead, read

WINDOW = 256  # side of an overlap window read from both tiles (half a 512 block: cheap to decode)


WINDOWS_PER_PAIR = 4  # seeded windows per overlapping pair


MIN_PAIRED = 100  # paired valid pixels a pair needs to count


PIXELS_PER_PAIR = 20_000  # paired pixels (before nodata) the statistics are computed from


SEAM_SPAN = 0.5  # an overlap spanning less of the tiles' side is a corner (see seam_pairs)


@dataclass(frozen=True)
class PairStats:
    """What the workers return for one overlapping pair: per band, of tile i's values x and
    tile j's values y at the same pixels."""

    i: int
    j: int
    n: int
    moments: np.ndarray
    """(5, band): mean x, mean y, var x, var y, cov(x, y)."""
    quantiles: np.ndarray
    """(2, len(QUANTILES), band): quantiles of x and of y."""


def overlapping_pairs(mosaic: Mosaic, members: Sequence[int] | None = None) -> list[tuple[int, int, Window]]:
    """(i, j, intersection) of every pair of tiles whose footprints overlap, i < j, found through
    the tile index (O(tiles x neighbours), never O(tiles^2)); only among ``members`` if given."""
    allowed = None if members is None else set(members)
    pairs = []
    for i, a in enumerate(mosaic.tiles):
        if allowed is not None and i not in allowed:
            continue
        for j in mosaic.index.candidates(Window(a.col_off, a.row_off, a.width, a.height)):
            if j <= i or (allowed is not None and j not in allowed):
                continue
            b = mosaic.tiles[j]
            top, left = max(a.row_off, b.row_off), max(a.col_off, b.col_off)
            bottom = min(a.row_off + a.height, b.row_off + b.height)
            right = min(a.col_off + a.width, b.col_off + b.width)
            if bottom > top and right > left:
                pairs.append((i, j, Window(left, top, right - left, bottom - top)))
    return pairs


def seam_pairs(mosaic: Mosaic, pairs: list[tuple[int, int, Window]]) -> list[tuple[int, int, Window]]:
    """The pairs worth reading: those sharing an edge (the overlap spans at least ``SEAM_SPAN`` of
    the shorter tile side along it), and each tile's largest overlap where it has no such pair.
    A corner overlap is small yet costs about as many block decodes as an edge; on a grid of
    tiles it is 4 of every 8 neighbours."""

    def span(i: int, j: int, w: Window) -> float:
        a, b = mosaic.tiles[i], mosaic.tiles[j]
        return max(w.width / min(a.width, b.width), w.height / min(a.height, b.height))

    kept = [span(i, j, w) >= SEAM_SPAN for i, j, w in pairs]
    covered = {n for (i, j, _), keep in zip(pairs, kept) if keep for n in (i, j)}
    largest: dict[int, int] = {}
    for p, (i, j, w) in enumerate(pairs):
        for n in (i, j):
            if n not in covered and (n not in largest or _area(w) > _area(pairs[largest[n]][2])):
                largest[n] = p
    for p in largest.values():
        kept[p] = True
    return [pair for pair, keep in zip(pairs, kept) if keep]


def _area(window: Window) -> int:
    return int(window.width) * int(window.height)


def pair_windows(overlap: Window, *, seed: int, i: int, j: int, origin: tuple[int, int] = (0, 0)) -> list[Window]:
    """Up to ``WINDOWS_PER_PAIR`` seeded windows of at most ``WINDOW`` pixels inside ``overlap``.

    Decoding is the cost and GDAL decodes whole blocks: where the overlap allows, a window sits
    on a multiple of ``WINDOW`` from tile i's ``origin`` (row, col), so it lies inside one 512
    block of tile i (tile j's blocks are elsewhere: up to four of them).
    """
    h, w = min(WINDOW, int(overlap.height)), min(WINDOW, int(overlap.width))
    rng = np.random.default_rng([seed, i, j])

    def starts(begin: int, length: int, size: int, anchor: int) -> np.ndarray:
        first = begin + (anchor - begin) % WINDOW
        aligned = np.arange(first, begin + length - size + 1, WINDOW)
        return aligned if len(aligned) else np.arange(begin, begin + length - size + 1)

    rows = starts(int(overlap.row_off), int(overlap.height), h, origin[0])
    cols = starts(int(overlap.col_off), int(overlap.width), w, origin[1])
    cells = len(rows) * len(cols)
    picked = rng.choice(cells, size=min(WINDOWS_PER_PAIR, cells), replace=False)
    return [Window(int(cols[c % len(cols)]), int(rows[c // len(cols)]), w, h) for c in np.sort(picked)]


def _pair_task(
    i: int, j: int, a: Tile, b: Tile, windows: list[Window], bands: tuple[int, ...], access: Access
) -> PairStats | None:
    """Read the windows from each tile alone (the same ground seen twice) → the pair's statistics."""
    xs, ys = [], []
    for window in windows:
        # An even spread of PIXELS_PER_PAIR positions over the windows, the same on any worker:
        # sorting more for the quantiles cost more than decoding the windows.
        step = max(1, -(-int(window.height) * int(window.width) * len(windows) // PIXELS_PER_PAIR))
        x = read(WindowRead(window, (a,), bands, access)).reshape(len(bands), -1)[:, ::step]
        y = read(WindowRead(window, (b,), bands, access)).reshape(len(bands), -1)[:, ::step]
        both = ~(np.isnan(x).any(axis=0) | np.isnan(y).any(axis=0))
        xs.append(x[:, both])
        ys.append(y[:, both])
    x, y = np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)
    if x.shape[1] < MIN_PAIRED:
        return None
    moments, quantiles = pair_statistics(x.T, y.T)
    return PairStats(i, j, x.shape[1], moments, quantiles)


def measure_pairs(mosaic: Mosaic, pairs: list[tuple[int, int, Window]], *, seed: int) -> list[PairStats]:
    """The statistics of each pair, one task per pair carrying its two tiles only."""
    raw = [replace(t, gains=None, offsets=None) for t in mosaic.tiles]
    tasks = [
        dask.delayed(_pair_task, pure=True)(
            i, j, raw[i], raw[j], pair_windows(w, seed=seed, i=i, j=j, origin=(raw[i].row_off, raw[i].col_off)), mosaic.bands,
            mosaic.access,
        )
        for i, j, w in pairs
    ]
    return [s for s in dask.compute(*tasks) if s is not None]
