"""A seeded random sample of valid pixels, spread over the whole mosaic, read from a fraction of it.

Decoding is the cost, and GDAL decodes whole blocks, so the sample is drawn in two stages.

1. **Windows, stratified.** The mosaic's 512 x 512 windows that overlap some tile are put in
   Morton (Z) order and cut into ``S`` runs of equal length: compact strata that tile the valid
   area whatever its shape. ``S`` grows with the side of the mosaic (``SPREAD`` x sqrt(windows),
   at least ``MIN_WINDOWS``), bounded by what the sample can fill (``size / MIN_PER_WINDOW``);
   a small mosaic is read whole. Each stratum gives ``n`` random windows (seeded by the stratum),
   usually one.
2. **Pixels, by key.** Every pixel of a read window draws a uniform key ``u`` from a generator
   seeded by (seed, window number) and is a candidate where ``u < q``, with ``q = pi * m / n``
   for a stratum of ``m`` windows: a pixel is a candidate with probability ``pi`` wherever it is.
   The ``size`` candidates with the smallest ``u / q`` (uniform for every candidate) form the
   sample, so every valid pixel of the mosaic is equally likely to be drawn.

``pi`` starts at ``OVERSAMPLE`` x size / covered pixels and grows, round by round, where nodata
leaves too few candidates. Nothing depends on the scheduler or on which worker reads which window,
and each task carries only its window's tiles. Sorting by key shuffles the sample (the fit's
restarts take its first rows).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from rasterio.windows import Window

from pipeline.errors import DataError
from pipeline.io.imagery import Imagery, as_float
from pipeline.io.mosaic import Mosaic, WindowRead, read

log = logging.getLogger(__name__)

WINDOW = 512  # the tile size of NAIP COGs and of our benchmark mosaics
MIN_WINDOWS = 256  # at 600 MP this reads 11 % of the mosaic for a 1 M-pixel sample
SPREAD = 4.0  # strata per sqrt(window): 256 at 0.6 GP, ~800 at 10 GP, ~3,900 (the cap) at 0.4 Tpx
MIN_PER_WINDOW = 256  # sampled pixels a read window should give at least: caps the strata
OVERSAMPLE = 3.0  # candidates per sampled pixel in the first round


@dataclass(frozen=True)
class SamplePlan:
    """Which windows to read and at which key rate: the sample's design, before any pixel is read."""

    windows: tuple[int, ...]
    """Window numbers (row-major over the grid of ``size``-wide windows), in stratum order."""
    rates: tuple[float, ...]
    """Per window: ``q``, the share of its pixels that become candidates."""
    strata: int
    covered: int
    """Windows overlapping some tile."""
    pi: float
    """Probability that any valid pixel of the mosaic is a candidate."""


def valid_pixels(block: np.ndarray) -> np.ndarray:
    """(band, y, x) block → (n_valid, band) float32 matrix of its valid pixels, row-major."""
    flat = block.reshape(block.shape[0], -1)
    return flat[:, ~np.isnan(flat).any(axis=0)].T


