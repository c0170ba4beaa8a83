"""ISODATA: the number of classes chosen by splitting and merging, as in ENVI, ERDAS and GRASS.

Ball and Hall's ISODATA (1965, in Tou and Gonzalez's form) alternates K-Means passes with three
edits of the class set; the ones here, each iteration in this order:

1. **Lloyd passes** at the current k until at least ``convergence`` of the pixels keep their
   class from one pass to the next (GRASS ``i.cluster``'s ``convergence``, 98 %), at most
   ``max_passes``;
2. **drop** every class with fewer than ``min_size`` pixels (GRASS ``min_size``, ENVI "minimum
   pixels in class"), smallest first, while k > ``k_min``; its pixels join their nearest class at
   the next pass;
3. **merge** the pairs of centres closer than ``merge_distance`` (ENVI "minimum class distance"),
   closest first, each class at most once, at most ``max_merges`` pairs (ENVI "maximum merge
   pairs"), while k > ``k_min``: the merged centre is the pixel-weighted mean;
4. **split**, only in an iteration that merged nothing (so that a split is never undone in the
   same iteration): each class whose standard deviation along some feature exceeds ``split_sd``
   (ENVI "maximum class stdv", in the features' units), largest first, while k < ``k_max``,
   into two centres at plus and minus one standard deviation along that feature, refined by a
   2-means on the class's own pixels. The split is kept only if both halves have ``min_size``
   pixels and their centres end at least ``merge_distance`` apart: a split that step 3 would
   merge back would make the class set oscillate (classic ISODATA alternates split and merge
   iterations by parity and stops wherever the count of iterations says).

It stops after an iteration that changed nothing (converged), or after ``iterations``.

Unlike K-Means restarts, the start is deterministic: ``k_start`` centres evenly spaced on the
diagonal from mean - sd to mean + sd of the pixels (GRASS ``i.cluster``'s own start), so the
edits, and the k they end at, depend on the pixels only, not on a random draw. Every step runs
in one thread on in-memory arrays with sums in a fixed order: the same pixels give the same
history on any machine. Classes carry ids that are never reused (the start's are 1..k_start; a
split or a merge gives new ones) so that the history says which class became which.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from pipeline.algo.kernel import nearest_all

log = logging.getLogger(__name__)

SPLIT_PASSES = 20  # 2-means passes on a class's own pixels when trying a split


@dataclass(frozen=True)
class IsodataParams:
    """ISODATA's settings, with the thresholds in the features' units (see the module docstring)."""

    k_start: int
    k_min: int
    k_max: int
    min_size: int
    """Pixels, of the pixels ISODATA runs on."""
    split_sd: tuple[float, ...]
    """Per feature."""
    merge_distance: float
    max_merges: int
    iterations: int
    convergence: float
    max_passes: int = 300


@dataclass(frozen=True)
class Step:
    """One iteration: the k it ended with and the edits it made, by class id."""

    iteration: int
    k: int
    passes: int
    changed: float
    """Share of the pixels that changed class at the last Lloyd pass."""
    dropped: tuple[int, ...] = ()
    merged: tuple[tuple[int, int, int], ...] = ()
    """(class a, class b, the merged class)."""
    split: tuple[tuple[int, str, int, int], ...] = ()
    """(class, the feature it was split along, the two new classes)."""

    def to_json(self) -> dict:
        return {
            "iteration": self.iteration, "k": self.k, "passes": self.passes, "changed": round(self.changed, 6),
            "dropped": list(self.dropped), "merged": [list(m) for m in self.merged], "split": [list(s) for s in self.split],
        }


@dataclass(frozen=True)
class Isodata:
    k: int
    centroids: np.ndarray
    """(k, feature) float64: where ISODATA ended (the fit's restarts at k give the model's)."""
    converged: bool
    history: tuple[Step, ...]
    params: IsodataParams
    feature_names: tuple[str, ...]
    """One per feature; the features' numbers ("0", "1", ...) when ``fit_isodata`` is given none."""

    def to_json(self) -> dict:
        p = self.params
        return {
            "k_start": p.k_start, "k_min": p.k_min, "k_max": p.k_max, "k": self.k, "converged": self.converged,
            "iterations": len(self.history), "min_size_pixels": p.min_size,
            "split_sd": dict(zip(self.feature_names, (round(v, 6) for v in p.split_sd))),
            "merge_distance": round(p.merge_distance, 6), "max_merges": p.max_merges, "max_iterations": p.iterations,
            "convergence": p.convergence, "history": [s.to_json() for s in self.history],
        }


