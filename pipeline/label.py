"""Nearest-centroid labelling: pure numpy kernels, unit-tested without dask.

Distances are accumulated band by band and class by class, elementwise, so every pixel's label
depends only on its own values: a pixel gets the same label in any chunking, on any scheduler,
and no temporary is larger than one band of the block (k = 254 must not allocate k x pixels).
"""

from __future__ import annotations

import numpy as np

NODATA_LABEL = 0


def nearest(
    pixels: np.ndarray, centroids: np.ndarray, *, dtype: type = np.float32, second: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For pixels (band, n), the 1-based nearest class (uint8, 0 where any band is NaN) and
    the squared distance to it (inf where invalid). If given, ``second`` (n,) receives the
    squared distance to the second-nearest centroid (NaN where invalid)."""
    pixels = np.asarray(pixels, dtype=dtype)
    centroids = np.asarray(centroids, dtype=dtype)
    n = pixels.shape[1]
    best = np.full(n, np.inf, dtype=dtype)
    label = np.zeros(n, dtype=np.uint8)
    dist = np.empty(n, dtype=dtype)
    diff = np.empty(n, dtype=dtype)
    closer = np.empty(n, dtype=bool)
    if second is not None:
        second.fill(np.inf)
    for index, centroid in enumerate(centroids, start=1):
        dist.fill(0)
        for band, value in zip(pixels, centroid):
            np.subtract(band, value, out=diff)
            np.multiply(diff, diff, out=diff)
            dist += diff
        if second is not None:
            # The second nearest so far is min(second, max(dist, best)): no k x pixels temporary.
            np.maximum(dist, best, out=diff)
            np.minimum(second, diff, out=second)
        # NaN distances compare False, so invalid pixels keep label 0; ties keep the lower class.
        np.less(dist, best, out=closer)
        np.copyto(best, dist, where=closer)
        label[closer] = index
    return label, best


def assign_labels(block: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Label a (band, y, x) float block: uint8 (y, x), classes 1..k, nodata (NaN) 0."""
    bands, height, width = block.shape
    label, _ = nearest(block.reshape(bands, height * width), centroids)
    return label.reshape(height, width)


def label_with_margin(block: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a (band, y, x) float block: the labels (as ``assign_labels``) and, per pixel, the
    distance to the second-nearest centroid minus the distance to the nearest (float32, >= 0;
    NaN where the label is 0)."""
    bands, height, width = block.shape
    second = np.empty(height * width, dtype=np.float32)
    label, best = nearest(block.reshape(bands, height * width), centroids, second=second)
    margin = np.sqrt(second, out=second)
    margin -= np.sqrt(best, out=best)
    margin[label == NODATA_LABEL] = np.nan
    return label.reshape(height, width), margin.reshape(height, width)


def class_statistics(block: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per label 0..k: pixel count and per-band sums, as a float64 (k + 1, 1 + band) array."""
    flat = labels.ravel()
    stats = np.zeros((k + 1, 1 + block.shape[0]), dtype=np.float64)
    stats[:, 0] = np.bincount(flat, minlength=k + 1)
    valid = flat != NODATA_LABEL
    for b, band in enumerate(block.reshape(block.shape[0], -1)):
        stats[:, 1 + b] = np.bincount(flat[valid], weights=band[valid], minlength=k + 1)
    return stats
