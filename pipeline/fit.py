"""One global K-Means with dask-ml, wrapped so its known defects cannot reach users.

dask-ml's KMeans (k-means||) is the fitting engine, but: its ``tol`` is an absolute squared shift
(scaled here by the sample's mean band variance, as scikit-learn does), it keeps the input dtype
for the centres (we always pass float32 and return float64), and its ``inertia_`` is a sum of
unsquared distances (we compute the real sum of squared errors ourselves). Centroids come back
in the order dask-ml found them; ``class_order`` numbers the classes deterministically.

Lloyd's algorithm stops in a local minimum that depends on the start: on one NAIP-like sample,
three seeds gave inertias 20 % apart. So we restart ``n_init`` times on a small in-memory sample,
keep the lowest inertia and refine it on the whole sample, which costs far less than one more
pass over the mosaic.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask_ml.cluster import KMeans

from .errors import DataError
from .features import ndvi_bands, normalized_difference
from .label import nearest

log = logging.getLogger(__name__)
# dask-ml warns when k-means|| seeds fewer than k centres; _fill_empty_classes mends exactly that,
# and the warning would otherwise reach users' terminals through logging's last-resort handler.
logging.getLogger("dask_ml.cluster.k_means").addFilter(lambda record: not record.getMessage().startswith("Found fewer than"))

ROWS_PER_CHUNK = 262_144  # sample matrix chunks: several per core for dask-ml's reductions
# Restarts on 100 k rows, then refined on 1 M, did as well on a NAIP mosaic as restarts on all
# 1 M rows (inertia 1.00019 vs 1.00016-1.00039 x scikit-learn's full-data fit) at a fifth the time.
RESTART_ROWS = 100_000
# k-means|| rounds. dask-ml's default, ln(initial cost), is ~21 on imagery; Bahmani et al. found 5
# rounds enough. On NAIP, 8 rounds halved the fit time with the same inertia.
INIT_ROUNDS = 8


@dataclass(frozen=True)
class Fit:
    centroids: np.ndarray
    """(k, feature) float64, in the order found (see ``class_order``)."""
    n_iter: int
    tol_absolute: float
    inertia: float
    """Sum of squared distances of the fitted pixels to their nearest centroid."""
    n_pixels: int


def class_order(spectra: np.ndarray, band_names: tuple[str, ...], order_by: str) -> np.ndarray:
    """The permutation numbering classes from their (k, band) mean spectra in input units:
    "brightness" by mean value, "ndvi" by NDVI of the spectrum (bands named red and nir), each
    with ties broken band by band so the order is deterministic; "none" keeps the fitted order."""
    if order_by == "none":
        return np.arange(len(spectra))
    keys = [spectra[:, b] for b in reversed(range(spectra.shape[1]))]
    if order_by == "brightness":
        return np.lexsort(keys + [spectra.mean(axis=1)])
    red, nir = ndvi_bands(band_names, "model.order_by: ndvi")
    return np.lexsort(keys + [normalized_difference(spectra[:, nir], spectra[:, red])])


def sum_squared_errors(matrix: np.ndarray | da.Array, centroids: np.ndarray) -> float:
    """Exact inertia in float64 over an (n, band) matrix, in memory or chunked."""

    def block_sse(block: np.ndarray) -> np.ndarray:
        _, dist = nearest(block.T, centroids, dtype=np.float64)
        return np.array([[dist.sum()]])

    if isinstance(matrix, np.ndarray):
        step = 1 << 20
        return float(sum(block_sse(matrix[i : i + step])[0, 0] for i in range(0, len(matrix), step)))
    return float(matrix.map_blocks(block_sse, chunks=(1, 1), dtype=np.float64).sum().compute())


def fit_kmeans(
    matrix: np.ndarray | da.Array, *, seeds_from: np.ndarray, k: int, n_init: int, max_iter: int, tol: float, seed: int
) -> Fit:
    """Fit k centroids on an (n, band) float32 matrix (a sample in memory, or chunked).

    k-means|| costs a pass over the data per round (``INIT_ROUNDS``), so the
    ``n_init`` restarts run on at most ``RESTART_ROWS`` rows of ``seeds_from``, an in-memory
    sample in random order; the restart with the lowest inertia there is then refined by Lloyd on
    the whole matrix.
    """
    n = matrix.shape[0]
    if n < k:
        raise DataError(
            f"only {n} valid pixel(s) were found but model.k is {k}; lower model.k or check the nodata settings"
        )
    chunked = _chunked(matrix)
    tol_absolute = tol * float(chunked.var(axis=0, dtype=np.float64).mean().compute())
    head = np.ascontiguousarray(seeds_from[:RESTART_ROWS], dtype=np.float32)
    head_chunked = _chunked(head)
    best: tuple[float, np.ndarray] | None = None
    n_iter = 0
    for restart in range(n_init):
        seed_r = int(np.random.SeedSequence([seed, restart]).generate_state(1)[0])
        centroids, iterations = _lloyd(head_chunked, "k-means||", k=k, max_iter=max_iter, tol=tol_absolute, seed=seed_r)
        centroids, iterations = _fill_empty_classes(head, head_chunked, centroids, iterations, max_iter=max_iter, tol=tol_absolute)
        inertia = sum_squared_errors(head, centroids)
        n_iter += iterations
        log.info("fit: restart %d of %d on %d pixels, %d iteration(s), inertia %.6g", restart + 1, n_init, len(head), iterations, inertia)
        if best is None or inertia < best[0]:
            best = (inertia, centroids)
    assert best is not None  # n_init >= 1
    centroids, iterations = _lloyd(chunked, best[1], k=k, max_iter=max_iter, tol=tol_absolute)
    if isinstance(matrix, np.ndarray):
        centroids, iterations = _fill_empty_classes(matrix, chunked, centroids, iterations, max_iter=max_iter, tol=tol_absolute)
    inertia = sum_squared_errors(matrix, centroids)
    log.info("fit: refined on %d pixels, %d iteration(s), inertia %.6g", n, iterations, inertia)
    return Fit(centroids, n_iter + iterations, tol_absolute, inertia, n)


def _chunked(matrix: np.ndarray | da.Array) -> da.Array:
    if isinstance(matrix, da.Array):
        return matrix.astype(np.float32)
    # Under distributed, an in-memory sample embedded in the graph is sent to the workers again
    # with every Lloyd iteration (10 MB per iteration for a 0.7 MP sample): send it once.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        return da.from_array(matrix, chunks=(ROWS_PER_CHUNK, -1)).astype(np.float32).persist()


def _lloyd(chunked: da.Array, init: str | np.ndarray, *, k: int, max_iter: int, tol: float, seed: int = 0) -> tuple[np.ndarray, int]:
    model = KMeans(n_clusters=k, init=init, max_iter=max_iter, tol=tol, random_state=seed, init_max_iter=INIT_ROUNDS)
    with warnings.catch_warnings():  # empty clusters divide by zero; _fill_empty_classes mends them
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(chunked)
    return np.asarray(model.cluster_centers_, dtype=np.float64), int(model.n_iter_)


def _fill_empty_classes(
    sample: np.ndarray, chunked: da.Array, centroids: np.ndarray, n_iter: int, *, max_iter: int, tol: float
) -> tuple[np.ndarray, int]:
    """Give every class pixels, as scikit-learn does for empty clusters.

    dask-ml's k-means|| often seeds fewer than k centres for large k and pads with made-up ones,
    which end up empty. Each empty centre moves to the sample pixel farthest from its centroid,
    and Lloyd continues from there. No pixel at a distance left means too few distinct values.
    """
    k = len(centroids)
    for _ in range(k):
        labels, dist = nearest(sample.T, centroids, dtype=np.float64)
        empty = np.flatnonzero(np.bincount(labels, minlength=k + 1)[1:] == 0)
        if not len(empty):
            return centroids, n_iter
        farthest = np.argsort(dist, kind="stable")[::-1][: len(empty)]
        if dist[farthest[-1]] == 0:
            used = k - len(empty)
            raise DataError(
                f"the valid pixels form only {used} distinct spectral group(s) but model.k is {k}; lower model.k to {used}"
            )
        centroids = centroids.copy()
        centroids[empty] = sample[farthest]
        centroids, more = _lloyd(chunked, centroids, k=k, max_iter=max_iter, tol=tol)
        n_iter += more
    return centroids, n_iter
