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
4. those of them that are different maps within ``REFINE_WITHIN`` of the best inertia (the best
   two at least, ``REFINED`` at most) are run on the whole sample until no label changes (not to
   ``tol``), and the refined maps that are still different are compared there: the ranking of
   near optima on 100 000 pixels is not theirs on the whole sample (on two real NAIP scenes at
   k = 7 the best optimum was the third- or fifth-best distinct one on the restart rows, 0.13 %
   from the best there, and refining only the best two missed it for one seed in three: ARI 0.94
   and 0.91 between seeds' maps);
5. the lowest inertia on the sample wins, unless the sample cannot tell it from another map: when
   their inertias differ by less than ``TIE_SE`` standard errors of the mean paired difference of
   the pixels' squared distances (zero when the sample is every valid pixel), another sample
   (another seed) may rank them the other way, so the ``reference`` (the first look's pixels, the
   same for every seed) decides between them (``Restarts.tied``);
6. how many restarts reached the best inertia (within ``SAME_OPTIMUM``) is recorded: when few did,
   a run with another seed may well find another map (``Restarts.unstable``), and the run says so.

Everything runs in one thread on in-memory arrays, with sums in a fixed order, so the same sample
and seed give identical centroids on any scheduler. With ``sample.size: all`` the matrix is
chunked over the mosaic: the winner of the sample is then refined on it by ``chunked_lloyd``, which
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
from pipeline.algo.kernel import nearest, nearest_all
from pipeline.algo.seeding import SEEDINGS
from pipeline.algo.swaps import improve
from pipeline.errors import DataError

log = logging.getLogger(__name__)

RESTART_ROWS = 100_000
REFINED = 8  # distinct restarts refined on the whole sample, at most
REFINE_WITHIN = 0.005  # those within 0.5 % of the best inertia on the restart rows (and always the best two)
REFINE_STEP = 10  # Lloyd iterations on the whole sample between checks that a refinement is not a repeat
LOOK_STARTS = 8  # restarts from the first look's pixels, the same for every seed
LOOK_SEED = 2**31  # their generator's seed: no sample seed's
REFERENCE_PER_CLASS = 100  # look pixels per class at least for them
TIE_SE = 3.0  # standard errors of the paired difference within which the sample cannot rank two maps
SAME_OPTIMUM = 1e-3  # a restart within 0.1 % of the best inertia reached the best optimum
SAME_MAP = 0.01  # two labellings that differ on at most 1 % of the pixels (up to numbering) are one map
# Unstable: at the rate this fit's restarts reached the best, as many restarts again (a run with
# another seed) would miss it with a probability above this.
MISS_RISK = 0.05


@dataclass(frozen=True)
class Restarts:
    """The inertias the restarts reached on the restart rows, in restart order."""

    inertias: tuple[float, ...]
    rows: int
    tied: bool = False
    """The best optimum on the sample and another map, refined there, were within ``TIE_SE``
    standard errors: another sample (another seed) may well rank them the other way."""
    decided_by_reference: bool = False
    """The tie was decided on the first look's pixels, the same for every seed."""

    @property
    def reached_best(self) -> int:
        best = min(self.inertias)
        return sum(i <= best * (1 + SAME_OPTIMUM) for i in self.inertias)

    @property
    def miss_risk(self) -> float:
        """(1 - p)^n, with p the share of the n restarts that reached the best: the chance that n
        restarts from another seed miss the best optimum, estimated from this fit's restarts."""
        n = len(self.inertias)
        return (1 - self.reached_best / n) ** n

    @property
    def unstable(self) -> bool | None:
        """True when restarts from another seed could well miss the optimum this fit found (or a
        better one: this fit may have missed it too), or when it is tied with another map and
        nothing the same for every seed decided; None when one restart cannot tell."""
        if len(self.inertias) < 2:
            return None
        return self.miss_risk > MISS_RISK or (self.tied and not self.decided_by_reference)

    def to_json(self) -> dict:
        return {
            "count": len(self.inertias), "rows": self.rows, "reached_best": self.reached_best, "within": SAME_OPTIMUM,
            "miss_risk": self.miss_risk, "tied": self.tied, "decided_by_reference": self.decided_by_reference,
            "inertias": list(self.inertias),
        }


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
    whole: bool = False,
) -> Fit:
    """Fit k centroids on an (n, band) float32 matrix (a sample in memory, or chunked).

    ``seeds_from`` is an in-memory sample in random order (the matrix itself when it is in
    memory): the ``n_init`` restarts run on its first ``RESTART_ROWS`` rows, each seeded by
    ``init`` (a key of ``SEEDINGS``), the ``REFINED`` best distinct ones on all of it, and the
    winner is refined on ``matrix`` when that is chunked. ``reference`` (m, band), the same
    pixels whatever the seed, decides between maps the sample cannot rank; ``whole``: the sample
    is every valid pixel, so it ranks any two.
    """
    if init not in SEEDINGS:
        raise ValueError(f"init must be one of {', '.join(SEEDINGS)}, not {init!r}")
    n = matrix.shape[0]
    if n < k:
        raise DataError(
            f"only {n} valid pixel(s) were found but model.k is {k}; lower model.k or check the nodata settings"
        )
    sample = np.ascontiguousarray(seeds_from.T, dtype=np.float32)  # (band, n): the labelling kernel's layout
    tol_absolute = tol * float(_variance(matrix).mean())
    head = np.ascontiguousarray(sample[:, :RESTART_ROWS])
    candidates, inertias, n_iter = _restarts(
        head, SEEDINGS[init], k=k, n_init=n_init, max_iter=max_iter, tol=tol_absolute, seed=seed
    )
    extra, extra_inertias, iterations = _look_starts(reference, head, SEEDINGS[init], k=k, max_iter=max_iter, tol=tol_absolute)
    n_iter += iterations
    best = int(np.argmin(inertias))
    swapped, swapped_inertia, iterations, kept = improve(head, candidates[best], lloyd=lloyd, max_iter=max_iter, tol=tol_absolute)
    n_iter += iterations
    if kept:
        log.info("fit: %d swap(s) lowered the best restart's inertia by %.3g %%", kept, 100 * (1 - swapped_inertia / inertias[best]))
        extra, extra_inertias = [*extra, swapped], [*extra_inertias, swapped_inertia]
    centroids, tied, decided, iterations = _refine_on_sample(
        sample, head, [*candidates, *extra], [*inertias, *extra_inertias], max_iter=max_iter, reference=reference, whole=whole,
    )
    n_iter += iterations
    restarts = Restarts(tuple(inertias), head.shape[1], tied, decided)
    _log_restarts(restarts, n_init=n_init, init=init)
    if isinstance(matrix, da.Array):
        centroids, iterations = chunked_lloyd(matrix, centroids, max_iter=max_iter, tol=tol_absolute)
        n_iter += iterations
    inertia = sum_squared_errors(matrix, centroids)
    log.info("fit: refined on %d pixels, inertia %.6g", n, inertia)
    return Fit(centroids, n_iter, tol_absolute, inertia, n, restarts, init)