def diagonal_start(pixels: np.ndarray, k: int) -> np.ndarray:
    """k centres evenly spaced from mean - sd to mean + sd of (band, n) pixels (GRASS's start)."""
    mean = pixels.mean(axis=1, dtype=np.float64)
    sd = pixels.std(axis=1, dtype=np.float64)
    steps = np.linspace(-1.0, 1.0, k) if k > 1 else np.zeros(1)
    return mean[None, :] + steps[:, None] * sd[None, :]


def fit_isodata(pixels: np.ndarray, params: IsodataParams, feature_names: tuple[str, ...] = ()) -> Isodata:
    """ISODATA on (feature, n) float32 pixels in memory (see the module docstring)."""
    feature_names = feature_names or tuple(str(f) for f in range(pixels.shape[0]))
    centres = diagonal_start(pixels, params.k_start)
    ids = list(range(1, params.k_start + 1))
    next_id = params.k_start + 1
    history: list[Step] = []
    converged = False
    for iteration in range(1, params.iterations + 1):
        centres, labels, passes, changed = _passes(pixels, centres, params)
        counts, sd = _class_spread(pixels, labels, len(centres))
        centres, ids, counts, sd, dropped = _drop(centres, ids, counts, sd, params)
        centres, ids, next_id, merged = _merge(centres, ids, counts, next_id, params)
        split: list[tuple[int, str, int, int]] = []
        if not merged and not dropped:
            centres, ids, next_id, split = _split(pixels, labels, centres, ids, counts, sd, next_id, params, feature_names)
        history.append(Step(iteration, len(centres), passes, changed, tuple(dropped), tuple(merged), tuple(split)))
        if not (dropped or merged or split):
            converged = True
            break
    if not converged:
        log.warning(
            "isodata: still splitting or merging after %d iterations (k = %d); raise model.isodata.iterations",
            params.iterations, len(centres),
        )
    log.info("isodata: k = %d after %d iteration(s) from k = %d", len(centres), len(history), params.k_start)
    return Isodata(len(centres), centres, converged, tuple(history), params, feature_names)


