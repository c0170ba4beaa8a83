"""The restarts of the fit and how one map is chosen among them (``kmeans.py``'s module docstring
says why each step is there): the seeded restarts and the first look's, the distinct ones refined
on the whole sample, ties the sample cannot rank decided on a sample drawn with a fixed seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.algo.kernel import nearest
from pipeline.algo.lloyd import lloyd, same_map, sum_squared_errors
from pipeline.errors import DataError

log = logging.getLogger(__name__)

REFINED = 12  # distinct restarts tried on the whole sample, at most
SAME_RESTART = 0.002  # restarts whose maps differ on fewer pixels are one: stopped at tol, restarts
# that end in different optima can still agree on 99 % of the restart rows
HEAD_WITHIN = 0.02  # those within 2 % of the best inertia on the restart rows (and always the best two)
PROBE = 5  # Lloyd iterations on the whole sample that rank them
REFINE_WITHIN = 0.005  # refined to convergence: those within 0.5 % of the best so ranked (the best two at least)
REFINE_STEP = 10  # Lloyd iterations on the whole sample between checks that a refinement is not a repeat
LOOK_STARTS = 8  # restarts from the first look's pixels, the same for every seed
LOOK_SEED = 2**31  # their generator's seed: no sample seed's
REFERENCE_PER_CLASS = 100  # look pixels per class at least for them
TIE_SE = 3.0  # standard errors of the paired difference within which the sample cannot rank two maps
SAME_OPTIMUM = 1e-3  # a restart within 0.1 % of the best inertia reached the best optimum
# Unstable: at the rate this fit's restarts reached the best, as many restarts again (a run with
# another seed) would miss it with a probability above this.
MISS_RISK = 0.05


Parallel = Callable[[Callable[[int], Any], Iterable[int]], Iterable[Any]]
"""``map``, or ``side_by_side``'s: the restarts are independent, and each one's result its own."""


def side_by_side(threads: int) -> Parallel:
    """A ``map`` over ``threads`` threads, results in order; the threads end with each call, so
    none sits idle while the fit reads from the mosaic (the readers' threads then reuse their
    memory arenas: idle ones raised the peak RSS of a 900-file mosaic by ~0.15 GB)."""

    def parallel(function: Callable[[int], Any], items: Iterable[int]) -> Iterable[Any]:
        items = list(items)
        if threads < 2 or len(items) < 2:
            return map(function, items)
        with ThreadPoolExecutor(min(threads, len(items))) as pool:
            return list(pool.map(function, items))

    return parallel


@dataclass(frozen=True)
class Restarts:
    """The inertias the restarts reached on the restart rows, in restart order."""

    inertias: tuple[float, ...]
    rows: int
    tied: bool = False
    """The best optimum on the sample and another map, refined there, were within ``TIE_SE``
    standard errors: another sample (another seed) may well rank them the other way."""
    decided_by_fixed_sample: bool = False
    """The tie was decided on a sample drawn with a fixed seed: the same decision for every seed."""

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
        return self.miss_risk > MISS_RISK or (self.tied and not self.decided_by_fixed_sample)

    def to_json(self) -> dict:
        return {
            "count": len(self.inertias), "rows": self.rows, "reached_best": self.reached_best, "within": SAME_OPTIMUM,
            "miss_risk": self.miss_risk, "tied": self.tied, "decided_by_fixed_sample": self.decided_by_fixed_sample,
            "inertias": list(self.inertias),
        }


def run_restarts(
    head: np.ndarray, draw_starts: Callable[..., np.ndarray], *, k: int, n_init: int, max_iter: int, tol: float, seed: int,
    parallel: Parallel = map,
) -> tuple[list[np.ndarray], list[float], int]:
    """The ``n_init`` restarts on the (band, n) restart pixels, restart r seeded by ``draw_starts``
    from the generator of [seed, r] and run by ``lloyd`` to ``tol``: their centroids, their
    inertias and the iterations they took in all. ``parallel`` maps the restarts (each depends
    on its own seed only, so any map gives the same results in the same order)."""

    def restart(number: int) -> tuple[np.ndarray, int, float]:
        return lloyd(head, draw_starts(head.T, k, np.random.default_rng([seed, number])), max_iter=max_iter, tol=tol)

    runs = list(parallel(restart, range(n_init)))
    return [r[0] for r in runs], [r[2] for r in runs], sum(r[1] for r in runs)


def look_starts(
    reference: np.ndarray | None, head: np.ndarray, draw_starts: Callable[..., np.ndarray], *, k: int, max_iter: int, tol: float,
    parallel: Parallel = map,
) -> tuple[list[np.ndarray], list[float], int]:
    """``LOOK_STARTS`` more restarts, the same for every seed: each drawn from the (m, band)
    ``reference`` (the first look's pixels) from a fixed generator and run by Lloyd on it; their
    centroids, their inertias on the restart rows and the iterations taken. None when the
    reference is too small to seed k classes."""
    if reference is None or len(reference) < REFERENCE_PER_CLASS * k:
        return [], [], 0
    pixels = np.ascontiguousarray(reference.T, dtype=np.float32)

    def restart(number: int) -> tuple[np.ndarray, int, float] | None:
        try:
            centroids, iterations, _ = lloyd(pixels, draw_starts(reference, k, np.random.default_rng([LOOK_SEED, number])), max_iter=max_iter, tol=tol)
        except DataError:  # fewer distinct pixels in the reference than classes
            return None
        return centroids, iterations, float(nearest(head, centroids)[1].sum(dtype=np.float64))

    candidates, inertias, n_iter = [], [], 0
    for run in parallel(restart, range(LOOK_STARTS)):
        if run is None:
            return [], [], n_iter
        candidates.append(run[0])
        inertias.append(run[2])
        n_iter += run[1]
    return candidates, inertias, n_iter


def refine_on_sample(
    sample: np.ndarray, head: np.ndarray, candidates: list[np.ndarray], inertias: list[float], *, max_iter: int,
    decide: Callable[[], np.ndarray] | None, whole: bool, parallel: Parallel = map,
) -> tuple[np.ndarray, bool, bool, int]:
    """The best distinct restarts run on the whole (band, n) sample, and the map chosen among those
    still different (see ``kmeans.py``'s module docstring): its centroids, whether the sample could
    not rank it against another (``Restarts.tied``), whether ``decide`` (the (m, band) pixels of a
    sample drawn with a fixed seed, asked for only then) ranked them, and the iterations taken."""
    refined: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []  # inertia, centroids, labels, distances
    n_iter = 0
    # The restart rows rank optima of different structure poorly (one 0.27 % better on a whole
    # scene was 0.73 % worse on its 100 000 rows): a few iterations on the whole sample rank them.
    probed = list(parallel(lambda i: lloyd(sample, candidates[i], max_iter=PROBE, tol=0.0), _distinct_optima(head, candidates, inertias)))
    n_iter += sum(p[1] for p in probed)
    probed.sort(key=lambda p: p[2])
    leader = nearest(sample, probed[0][0])[1]
    for rank, (start, _, probe_inertia) in enumerate(probed):
        # A map the sample cannot tell from the leader is refined too, however far it seems: the
        # seeds that find both must all be able to weigh them.
        if rank >= 2 and probe_inertia > probed[0][2] * (1 + REFINE_WITHIN) and not _within_noise(leader, nearest(sample, start)[1], whole=whole):
            continue
        found = _refined(sample, head, start, [r[1] for r in refined], max_iter=max_iter)
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
    if decide is None:
        return best[1], True, False, n_iter
    fixed = decide()
    on_fixed = [sum_squared_errors(fixed, r[1]) for r in [best, *tied]]
    chosen = [best, *tied][int(np.argmin(on_fixed))]
    log.info(
        "fit: %d map(s) within %.0f standard errors of the best on the sample; a sample of %d pixels drawn with a fixed seed chose %s",
        len(tied), TIE_SE, len(fixed), "it" if chosen is best else "another",
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


def log_restarts(restarts: Restarts, *, n_init: int, init: str) -> None:
    """How many restarts reached the best inertia, and a warning when another seed could well
    give another map (a tie, or too few restarts at the best)."""
    log.info(
        "fit: %d restart(s) on %d pixels, %d within %.1f %% of the best inertia %.6g (%s starts)",
        n_init, restarts.rows, restarts.reached_best, 100 * SAME_OPTIMUM, min(restarts.inertias), init,
    )
    if restarts.tied and not restarts.decided_by_fixed_sample:
        log.warning(
            "fit: two different maps are within the sample's noise of the best inertia: another seed (another "
            "sample) may choose the other; a larger sample.size decides between them better",
        )
    elif restarts.unstable:
        log.warning(
            "fit: only %d of %d restarts reached the best inertia: another seed may find another optimum "
            "(another map); raise model.n_init (now %d)", restarts.reached_best, n_init, n_init,
        )


def _distinct_optima(head: np.ndarray, candidates: list[np.ndarray], inertias: list[float]) -> list[int]:
    """The best restarts that are different maps of the restart pixels (refining two restarts of
    one optimum would decide nothing): the best two, and the others within ``HEAD_WITHIN`` of
    the best inertia, ``REFINED`` at most."""
    chosen: list[tuple[int, np.ndarray]] = []
    best = min(inertias)
    for i in np.argsort(inertias, kind="stable"):
        if len(chosen) >= 2 and inertias[i] > best * (1 + HEAD_WITHIN):
            break
        labels = nearest(head, candidates[i])[0]
        if not any(same_map(labels, other, len(candidates[i]), share=SAME_RESTART) for _, other in chosen):
            chosen.append((int(i), labels))
        if len(chosen) == REFINED:
            break
    return [i for i, _ in chosen]
