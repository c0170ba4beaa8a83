"""One global K-Means that finds the same optimum whatever the seed.

Lloyd's algorithm stops in a local minimum that depends on its start. The fit this replaces
(dask-ml's k-means||, 8 rounds, 3 restarts on 100 000 pixels, stopped at ``tol``) gave maps that
changed with the seed on every real NAIP scene (lowest adjusted Rand index between the maps of 5
seeds, over k = 5, 7, 10: 0.64 to 0.76 per scene), for two reasons. Too few starts: a k-means++
start reaches the best optimum in 5 to 50 % of tries, so 3 restarts often missed it (inertia up
to 6 % higher). And stopping at ``tol``: seeds whose inertias were within 0.05 % of each other
still gave maps at ARI 0.82, because Lloyd crawls along flat valleys and stops part-way.
Restarts are cheap on the in-memory sample, so the fit now makes many of them there, in numpy:

1. ``n_init`` restarts on the first ``RESTART_ROWS`` rows of the sample (which is in random
   order), each seeded as ``model.init`` says (``SEEDINGS``): by greedy k-means++
   (``kmeans_plusplus``, the default) or by scalable k-means++ (``kmeans_parallel``, k-means||,
   here in numpy on the restart rows, not dask-ml's), and run to convergence by ``lloyd`` (the
   numba labelling kernel, then per-class means);
2. ``LOOK_STARTS`` more restarts come from the first look's pixels (``reference``) with a fixed
   seed: the same candidates for every seed, so a good optimum one seed's restarts miss is still
   among them (at k = 10 on one real NAIP scene all 20 restarts of one seed in three missed the
   best map, 0.14 % lower, that a quarter of the look's starts reach);
3. the best restart is improved by swaps (``algo/swaps.py``: a centre moved to the pixels it
   serves worst, kept when Lloyd from there lowers the inertia: a small, distinct surface that
   every restart left inside a larger class gets its class);
4. those of them that are different maps within ``HEAD_WITHIN`` (2 %) of the best inertia (the
   best two at least, ``REFINED`` at most) are ranked by ``PROBE`` Lloyd iterations on the whole
   sample, and those within ``REFINE_WITHIN`` (0.5 %) of the best so ranked are run there until
   no label changes (not to ``tol``); the refined maps that are still different are compared. The
   restart rows rank near optima poorly: on two real NAIP scenes at k = 7 the best optimum was
   the third- or fifth-best distinct one on the restart rows, and refining only the best two
   missed it for one seed in three (ARI 0.94 and 0.91 between seeds' maps); on a crop of the demo
   scene the best map, 0.27 % lower on the whole sample, was 0.73 % higher on its 100 000 rows;
5. the lowest inertia on the sample wins, unless the sample cannot tell it from another map: when
   their inertias differ by less than ``TIE_SE`` standard errors of the mean paired difference of
   the pixels' squared distances (zero when the sample is every valid pixel), another sample
   (another seed) may rank them the other way, so a sample drawn with a fixed seed (``decide``:
   the same for every seed, full resolution, as unbiased as the first) decides between them
   (``Restarts.tied``). The first look's pixels would be the same for every seed too, but they are
   averaged overview pixels: on one scene they ranked two maps 0.43 % apart over all pixels the
   wrong way;
6. how many restarts reached the best inertia (within ``SAME_OPTIMUM``) is recorded: when few did,
   a run with another seed may well find another map (``Restarts.unstable``), and the run says so.

Everything runs on in-memory arrays, each Lloyd run in one thread with sums in a fixed order, so
the same sample and seed give identical centroids on any scheduler. The restarts, the first look's
starts and the probes run side by side in ``threads`` (the machine's cores, or ``dask.workers``):
each result depends on its own start only and they are taken in order, so the number of threads
changes no bit (the 600 MP benchmark's fit on 2 cores: ~0.75x the time). With ``sample.size:
all`` the matrix is chunked over the mosaic: the winner of the sample is then refined on it by ``chunked_lloyd``, which
reads the mosaic once per iteration: one dask computation in which each chunk is labelled by the
same kernel and returns only its per-class pixel counts and float64 feature sums, added on the
client in chunk order (so the scheduler changes no bit); a class the whole mosaic leaves empty
keeps its centre. ``tol`` is, as in scikit-learn, an absolute squared shift summed over the
centres, so the configured ``tol`` is scaled by the matrix's mean band variance
(``Fit.tol_absolute``). The inertia is computed here, in float64, in one more pass.
Centroids come back in the order found; ``class_order`` numbers the classes deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import dask.array as da
import numpy as np

from pipeline.algo.features import ndvi_bands, normalized_difference
from pipeline.algo.lloyd import chunked_lloyd, lloyd, sum_squared_errors, variance
from pipeline.algo.restarts import (
    Restarts,
    log_restarts,
    look_starts,
    refine_on_sample,
    run_restarts,
    side_by_side,
)
from pipeline.algo.seeding import SEEDINGS
from pipeline.algo.swaps import improve
from pipeline.errors import DataError

log = logging.getLogger(__name__)

RESTART_ROWS = 100_000


@dataclass(frozen=True)
class Fit:
    centroids: np.ndarray
    """(k, feature) float64, in the order found (see ``class_order``)."""
    n_iter: int
    tol_absolute: float
    inertia: float
    """Sum of squared distances of the fitted pixels to their nearest centroid."""
    n_pixels: int
    restarts: Restarts
    seeding: str
    """How each restart was seeded: a key of ``SEEDINGS``."""


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


def fit_kmeans(
    matrix: np.ndarray | da.Array,
    *,
    seeds_from: np.ndarray,
    k: int,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    init: str = "k-means++",
    reference: np.ndarray | None = None,
    decide: Callable[[], np.ndarray] | None = None,
    whole: bool = False,
    threads: int = 1,
) -> Fit:
    """Fit k centroids on an (n, band) float32 matrix (a sample in memory, or chunked).

    ``seeds_from`` is an in-memory sample in random order (the matrix itself when it is in
    memory): the ``n_init`` restarts run on its first ``RESTART_ROWS`` rows, each seeded by
    ``init`` (a key of ``SEEDINGS``), the ``REFINED`` best distinct ones on all of it, and the
    winner is refined on ``matrix`` when that is chunked. ``reference`` (m, band), the first look's
    pixels, seeds ``LOOK_STARTS`` more restarts; ``decide`` gives the (m, band) pixels that decide
    between maps the sample cannot rank; ``whole``: the sample is every valid pixel, so it ranks
    any two.
    """
    if init not in SEEDINGS:
        raise ValueError(f"init must be one of {', '.join(SEEDINGS)}, not {init!r}")
    n = matrix.shape[0]
    if n < k:
        raise DataError(
            f"only {n} valid pixel(s) were found but model.k is {k}; lower model.k or check the nodata settings"
        )
    sample = np.ascontiguousarray(seeds_from.T, dtype=np.float32)  # (band, n): the labelling kernel's layout
    tol_absolute = tol * float(variance(matrix).mean())
    head = np.ascontiguousarray(sample[:, :RESTART_ROWS])
    parallel = side_by_side(threads)
    candidates, inertias, n_iter = run_restarts(head, SEEDINGS[init], k=k, n_init=n_init, max_iter=max_iter, tol=tol_absolute, seed=seed, parallel=parallel)
    extra, extra_inertias, iterations = look_starts(reference, head, SEEDINGS[init], k=k, max_iter=max_iter, tol=tol_absolute, parallel=parallel)
    n_iter += iterations
    best = int(np.argmin(inertias))
    swapped, swapped_inertia, iterations, kept = improve(head, candidates[best], lloyd=lloyd, max_iter=max_iter, tol=tol_absolute)
    n_iter += iterations
    if kept:
        log.info("fit: %d swap(s) lowered the best restart's inertia by %.3g %%", kept, 100 * (1 - swapped_inertia / inertias[best]))
        extra, extra_inertias = [*extra, swapped], [*extra_inertias, swapped_inertia]
    centroids, tied, decided, iterations = refine_on_sample(
        sample, head, [*candidates, *extra], [*inertias, *extra_inertias], max_iter=max_iter, decide=decide, whole=whole,
        parallel=parallel,
    )
    n_iter += iterations
    restarts = Restarts(tuple(inertias), head.shape[1], tied, decided)
    log_restarts(restarts, n_init=n_init, init=init)
    if isinstance(matrix, da.Array):
        centroids, iterations = chunked_lloyd(matrix, centroids, max_iter=max_iter, tol=tol_absolute)
        n_iter += iterations
    inertia = sum_squared_errors(matrix, centroids)
    log.info("fit: refined on %d pixels, inertia %.6g", n, inertia)
    return Fit(centroids, n_iter, tol_absolute, inertia, n, restarts, init)
