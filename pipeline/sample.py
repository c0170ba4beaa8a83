"""A seeded random sample of valid pixels, drawn block by block in one read of the mosaic.

Each block draws a uniform random key per valid pixel from a generator seeded by (seed, block
index), so the sample does not depend on the scheduler or on which worker reads which block.
Keys below an oversampling threshold come back with their pixels; the ``size`` smallest keys form
the sample, which is an exact uniform sample of the valid pixels whenever enough came back, and
sorting by key shuffles it (dask-ml's k-means|| always starts from row 0).
"""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)

OVERSAMPLE = 3.0  # keep 3x the target so blocks with nodata still leave enough candidates


def valid_pixels(block: np.ndarray) -> np.ndarray:
    """(band, y, x) block → (n_valid, band) float32 matrix of its valid pixels, row-major."""
    flat = block.reshape(block.shape[0], -1)
    return flat[:, ~np.isnan(flat).any(axis=0)].T


def sample_block(block: np.ndarray, *, seed: int, index: tuple[int, ...], rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Keys and pixels of the valid pixels of one block whose random key falls below ``rate``."""
    pixels = valid_pixels(block)
    keys = np.random.default_rng([seed, *index]).random(len(pixels))
    keep = keys < rate
    return keys[keep], pixels[keep]


def draw_sample(data: da.Array, *, size: int, seed: int) -> np.ndarray:
    """A (n, band) float32 sample of at most ``size`` valid pixels, in random order."""
    total = data.shape[1] * data.shape[2]
    rate = min(1.0, OVERSAMPLE * size / total)
    blocks = data.to_delayed().ravel()
    indices = list(np.ndindex(*data.numblocks))
    parts = dask.compute(
        *[dask.delayed(sample_block)(b, seed=seed, index=i, rate=rate) for b, i in zip(blocks, indices)]
    )
    keys = np.concatenate([p[0] for p in parts])
    pixels = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, data.shape[0]), np.float32)
    if len(keys) > size:
        chosen = np.argpartition(keys, size - 1)[:size]
        keys, pixels = keys[chosen], pixels[chosen]
    order = np.argsort(keys, kind="stable")
    sample = pixels[order]
    if len(sample) < size:
        log.info("sample: %d valid pixels drawn (fewer than sample.size = %d)", len(sample), size)
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