def _passes(pixels: np.ndarray, centres: np.ndarray, params: IsodataParams) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Lloyd passes from ``centres`` until at least ``convergence`` of the pixels keep their
    class: (centres, labels of the last assignment, passes, share changed). An empty class keeps
    its centre (step 2 drops it)."""
    n = pixels.shape[1]
    previous = None
    changed = 1.0
    for passes in range(1, params.max_passes + 1):
        labels, _, _, stats = nearest_all(pixels, centres)
        if previous is not None:
            changed = float(np.count_nonzero(labels != previous)) / n
        counts = stats[1:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = stats[1:, 1:] / counts[:, None]
        centres = np.where(counts[:, None] > 0, means, centres)
        if changed <= 1 - params.convergence:
            break
        previous = labels
    return centres, labels, passes, changed


def _class_spread(pixels: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class (labels 1..k): pixel count, and standard deviation per feature (k, feature)."""
    index = labels.astype(np.intp) - 1
    counts = np.bincount(index, minlength=k).astype(np.float64)
    sd = np.zeros((k, pixels.shape[0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        for b, row in enumerate(pixels):
            total = np.bincount(index, weights=row, minlength=k)
            squares = np.bincount(index, weights=row.astype(np.float64) ** 2, minlength=k)
            sd[:, b] = np.sqrt(np.maximum(squares / counts - (total / counts) ** 2, 0.0))
    return counts, np.nan_to_num(sd)


def _drop(centres, ids, counts, sd, params: IsodataParams):
    """Step 2: the classes under ``min_size`` pixels removed, smallest first, down to ``k_min``."""
    small = [i for i in np.argsort(counts, kind="stable") if counts[i] < params.min_size]
    small = small[: max(0, len(centres) - params.k_min)]
    if not small:
        return centres, ids, counts, sd, []
    keep = np.setdiff1d(np.arange(len(centres)), small)
    return centres[keep], [ids[i] for i in keep], counts[keep], sd[keep], sorted(ids[i] for i in small)


def _merge(centres, ids, counts, next_id, params: IsodataParams):
    """Step 3: the closest pairs under ``merge_distance`` merged, each class once, at most
    ``max_merges`` pairs, down to ``k_min``."""
    k = len(centres)
    distances = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))
    rows, cols = np.triu_indices(k, 1)
    close = np.flatnonzero(distances[rows, cols] < params.merge_distance)
    order = close[np.argsort(distances[rows, cols][close], kind="stable")]
    used: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for p in order:
        a, b = int(rows[p]), int(cols[p])
        if len(pairs) == min(params.max_merges, k - params.k_min):
            break
        if a not in used and b not in used:
            pairs.append((a, b))
            used.update((a, b))
    if not pairs:
        return centres, ids, next_id, []
    merged_centres, merged = [], []
    for a, b in pairs:
        weight = counts[a] + counts[b]
        merged_centres.append((counts[a] * centres[a] + counts[b] * centres[b]) / weight if weight else (centres[a] + centres[b]) / 2)
        merged.append((ids[a], ids[b], next_id))
        next_id += 1
    keep = [i for i in range(k) if i not in used]
    centres = np.vstack([centres[keep], np.array(merged_centres)])
    return centres, [ids[i] for i in keep] + [m[2] for m in merged], next_id, merged


def _split(pixels, labels, centres, ids, counts, sd, next_id, params: IsodataParams, feature_names):
    """Step 4: classes spread wider than ``split_sd`` along a feature split in two, widest
    first, up to ``k_max``; a split is kept only if both halves keep ``min_size`` pixels and end
    ``merge_distance`` apart."""
    threshold = np.asarray(params.split_sd)
    # A feature constant over the sample has a threshold of 0: nothing is split along it.
    excess = np.divide(sd, threshold[None, :], out=np.zeros_like(sd), where=threshold[None, :] > 0)
    widest = excess.max(axis=1)
    candidates = [int(i) for i in np.argsort(-widest, kind="stable") if widest[i] > 1 and counts[i] >= 2 * params.min_size]
    room = params.k_max - len(centres)
    replaced: dict[int, np.ndarray] = {}
    split: list[tuple[int, str, int, int]] = []
    for i in candidates:
        if len(split) == room:
            break
        band = int(np.argmax(excess[i]))
        halves = _two_means(np.ascontiguousarray(pixels[:, labels == i + 1]), centres[i], band, sd[i, band])
        if halves is None:
            continue
        (a, b), (count_a, count_b) = halves
        if min(count_a, count_b) < params.min_size or math.dist(a, b) < params.merge_distance:
            continue
        replaced[i] = np.vstack([a, b])
        split.append((ids[i], feature_names[band], next_id, next_id + 1))
        next_id += 2
    if not split:
        return centres, ids, next_id, []
    keep = [i for i in range(len(centres)) if i not in replaced]
    new_centres = np.vstack([centres[keep], *replaced.values()])
    new_ids = [ids[i] for i in keep] + [new for s in split for new in s[2:]]
    return new_centres, new_ids, next_id, split


def _two_means(pixels: np.ndarray, centre: np.ndarray, band: int, sd: float):
    """2-means on one class's (feature, n) pixels from centre -/+ sd along ``band``: the two
    centres and their pixel counts, or None if one side ends empty."""
    step = np.zeros_like(centre)
    step[band] = sd
    pair = np.vstack([centre - step, centre + step])
    previous = None
    for _ in range(SPLIT_PASSES):
        labels, _, _, stats = nearest_all(pixels, pair)
        counts = stats[1:, 0]
        if counts.min() == 0:
            return None
        pair = stats[1:, 1:] / counts[:, None]
        if previous is not None and np.array_equal(labels, previous):
            break
        previous = labels
    return (pair[0], pair[1]), (int(counts[0]), int(counts[1]))
