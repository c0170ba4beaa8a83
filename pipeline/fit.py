"""One global K-Means with dask-ml, wrapped so its known defects cannot reach users.

dask-ml's KMeans (k-means||) is the fitting engine, but: its ``tol`` is an absolute squared shift
(scaled here by the sample's mean band variance, as scikit-learn does), it keeps the input dtype
for the centres (we always pass float32 and return float64), and its ``inertia_`` is a sum of
unsquared distances (we compute the real sum of squared errors ourselves). Centroids are sorted
by brightness so that label numbers do not depend on initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask_ml.cluster import KMeans

from .errors import DataError
from .label import nearest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fit:
    centroids: np.ndarray
    """(k, band) float64, in input units, brightest last."""
    n_iter: int
    tol_absolute: float
    inertia: float
    """Sum of squared distances of the fitted pixels to their nearest centroid."""
    n_pixels: int


def order_by_brightness(centroids: np.ndarray) -> np.ndarray:
    """Rows sorted by mean value, ties broken band by band, so the order is deterministic."""
    keys = [centroids[:, b] for b in reversed(range(centroids.shape[1]))] + [centroids.mean(axis=1)]
    return centroids[np.lexsort(keys)]


def sum_squared_errors(matrix: np.ndarray | da.Array, centroids: np.ndarray) -> float:
    """Exact inertia in float64 over an (n, band) matrix, in memory or chunked."""

    def block_sse(block: np.ndarray) -> np.ndarray:
        _, dist = nearest(block.T, centroids, dtype=np.float64)
        return np.array([[dist.sum()]])

    if isinstance(matrix, np.ndarray):
        step = 1 << 20
        return float(sum(block_sse(matrix[i : i + step])[0, 0] for i in range(0, len(matrix), step)))
    return float(matrix.map_blocks(block_sse, chunks=(1, 1), dtype=np.float64).sum().compute())


def fit_kmeans(matrix: np.ndarray | da.Array, *, k: int, max_iter: int, tol: float, seed: int) -> Fit:
    """Fit k centroids on an (n, band) float32 matrix (a sample in memory, or chunked)."""
    n = matrix.shape[0]
    if n < k:
        raise DataError(
            f"only {n} valid pixel(s) were found but model.k is {k}; lower model.k or check the nodata settings"
        )
    chunked = matrix if isinstance(matrix, da.Array) else da.from_array(matrix, chunks=(1 << 18, -1))
    chunked = chunked.astype(np.float32)
    variance = float(chunked.var(axis=0, dtype=np.float64).mean().compute())
    distinct = len(np.unique(matrix, axis=0)) if isinstance(matrix, np.ndarray) else None
    if distinct is not None and distinct < k:
        raise DataError(
            f"the sample has only {distinct} distinct pixel value(s) but model.k is {k}; lower model.k"
        )
    tol_absolute = tol * variance
    model = KMeans(n_clusters=k, init="k-means||", max_iter=max_iter, tol=tol_absolute, random_state=seed)
    model.fit(chunked)
    centroids = order_by_brightness(np.asarray(model.cluster_centers_, dtype=np.float64))
    inertia = sum_squared_errors(matrix, centroids)
    log.info("fit: k=%d on %d pixels, %d iteration(s), inertia %.6g", k, n, model.n_iter_, inertia)
    return Fit(centroids, int(model.n_iter_), tol_absolute, inertia, n)