def sample_block(block: np.ndarray, *, seed: int, index: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised keys (``u / rate``) and pixels of the valid pixels of one block whose key ``u``
    falls below ``rate``."""
    flat = block.reshape(block.shape[0], -1)
    keys = np.random.default_rng([seed, index]).random(flat.shape[1])  # one per position: cheaper than compacting first
    keep = keys < rate
    keep[keep] = ~np.isnan(flat[:, keep]).any(axis=0)
    return keys[keep] / rate, flat[:, keep].T


def morton(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Z-order codes of (row, col) pairs: sorting by them keeps neighbours together."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333), (1, 0x5555555555555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v

    return spread(rows) | (spread(cols) << np.uint64(1))


def plan_sample(
    mosaic: Mosaic | Imagery, *, size: int, seed: int, window: int = WINDOW, min_windows: int = MIN_WINDOWS, pi: float | None = None
) -> SamplePlan:
    """The stratified windows and key rates for a ``size``-pixel sample (see the module docstring);
    ``pi`` overrides the candidate probability (raised when nodata left too few candidates)."""
    covered = mosaic.covered(window)
    grid_cols = covered.shape[1]
    rows, cols = np.nonzero(covered)
    numbers = (rows * grid_cols + cols)[np.argsort(morton(rows, cols), kind="stable")]
    n = len(numbers)
    strata = min(n, max(min_windows, min(size // MIN_PER_WINDOW, math.ceil(SPREAD * math.sqrt(n)))))
    if pi is None:
        pixels = _window_pixels(mosaic, numbers, window, grid_cols).sum()
        pi = min(1.0, OVERSAMPLE * size / max(pixels, 1))
    chosen, rates = [], []
    for s, members in enumerate(np.array_split(numbers, strata)):
        m = len(members)
        take = min(m, max(1, math.ceil(pi * m - 1e-9)))  # q = pi * m / take stays <= 1
        picked = np.random.default_rng([seed, strata, s]).permutation(m)[:take]
        chosen.extend(int(members[i]) for i in picked)
        rates.extend([pi * m / take] * take)
    return SamplePlan(tuple(chosen), tuple(rates), strata, n, pi)


def _window_pixels(mosaic: Mosaic | Imagery, numbers: np.ndarray, size: int, grid_cols: int) -> np.ndarray:
    rows, cols = numbers // grid_cols, numbers % grid_cols
    return np.minimum(size, mosaic.height - rows * size) * np.minimum(size, mosaic.width - cols * size)


def window_of(mosaic: Mosaic | Imagery, number: int, size: int = WINDOW) -> Window:
    """The ``size``-wide window numbered ``number`` (row-major) on the mosaic grid."""
    grid_cols = -(-mosaic.width // size)
    row, col = (number // grid_cols) * size, (number % grid_cols) * size
    return Window(col, row, min(size, mosaic.width - col), min(size, mosaic.height - row))


def _sample_window(job: WindowRead, seed: int, index: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    return sample_block(read(job), seed=seed, index=index, rate=rate)


def _sample_array(block: np.ndarray, nodata: float | None, seed: int, index: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    return sample_block(as_float(block, nodata=nodata), seed=seed, index=index, rate=rate)


def _sample_tasks(source: Mosaic | Imagery, windows: list[Window], plan: SamplePlan, *, seed: int) -> list[Delayed]:
    """One task per window. A mosaic's are built as a plain graph of ``WindowRead`` jobs:
    ``dask.delayed`` would walk every job's tiles looking for collections (1.7 ms a task at 5,000
    tiles). Any other array is sliced: dask fuses the slice into its reader, so only the window
    is read."""
    mosaic = source if isinstance(source, Mosaic) else source.mosaic
    token = tokenize(seed, plan)
    tasks = []
    for window, number, rate in zip(windows, plan.windows, plan.rates):
        if mosaic is None:
            rows, cols = window.toslices()
            tasks.append(dask.delayed(_sample_array, pure=True)(source.raw[:, rows, cols], source.nodata, seed, number, rate))
            continue
        key = f"sample-{number}-{token}"
        graph = HighLevelGraph.from_collections(key, {key: (_sample_window, mosaic.plan(window), seed, number, rate)}, dependencies=())
        tasks.append(Delayed(key, graph))
    return tasks


def draw_sample(
    source: Mosaic | Imagery, *, size: int, seed: int, window: int = WINDOW, min_windows: int = MIN_WINDOWS
) -> np.ndarray:
    """A (n, band) float32 sample of at most ``size`` valid pixels, in random order."""
    plan = plan_sample(source, size=size, seed=seed, window=window, min_windows=min_windows)
    rounds = 0
    while True:
        rounds += 1
        windows = [window_of(source, number, window) for number in plan.windows]
        parts = dask.compute(*_sample_tasks(source, windows, plan, seed=seed))
        found = sum(len(keys) for keys, _ in parts)
        if found >= size or plan.pi >= 1.0:
            break
        # Nodata left too few candidates: raise the rate everywhere (windows read again, so every
        # valid pixel stays equally likely).
        plan = plan_sample(
            source, size=size, seed=seed, window=window, min_windows=min_windows,
            pi=min(1.0, plan.pi * max(2.0, OVERSAMPLE * size / max(found, 1))),
        )
    bands = len(source.bands)
    keys = np.concatenate([np.empty(0), *(p[0] for p in parts)])
    pixels = np.concatenate([np.empty((0, bands), np.float32), *(p[1] for p in parts)])
    if len(keys) > size:
        chosen = np.argpartition(keys, size - 1)[:size]
        keys, pixels = keys[chosen], pixels[chosen]
    sample = pixels[np.argsort(keys, kind="stable")]
    log.info(
        "sample: %d pixels from %d of %d windows (%d strata, %d round(s))",
        len(sample), len(plan.windows), plan.covered, plan.strata, rounds,
    )
    if len(sample) < size:
        log.info("sample: fewer valid pixels than sample.size = %d", size)
    return sample


def full_matrix(data: da.Array) -> da.Array:
    """Every valid pixel as a chunked (n, band) float32 matrix (one chunk per block)."""
    counts = da.map_blocks(
        lambda b: np.array([[[(~np.isnan(b).any(axis=0)).sum()]]]), data, chunks=(1, 1, 1), dtype=np.int64
    ).compute().ravel()
    blocks = data.to_delayed().ravel()
    parts = [
        da.from_delayed(dask.delayed(valid_pixels)(b), shape=(int(n), data.shape[0]), dtype=np.float32)
        for b, n in zip(blocks, counts)
        if n
    ]
    if not parts:
        raise DataError("the input has no valid pixel; check input.nodata and the rasters' masks")
    return da.concatenate(parts).rechunk({1: -1})
