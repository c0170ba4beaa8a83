"""How each K-Means restart draws its k starting centres (``model.init``): greedy k-means++
(``kmeans_plusplus``, the default) or scalable k-means++ (``kmeans_parallel``, k-means||), in
numpy on the in-memory restart rows, the distances by the numba labelling kernel."""

from __future__ import annotations

import math

import numpy as np

from pipeline.algo.kernel import nearest

# k-means||: rounds of about l = 2k draws each. A few rounds suffice in Bahmani et al.'s
# experiments (Spark makes 2, dask-ml about ln(initial cost)); a fixed number keeps the draw
# independent of the feature units.
PARALLEL_ROUNDS = 5
OVERSAMPLING = 2.0
KERNEL_CENTRES = 255  # the labelling kernel's labels are uint8 with 0 for nodata


def kmeans_plusplus(pixels: np.ndarray, k: int, rng: np.random.Generator, *, weights: np.ndarray | None = None) -> np.ndarray:
    """k starting centres drawn from (n, band) pixels by greedy k-means++ (Arthur and
    Vassilvitskii; scikit-learn's variant): each next centre is the best, by the inertia it leaves,
    of 2 + ln k candidates drawn with probability proportional to the squared distance to the
    nearest centre so far. Written in numpy rather than taken from scikit-learn, whose distances
    go through BLAS, so that the draw does not depend on the machine's thread count.

    With ``weights`` (one per pixel, e.g. how many pixels a k-means|| candidate stands for), a
    pixel counts ``weight`` times: in the draws and in the inertia; one of weight 0 is never drawn.
    """
    x = pixels.astype(np.float64)
    # 1.0 without weights: multiplying by it changes no bit, so the draws stay those of before.
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, x.shape[1]))
    first = rng.integers(len(x)) if weights is None else _draw(np.cumsum(w), rng.random(1))[0]
    centres[0] = x[first]
    closest = ((x - centres[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        cumulative = np.cumsum(closest * w)
        # Fewer distinct pixels (of weight > 0) than k: any pixel is as good, and ``lloyd`` gives
        # the classes left empty the farthest pixels (or says there are too few groups).
        if cumulative[-1] == 0:
            centres[c:] = centres[0]
            break
        picks = _draw(cumulative, rng.random(trials))
        candidates = np.minimum(closest, ((x[None, :, :] - x[picks][:, None, :]) ** 2).sum(axis=2))
        best = int(np.argmin((candidates * w).sum(axis=1)))
        centres[c], closest = x[picks[best]], candidates[best]
    return centres


def _draw(cumulative: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Indices drawn with probability proportional to the steps of ``cumulative`` (a cumulative
    sum), one per ``uniform`` value in [0, 1): an index whose step is 0 is never drawn."""
    return np.minimum(np.searchsorted(cumulative, uniform * cumulative[-1], side="right"), len(cumulative) - 1)


def kmeans_parallel(
    pixels: np.ndarray, k: int, rng: np.random.Generator, *, rounds: int = PARALLEL_ROUNDS, oversampling: float = OVERSAMPLING
) -> np.ndarray:
    """k starting centres drawn from (n, band) pixels by scalable k-means++ ("k-means||", Bahmani
    et al. 2012, as in Spark and dask-ml): ``oversample`` draws candidates in a few passes, and
    weighted greedy k-means++ reduces the candidates, each weighted by the pixels nearest to it,
    to k centres."""
    chosen, weights = oversample(pixels, k, rng, rounds=rounds, oversampling=oversampling)
    return kmeans_plusplus(chosen, k, rng, weights=weights)


def oversample(
    pixels: np.ndarray, k: int, rng: np.random.Generator, *, rounds: int = PARALLEL_ROUNDS, oversampling: float = OVERSAMPLING
) -> tuple[np.ndarray, np.ndarray]:
    """The oversampling passes of k-means||: from one random pixel, ``rounds`` passes each draw
    every pixel independently with probability min(1, l d^2 / cost), l = ``oversampling`` x k, d
    its distance to the nearest candidate so far and cost the sum of d^2 (about l new candidates
    per pass). Returns the (m, band) float64 candidates, in the order drawn, and per candidate the
    number of pixels nearest to it (ties go to the earlier candidate)."""
    # The labelling kernel's layout and float32, as in ``lloyd`` (faster than float64, and a
    # pixel is still at distance exactly 0 from itself). No copy when ``pixels`` is a transposed
    # (band, n) float32 array, as the fit passes it.
    bands_first = np.ascontiguousarray(pixels.T, dtype=np.float32)
    n = bands_first.shape[1]
    chosen = np.array([rng.integers(n)])
    closest, owner = np.full(n, np.inf), np.zeros(n, dtype=np.intp)  # float64: the cost is summed from it
    _take_nearer(bands_first, bands_first[:, chosen].T, 0, closest, owner)
    for _ in range(rounds):
        cost = float(closest.sum())
        if cost == 0:  # every pixel sits on a candidate: there is nothing left to draw
            break
        # A probability above 1 is drawn always; a candidate (d = 0) is never drawn again.
        drawn = np.flatnonzero(rng.random(n) * cost < oversampling * k * closest)
        _take_nearer(bands_first, bands_first[:, drawn].T, len(chosen), closest, owner)
        chosen = np.concatenate([chosen, drawn])
    return bands_first[:, chosen].T.astype(np.float64), np.bincount(owner, minlength=len(chosen))


def _take_nearer(bands_first: np.ndarray, centres: np.ndarray, first: int, closest: np.ndarray, owner: np.ndarray) -> None:
    """Where one of ``centres`` (numbered from ``first``) is nearer to a (band, n) pixel than
    ``closest``, record its squared distance in ``closest`` and its number in ``owner``, in place.
    The kernel's labels are uint8, so it sees at most ``KERNEL_CENTRES`` centres at a time; ties
    keep the lower number, as one argmin over all the centres would."""
    for start in range(0, len(centres), KERNEL_CENTRES):
        label, dist = nearest(bands_first, centres[start : start + KERNEL_CENTRES])
        nearer = dist < closest
        np.copyto(closest, dist, where=nearer)  # copyto rather than masked indexing: no gathers
        np.copyto(owner, label.astype(np.intp) + (first + start - 1), where=nearer)


SEEDINGS = {"k-means++": kmeans_plusplus, "k-means||": kmeans_parallel}
"""``model.init``: how a restart draws its k starting centres from the restart pixels."""
