"""A seeded sample of valid pixels, every one of them equally likely, read from a fraction of the
mosaic where its spectra are.

Decoding is the cost, and GDAL decodes whole blocks, so the sample is drawn in two stages, after a
first look at the whole mosaic (``algo/first_look.py``: each tile's coarsest overview).

1. **Windows, where the spectra are.** The mosaic's 512 x 512 windows that overlap some tile are
   put in Morton (Z) order; each has a mass ``a`` from the first look (its valid pixels, weighed
   by how scarce or unusual their spectra are: ``FirstLook.mass``) and is read with probability
   ``pi_w = n a`` (capped at 1, the rest scaled up to keep ``n`` in all), by systematic sampling
   along that order from one seeded start: ``n`` windows, spread over the mosaic as strata would
   spread them, and every window of a surface that has few. ``n`` grows with the side of the mosaic (``SPREAD`` x
   sqrt(windows), at least ``MIN_WINDOWS``), bounded by what the sample can fill (``size /
   MIN_PER_WINDOW``); a small mosaic is read whole.
2. **Pixels, by key, at the inverse rate.** Every pixel of a read window draws a uniform key ``u``
   from a generator seeded by (seed, window number) and is a candidate where ``u < q``, with
   ``q = pi / pi_w``: a pixel is a candidate with probability ``pi_w q = pi`` wherever it is, so a
   window read more often gives fewer pixels each time. The ``size`` candidates with the smallest
   ``u / q`` (uniform for every candidate) form the sample: every valid pixel of the mosaic is
   equally likely to be drawn, and the sample is self-weighting (every weight 1), so K-Means on it
   estimates the objective over all pixels without weights, while a rare surface is read in many
   windows instead of whole in one window or none.

``pi`` starts at ``OVERSAMPLE`` x size / covered pixels and grows, round by round, where nodata
leaves too few candidates; ``n`` is raised until ``q <= 1`` in every window (a window's mass is
at least a tenth of a whole window's, so the base ``n`` of a mosaic of full windows is enough).
Nothing depends on the scheduler or on which worker reads which window, and each task carries
only its window's tiles. Sorting by key shuffles the sample (the fit's restarts take its first
rows).
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

from pipeline.algo.first_look import FirstLook, LookRecord, first_look
from pipeline.algo.zorder import morton
from pipeline.errors import DataError
from pipeline.io.imagery import Imagery, as_float
from pipeline.io.mosaic import Mosaic, WindowRead, read

log = logging.getLogger(__name__)

WINDOW = 512  # the tile size of NAIP COGs and of our benchmark mosaics
MIN_WINDOWS = 256  # at 600 MP this reads 11 % of the mosaic for a 1 M-pixel sample
SPREAD = 4.0  # windows per sqrt(window): 256 at 0.6 GP, ~800 at 10 GP, ~3,900 (the cap) at 0.4 Tpx
MIN_PER_WINDOW = 256  # sampled pixels a read window should give at least: caps the windows
OVERSAMPLE = 3.0  # candidates per sampled pixel in the first round
FIXED_SEED = 2**31  # the seed of the sample that decides what a seed's sample cannot (``fixed_sample``)


@dataclass(frozen=True)
class SamplePlan:
    """Which windows to read and at which key rate: the sample's design, before any pixel is read."""

    windows: tuple[int, ...]
    """Window numbers (row-major over the grid of ``size``-wide windows), in Morton order."""
    rates: tuple[float, ...]
    """Per window: ``q``, the share of its pixels that become candidates."""
    inclusion: tuple[float, ...]
    """Per window: ``pi_w``, the probability that it is read."""
    strata: int
    """``n``: windows read (each unit of cumulative ``pi_w`` along the Morton order is one stratum)."""
    covered: int
    """Windows overlapping some tile."""
    pi: float
    """Probability that any valid pixel of the mosaic is a candidate."""


@dataclass(frozen=True)
class SampleRecord:
    """How the sample was drawn (the model JSON's ``sample.design``, the report and the page)."""

    windows: int
    covered: int
    rounds: int
    inclusion: tuple[float, float]
    """The smallest and largest probability of being read among the windows read."""
    certain: int
    """Windows read with probability 1."""
    rates: tuple[float, float]
    """The smallest and largest share of a read window's pixels that were candidates."""
    look: LookRecord | None
    whole: bool = False
    """The sample is every valid pixel of the mosaic."""

    def to_json(self) -> dict:
        return {
            "windows": self.windows, "covered": self.covered, "rounds": self.rounds, "whole": self.whole,
            "inclusion": [round(v, 6) for v in self.inclusion], "certain": self.certain,
            "rates": [round(v, 6) for v in self.rates], "weights": [1.0, 1.0],
            "first_look": None if self.look is None else self.look.to_json(),
        }


@dataclass(frozen=True)
class Sample:
    """The sample, how it was drawn, and the first look it was drawn after."""

    pixels: np.ndarray
    """(n, band) float32 valid pixels, in random order."""
    record: SampleRecord
    look: FirstLook | None

    @property
    def reference(self) -> np.ndarray:
        """(m, band) float32: the pixels the first look's pre-fit ran on (the same for every seed;
        empty without a look)."""
        return self.look.reference if self.look is not None else np.empty((0, self.pixels.shape[1]), np.float32)


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


