"""Swaps: after Lloyd, a centre moved to where the solution serves pixels worst, kept if better.

Lloyd and k-means++ starts find a small, distinct group (a quarry, a salt flat: a fraction of a
per cent of the pixels, far from every other spectrum) only in a few restarts: k-means++ draws its
pixels with probability proportional to their squared distance, but greedily prefers splitting
a large class while large classes remain. On a mosaic where such a surface covers 0.25 % of the
pixels, all 20 restarts of one seed's sample missed it, though the map with it had a 2.6 % lower
inertia on that very sample. The local search of Kanungo et al. ("A local search approximation
algorithm for k-means clustering", 2004) swaps a centre for a data point and keeps the swap when
Lloyd from there lowers the inertia; here the point is the best of the ``PROBES`` pixels farthest
from their centre (by the inertia it would remove as an extra centre), and the centre it replaces
the one whose pixels cost least to hand to their next-nearest centre. At most ``SWAPS`` swaps, in
one thread, in a fixed order: deterministic.
"""

from __future__ import annotations

import numpy as np

from pipeline.algo.kernel import nearest, nearest_all

PROBES = 32
SWAPS = 4
BETTER = 1e-6  # a swap must lower the inertia by more than this share


def improve(pixels: np.ndarray, centroids: np.ndarray, *, lloyd, max_iter: int, tol: float) -> tuple[np.ndarray, float, int, int]:
    """Swaps from ``centroids`` on (band, n) float32 pixels, each followed by ``lloyd`` (the
    caller's, with ``max_iter`` and ``tol``): (centroids, inertia, Lloyd iterations, swaps kept)."""
    _, distance = nearest(pixels, centroids)
    inertia = float(distance.sum(dtype=np.float64))
    iterations = kept = 0
    for _ in range(SWAPS):
        probe = _best_probe(pixels, distance)
        if probe is None:
            break
        trial = centroids.copy()
        trial[_cheapest_centre(pixels, centroids, probe)] = probe
        trial, passes, trial_inertia = lloyd(pixels, trial, max_iter=max_iter, tol=tol)
        iterations += passes
        if trial_inertia >= inertia * (1 - BETTER):
            break
        centroids, inertia, kept = trial, trial_inertia, kept + 1
        _, distance = nearest(pixels, centroids)
    return centroids, inertia, iterations, kept


def _best_probe(pixels: np.ndarray, distance: np.ndarray) -> np.ndarray | None:
    """Of the ``PROBES`` pixels farthest from their centre, the one whose addition as a centre
    would lower the inertia most; None when every pixel sits on a centre."""
    far = np.argpartition(distance, -PROBES)[-PROBES:] if len(distance) > PROBES else np.arange(len(distance))
    far = far[np.argsort(-distance[far], kind="stable")]
    if distance[far[0]] <= 0:
        return None
    gains = [np.maximum(distance - ((pixels - pixels[:, [i]]) ** 2).sum(axis=0), 0).sum(dtype=np.float64) for i in far]
    return pixels[:, far[int(np.argmax(gains))]].astype(np.float64)


def _cheapest_centre(pixels: np.ndarray, centroids: np.ndarray, probe: np.ndarray) -> int:
    """The centre whose removal costs least once ``probe`` is a centre too: the sum over its
    pixels of their squared distance to their next-nearest centre (or the probe) minus to it."""
    k = len(centroids)
    labels, best, second, _ = nearest_all(pixels, np.vstack([centroids, probe]))
    cost = np.bincount(labels.astype(np.intp) - 1, weights=(second - best).astype(np.float64), minlength=k + 1)[:k]
    return int(np.argmin(cost))
