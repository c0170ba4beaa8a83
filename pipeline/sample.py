"""A seeded random sample of valid pixels, spread over the whole mosaic, read from a fraction of it.

Decoding is the cost, and GDAL decodes whole blocks, so the sample is drawn in two stages: a
seeded random subset of the mosaic's 512 x 512 windows (at least ``MIN_WINDOWS``, all of them for
small mosaics), then, inside each window, every pixel draws a uniform random key from a
generator seeded by (seed, window index). Keys below a rate come back with their pixels and the
``size`` smallest form the sample. Every window is equally likely to be read and every valid pixel
of a read window equally likely to be kept, so every valid pixel of the mosaic is equally likely
to be sampled; nothing depends on the scheduler or on which worker reads which window. Windows are
read in rounds, more each time, until enough valid pixels came back (nodata-heavy mosaics read
more). Sorting by key shuffles the sample (dask-ml's k-means|| always starts from row 0).
"""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
from rasterio.windows import Window

from .errors import DataError
from .mosaic import Mosaic, read_window

log = logging.getLogger(__name__)

WINDOW = 512  # the tile size of NAIP COGs and of our benchmark mosaics
MIN_WINDOWS = 256  # spread: at 600 MP this reads 11 % of the mosaic for a 1 M-pixel sample
OVERSAMPLE = 3.0  # candidates per sampled pixel in the first round


def valid_pixels(block: np.ndarray) -> np.ndarray:
    """(band, y, x) block → (n_valid, band) float32 matrix of its valid pixels, row-major."""
    flat = block.reshape(block.shape[0], -1)
    return flat[:, ~np.isnan(flat).any(axis=0)].T


def sample_block(block: np.ndarray, *, seed: int, index: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Keys and pixels of the valid pixels of one block whose random key falls below ``rate``."""
    flat = block.reshape(block.shape[0], -1)
    keys = np.random.default_rng([seed, index]).random(flat.shape[1])  # one per position: cheaper than compacting first
    keep = keys < rate
    keep[keep] = ~np.isnan(flat[:, keep]).any(axis=0)
    return keys[keep], flat[:, keep].T


def sample_windows(mosaic: Mosaic, size: int = WINDOW) -> list[Window]:
    """The mosaic cut into ``size``-wide windows, row-major."""
    return [
        Window(col, row, min(size, mosaic.width - col), min(size, mosaic.height - row))
        for row in range(0, mosaic.height, size)
        for col in range(0, mosaic.width, size)
    ]


def _sample_window(mosaic: Mosaic, window: Window, *, seed: int, index: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    return sample_block(read_window(mosaic, window), seed=seed, index=index, rate=rate)


def draw_sample(
    mosaic: Mosaic, *, size: int, seed: int, window: int = WINDOW, min_windows: int = MIN_WINDOWS
) -> np.ndarray:
    """A (n, band) float32 sample of at most ``size`` valid pixels, in random order."""
    windows = sample_windows(mosaic, window)
    order = np.random.default_rng(seed).permutation(len(windows))
    first = min(len(windows), max(min_windows, int(np.ceil(OVERSAMPLE * size / window**2))))
    rate = min(1.0, OVERSAMPLE * size / sum(windows[i].width * windows[i].height for i in order[:first]))
    keys, pixels = [np.empty(0)], [np.empty((0, len(mosaic.bands)), np.float32)]
    read, batch = 0, first
    while read < len(windows) and sum(map(len, keys)) < size:
        parts = dask.compute(
            *[dask.delayed(_sample_window)(mosaic, windows[i], seed=seed, index=int(i), rate=rate) for i in order[read : read + batch]]
        )
        keys += [p[0] for p in parts]
        pixels += [p[1] for p in parts]
        read += batch
        batch = read  # double the windows read each round
    keys_all, pixels_all = np.concatenate(keys), np.concatenate(pixels)
    if len(keys_all) > size:
        chosen = np.argpartition(keys_all, size - 1)[:size]
        keys_all, pixels_all = keys_all[chosen], pixels_all[chosen]
    sample = pixels_all[np.argsort(keys_all, kind="stable")]
    log.info("sample: %d pixels from %d of %d windows", len(sample), read, len(windows))
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