def plan_sample(
    mosaic: Mosaic | Imagery, *, size: int, seed: int, window: int = WINDOW, min_windows: int = MIN_WINDOWS,
    pi: float | None = None, look: FirstLook | None = None,
) -> SamplePlan:
    """The windows and key rates for a ``size``-pixel sample (see the module docstring); ``pi``
    overrides the candidate probability (raised when nodata left too few candidates); without a
    ``look`` every window has the same mass."""
    covered = mosaic.covered(window)
    grid_cols = covered.shape[1]
    rows, cols = np.nonzero(covered)
    numbers = (rows * grid_cols + cols)[np.argsort(morton(rows, cols), kind="stable")]
    n_covered = len(numbers)
    pixels = _window_pixels(mosaic, numbers, window, grid_cols)
    if pi is None:
        pi = min(1.0, OVERSAMPLE * size / max(int(pixels.sum()), 1))
    mass = look.mass(numbers, pixels) if look is not None else np.full(n_covered, 1.0 / n_covered)
    n = min(n_covered, max(min_windows, min(size // MIN_PER_WINDOW, math.ceil(SPREAD * math.sqrt(n_covered)))))
    while True:
        inclusion = inclusion_probabilities(mass, n)
        if n == n_covered or pi <= inclusion.min():
            break
        n = min(n_covered, math.ceil(n * pi / inclusion.min()))  # q = pi / pi_w must stay <= 1
    picked = systematic(inclusion, np.random.default_rng([seed, n]))
    chosen = numbers[picked]
    return SamplePlan(
        tuple(int(c) for c in chosen), tuple(float(min(1.0, pi / inclusion[i])) for i in picked),
        tuple(float(inclusion[i]) for i in picked), n, n_covered, float(pi),
    )


def inclusion_probabilities(mass: np.ndarray, n: int) -> np.ndarray:
    """``n`` x ``mass`` (masses summing to 1), capped at 1 with the rest scaled up so that they
    still sum to ``n``: the probabilities of reading each window when ``n`` are read."""
    inclusion = np.zeros(len(mass))
    certain = np.zeros(len(mass), dtype=bool)
    while True:
        rest = mass[~certain]
        inclusion[~certain] = (n - certain.sum()) * rest / rest.sum()
        over = ~certain & (inclusion >= 1.0)
        if not over.any():
            break
        certain |= over
        inclusion[certain] = 1.0
    return inclusion


def systematic(inclusion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of the windows picked by systematic sampling with probabilities ``inclusion``
    (summing to a whole number n) along their order: n points one apart from a random start in
    [0, 1), each picking the window whose stretch of the cumulative sum holds it."""
    ends = np.cumsum(inclusion)
    points = rng.random() + np.arange(round(ends[-1]))
    return np.minimum(np.searchsorted(ends, points, side="right"), len(inclusion) - 1)


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
    source: Mosaic | Imagery, *, size: int, seed: int, window: int = WINDOW, min_windows: int = MIN_WINDOWS,
    look: bool | FirstLook = True,
) -> Sample:
    """A sample of at most ``size`` valid pixels in random order, drawn as the module docstring
    says (``look=False``: every window with the same mass, no first look; a ``FirstLook`` of the
    same source and window: that one, as every seed would see it)."""
    seen = look if isinstance(look, FirstLook) else first_look(source, window=window) if look else None
    plan = plan_sample(source, size=size, seed=seed, window=window, min_windows=min_windows, look=seen)
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
            source, size=size, seed=seed, window=window, min_windows=plan.strata,
            pi=min(1.0, plan.pi * max(2.0, OVERSAMPLE * size / max(found, 1))), look=seen,
        )
    bands = len(source.bands)
    whole = bool(plan.pi >= 1.0 and len(plan.windows) == plan.covered and found <= size)
    keys = np.concatenate([np.empty(0), *(p[0] for p in parts)])
    pixels = np.concatenate([np.empty((0, bands), np.float32), *(p[1] for p in parts)])
    if len(keys) > size:
        chosen = np.argpartition(keys, size - 1)[:size]
        keys, pixels = keys[chosen], pixels[chosen]
    sample = pixels[np.argsort(keys, kind="stable")]
    record = SampleRecord(
        windows=len(plan.windows), covered=plan.covered, rounds=rounds, inclusion=(min(plan.inclusion), max(plan.inclusion)),
        certain=sum(p >= 1.0 for p in plan.inclusion), rates=(min(plan.rates), max(plan.rates)),
        look=None if seen is None else seen.record, whole=whole,
    )
    log.info(
        "sample: %d pixels from %d of %d windows (%d strata, %d round(s)); windows read with probability %.3g to %.3g",
        len(sample), len(plan.windows), plan.covered, plan.strata, rounds, *record.inclusion,
    )
    if len(sample) < size:
        log.info("sample: fewer valid pixels than sample.size = %d", size)
    return Sample(sample, record, seen)


def fixed_sample(source: Mosaic | Imagery, drawn: Sample, *, size: int, window: int = WINDOW) -> np.ndarray:
    """Another sample like ``drawn`` (its first look, its size), drawn with ``FIXED_SEED``: the
    same pixels whatever the seed that drew ``drawn``, to decide what no one seed's sample can."""
    return draw_sample(source, size=size, seed=FIXED_SEED, window=window, look=drawn.look or False).pixels


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