def _restarts(
    head: np.ndarray, draw_starts: Callable[..., np.ndarray], *, k: int, n_init: int, max_iter: int, tol: float, seed: int
) -> tuple[list[np.ndarray], list[float], int]:
    """The ``n_init`` restarts on the (band, n) restart pixels, restart r seeded by ``draw_starts``
    from the generator of [seed, r] and run by ``lloyd`` to ``tol``: their centroids, their
    inertias and the iterations they took in all."""
    candidates, inertias, n_iter = [], [], 0
    for restart in range(n_init):
        start = draw_starts(head.T, k, np.random.default_rng([seed, restart]))
        centroids, iterations, inertia = lloyd(head, start, max_iter=max_iter, tol=tol)
        candidates.append(centroids)
        inertias.append(inertia)
        n_iter += iterations
    return candidates, inertias, n_iter


def _look_starts(
    reference: np.ndarray | None, head: np.ndarray, draw_starts: Callable[..., np.ndarray], *, k: int, max_iter: int, tol: float
) -> tuple[list[np.ndarray], list[float], int]:
    """``LOOK_STARTS`` more restarts, the same for every seed: each drawn from the (m, band)
    ``reference`` (the first look's pixels) from a fixed generator and run by Lloyd on it; their
    centroids, their inertias on the restart rows and the iterations taken. None when the
    reference is too small to seed k classes."""
    if reference is None or len(reference) < REFERENCE_PER_CLASS * k:
        return [], [], 0
    pixels = np.ascontiguousarray(reference.T, dtype=np.float32)
    candidates, inertias, n_iter = [], [], 0
    for start in range(LOOK_STARTS):
        try:
            centroids, iterations, _ = lloyd(pixels, draw_starts(reference, k, np.random.default_rng([LOOK_SEED, start])), max_iter=max_iter, tol=tol)
        except DataError:  # fewer distinct pixels in the reference than classes
            return [], [], n_iter
        candidates.append(centroids)
        inertias.append(float(nearest(head, centroids)[1].sum(dtype=np.float64)))
        n_iter += iterations
    return candidates, inertias, n_iter


