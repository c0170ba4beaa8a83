"""Lloyd's algorithm: in memory on a (band, n) sample, and chunked over a whole mosaic, with the
exact inertia and the test of two labellings being one map that the restarts use.

Sums run in a fixed order (one thread in memory; per chunk, added in chunk order when chunked),
so the same pixels and starts give the same centroids on any scheduler.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from pipeline.algo.kernel import nearest, nearest_all
from pipeline.errors import DataError

SAME_MAP = 0.01  # two labellings that differ on at most 1 % of the pixels (up to numbering) are one map


def sum_squared_errors(matrix: np.ndarray | da.Array, centroids: np.ndarray) -> float:
    """Exact inertia in float64 over an (n, band) matrix, in memory or chunked."""

    def block_sse(block: np.ndarray) -> np.ndarray:
        _, dist = nearest(block.T, centroids, dtype=np.float64)
        return np.array([[dist.sum()]])

    if isinstance(matrix, np.ndarray):
        step = 1 << 20
        return float(sum(block_sse(matrix[i : i + step])[0, 0] for i in range(0, len(matrix), step)))
    return float(matrix.map_blocks(block_sse, chunks=(1, 1), dtype=np.float64).sum().compute())


def lloyd(bands_first: np.ndarray, centroids: np.ndarray, *, max_iter: int, tol: float) -> tuple[np.ndarray, int, float]:
    """Lloyd's algorithm on (band, n) float32 pixels in memory: (centroids, iterations, inertia).

    Stops when the centres move by at most ``tol`` (summed squared shift; 0 once no label changes).
    A class left empty takes the pixel farthest from its centre, as in scikit-learn; fewer
    distinct pixels than classes is an error. Sums run in a fixed order: deterministic.
    """
    k = len(centroids)
    for iteration in range(1, max_iter + 1):
        _, dist, _, stats = nearest_all(bands_first, centroids)
        counts = stats[1:, 0]
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            farthest = np.argsort(dist, kind="stable")[::-1][: len(empty)]
            if dist[farthest[-1]] == 0:
                raise DataError(
                    f"the valid pixels form only {k - len(empty)} distinct spectral group(s) but model.k is {k}; "
                    f"lower model.k to {k - len(empty)}"
                )
            centroids = centroids.copy()
            centroids[empty] = bands_first[:, farthest].T
            continue
        moved = stats[1:, 1:] / counts[:, None]
        shift = float(((moved - centroids) ** 2).sum())  # 0 once no label changes
        centroids = moved
        if shift <= tol:
            break
    _, dist = nearest(bands_first, centroids)
    return centroids, iteration, float(dist.sum(dtype=np.float64))


def same_map(a: np.ndarray, b: np.ndarray, k: int, *, share: float = SAME_MAP) -> bool:
    """Whether two labellings (1..k) of the same pixels agree on all but ``share`` of them,
    whatever the class numbers: each class of one is matched with its commonest class in the
    other, both ways."""
    table = np.bincount(a.astype(np.intp) * (k + 1) + b, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    return min(table.max(axis=0).sum(), table.max(axis=1).sum()) >= (1 - share) * len(a)


def variance(matrix: np.ndarray | da.Array) -> np.ndarray:
    if isinstance(matrix, np.ndarray):
        return matrix.var(axis=0, dtype=np.float64)
    return matrix.astype(np.float32).var(axis=0, dtype=np.float64).compute()


def chunked_lloyd(matrix: da.Array, centroids: np.ndarray, *, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """Lloyd's algorithm on a chunked (n, feature) matrix from ``centroids``: (centroids, iterations).

    Each iteration is one pass over the matrix (``_class_totals``): per chunk, the labelling
    kernel labels the pixels and counts and sums them per class in float64; the client adds the
    chunks' totals in chunk order, so the scheduler does not change a bit of the result. The new
    centres are the classes' means; a class the matrix leaves empty keeps its centre. Stops when
    the centres move by at most ``tol`` (summed squared shift, absolute) or after ``max_iter``.
    Centroids are float64 (the kernel labels in float32, as ``lloyd`` does).
    """
    matrix = matrix.rechunk({1: -1})
    centroids = np.array(centroids, dtype=np.float64)
    for iteration in range(1, max_iter + 1):
        totals = _class_totals(matrix, centroids)[1:]  # label 0 (a NaN feature) counts for no class
        counts = totals[:, :1]
        moved = np.divide(totals[:, 1:], counts, out=centroids.copy(), where=counts > 0)
        shift = float(((moved - centroids) ** 2).sum())  # 0 once no label changes
        centroids = moved
        if shift <= tol:
            break
    return centroids, iteration


def _class_totals(matrix: da.Array, centroids: np.ndarray) -> np.ndarray:
    """Per label 0..k over a chunked (n, feature) matrix labelled by ``centroids``: pixel count and
    per-feature sums, float64 (k + 1, 1 + feature) (see ``nearest_all``). One dask computation
    that reads each chunk once and returns only the chunks' small totals, summed here in chunk
    order: the same on any scheduler."""
    k, chunks = len(centroids), matrix.numblocks[0]
    shape = (k + 1, 1 + matrix.shape[1])
    per_chunk = matrix.map_blocks(
        _block_totals, centroids=centroids, chunks=((shape[0],) * chunks, (shape[1],)), dtype=np.float64
    ).compute()
    totals = np.zeros(shape)
    for part in per_chunk.reshape(chunks, *shape):
        totals += part
    return totals


def _block_totals(block: np.ndarray, *, centroids: np.ndarray) -> np.ndarray:
    return nearest_all(block.T, centroids)[3]