def _refine_on_sample(
    sample: np.ndarray, head: np.ndarray, candidates: list[np.ndarray], inertias: list[float], *, max_iter: int,
    reference: np.ndarray | None, whole: bool,
) -> tuple[np.ndarray, bool, bool, int]:
    """The ``REFINED`` best distinct restarts run on the whole (band, n) sample, and the map
    chosen among those still different (see the module docstring): its centroids, whether the
    sample could not rank it against another (``Restarts.tied``), whether the reference decided,
    and the iterations taken."""
    refined: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []  # inertia, centroids, labels, distances
    n_iter = 0
    for i in _distinct_optima(head, candidates, inertias):
        found = _refined(sample, head, candidates[i], [r[1] for r in refined], max_iter=max_iter)
        n_iter += found[0]
        if found[1] is None:
            continue
        centroids, inertia = found[1], found[2]
        labels, distances = nearest(sample, centroids)
        if not any(same_map(labels, other[2], len(centroids)) for other in refined):
            refined.append((inertia, centroids, labels, distances))
    refined.sort(key=lambda r: r[0])
    best = refined[0]
    tied = [r for r in refined[1:] if _within_noise(best[3], r[3], whole=whole)]
    if not tied:
        return best[1], False, False, n_iter
    if reference is None or len(reference) == 0:
        return best[1], True, False, n_iter
    on_reference = [sum_squared_errors(reference, r[1]) for r in [best, *tied]]
    chosen = [best, *tied][int(np.argmin(on_reference))]
    log.info(
        "fit: %d map(s) within %.0f standard errors of the best on the sample; the first look's %d pixels chose %s",
        len(tied), TIE_SE, len(reference), "it" if chosen is best else "another",
    )
    return chosen[1], True, True, n_iter


def _refined(
    sample: np.ndarray, head: np.ndarray, centroids: np.ndarray, finished: list[np.ndarray], *, max_iter: int
) -> tuple[int, np.ndarray | None, float]:
    """Lloyd on the whole sample from ``centroids`` until no label changes (not to ``tol``: two
    seeds that reach one optimum then give one map; stopped at tol / 100, their maps were at ARI
    0.96 on a NAIP scene at k = 10), ``REFINE_STEP`` iterations at a time: (iterations, centroids,
    inertia), or no centroids once its map on the restart rows is one of the ``finished`` maps'
    (it is on its way to that optimum: most refinements crawl there, 45 to 125 iterations on a
    real scene)."""
    done = 0
    others = [nearest(head, other)[0] for other in finished]
    while done < max_iter:
        centroids, iterations, inertia = lloyd(sample, centroids, max_iter=min(REFINE_STEP, max_iter - done), tol=0.0)
        done += iterations
        if iterations < REFINE_STEP:
            return done, centroids, inertia
        labels = nearest(head, centroids)[0]
        if any(same_map(labels, other, len(centroids)) for other in others):
            return done, None, inertia
    return done, centroids, inertia


def _within_noise(best: np.ndarray, other: np.ndarray, *, whole: bool) -> bool:
    """Whether the sample's inertias of two maps (their pixels' squared distances) differ by less
    than ``TIE_SE`` standard errors of the mean paired difference; never when the sample is
    every valid pixel (its inertias are the mosaic's)."""
    if whole:
        return False
    difference = other.astype(np.float64) - best
    error = difference.std() / np.sqrt(len(difference))
    return bool(difference.mean() <= TIE_SE * error)


def _log_restarts(restarts: Restarts, *, n_init: int, init: str) -> None:
    """How many restarts reached the best inertia, and a warning when another seed could well
    give another map (a tie, or too few restarts at the best)."""
    log.info(
        "fit: %d restart(s) on %d pixels, %d within %.1f %% of the best inertia %.6g (%s starts)",
        n_init, restarts.rows, restarts.reached_best, 100 * SAME_OPTIMUM, min(restarts.inertias), init,
    )
    if restarts.tied and not restarts.decided_by_reference:
        log.warning(
            "fit: two different maps are within the sample's noise of the best inertia: another seed (another "
            "sample) may choose the other; a larger sample.size decides between them better",
        )
    elif restarts.unstable:
        log.warning(
            "fit: only %d of %d restarts reached the best inertia: another seed may find another optimum "
            "(another map); raise model.n_init (now %d)", restarts.reached_best, n_init, n_init,
        )


def same_map(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether two labellings (1..k) of the same pixels agree on all but ``SAME_MAP`` of them,
    whatever the class numbers: each class of one is matched with its commonest class in the
    other, both ways."""
    table = np.bincount(a.astype(np.intp) * (k + 1) + b, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    return min(table.max(axis=0).sum(), table.max(axis=1).sum()) >= (1 - SAME_MAP) * len(a)


def _distinct_optima(head: np.ndarray, candidates: list[np.ndarray], inertias: list[float]) -> list[int]:
    """The best restarts that are different maps of the restart pixels (refining two restarts of
    one optimum would decide nothing): the best two, and the others within ``REFINE_WITHIN`` of
    the best inertia, ``REFINED`` at most."""
    chosen: list[tuple[int, np.ndarray]] = []
    best = min(inertias)
    for i in np.argsort(inertias, kind="stable"):
        if len(chosen) >= 2 and inertias[i] > best * (1 + REFINE_WITHIN):
            break
        labels = nearest(head, candidates[i])[0]
        if not any(same_map(labels, other, len(candidates[i])) for _, other in chosen):
            chosen.append((int(i), labels))
        if len(chosen) == REFINED:
            break
    return [i for i, _ in chosen]


def _variance(matrix: np.ndarray | da.Array) -> np.ndarray:
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
