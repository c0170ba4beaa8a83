"""The cleanup of a label map: a majority (mode) filter, then a sieve (minimum mapping unit),
both exactly the same whether computed on the whole raster or chunk by chunk on windows of
"chunk + ``Cleanup.halo``" (``stages/cleanup.py`` and the write pass map ``clean_window`` over
chunks). Labels are uint8 (y, x): 0 = nodata, classes 1..k.

Majority (window side w = ``majority`` >= 3, r = w // 2). Each valid pixel takes the most frequent
class among the valid pixels of the w x w window centred on it (cut at the array's edges); nodata
never votes and never changes. Ties: the pixel's own class if it is among the tied, else the
smallest class id. Votes read the input, not the pixels already filtered.

Sieve (N = ``sieve`` >= 2, S = CAP_FACTOR * N), on the majority's output, for up to ROUNDS rounds.
Patches are the connected components of equal valid class (4- or 8-connected); a patch is small
if it has < N pixels. Each small patch P looks at the classes of the pixels adjacent to it (same
connectivity) and, for each such class c: the largest *capped* size min(|Q|, S) of a class-c
patch Q touching P, and the number of adjacent (P pixel, class-c pixel) pairs. P takes the class
maximising (capped size, contacts, -c) if that capped size is >= N (a large neighbour); otherwise
it waits for a later round; a patch touching only nodata and the edge stays. All small patches of
a round decide on that round's input; the next round runs on the result (stop when none merged).

Why it is chunk-invariant, and the halo H = r + ROUNDS * (N + S - 1) (``Cleanup.halo``). A small
patch P containing p has < N pixels, so it lies within N - 2 of p (Chebyshev) and a patch with
>= N pixels has N of them within N - 1 of p: smallness is decided within N - 1. A pixel adjacent
to P lies within N - 1 of p, and min(|Q|, S) of its patch is decided within S - 1 of it. On a
window, a component cut by the window's edge, seen from a pixel with >= D context pixels, reaches
that edge so it has >= S pixels inside the window already: min(size in window, S) is exact. One
round's output is thus exact with D = N + S - 2 pixels of context (we use N + S - 1, one spare),
ROUNDS rounds with ROUNDS * D, and the majority's output, their input, with r more.

How it differs from GDAL (``GDALSieveFilter``, ``rasterio.features.sieve``): GDAL merges a small
polygon into the neighbour with the largest *global* size and follows chains of small polygons
in one go; both need the whole raster. We cap sizes at S (so among neighbours of >= S pixels the
one with more contacts wins), decide chains round by round, and group neighbours by class: two
parts of one field, touching P on both sides and joined far away, may be one patch globally and
two in a window, so only their class is a local (chunk-invariant) notion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

NODATA_LABEL = 0
# Chosen by measurement on the four NAIP scenes' labels (k = 7), against GDAL's sieve and per
# 2048-pixel chunk (docs/algorithms.md#cleanup): CAP_FACTOR = 16 agrees with GDAL on 99.61 % of
# valid pixels at majority 3, sieve 16, 8-connected (4: 99.28 %, 1: 98.98 %); a second round
# merges ~10 more patches per scene for twice the sieve's time and twice the halo.
CAP_FACTOR = 16
ROUNDS = 1
MAX_MAJORITY = 31  # the filter counts votes in uint16 (and config.postprocess allows up to 31)


@dataclass(frozen=True)
class Cleanup:
    majority: int = 0  # odd window side in pixels; 0 or 1 = off
    sieve: int = 0  # minimum patch size in pixels; 0 or 1 = off
    connectivity: int = 4  # 4 or 8: which pixels touch, for the sieve's patches and neighbours

    def __post_init__(self) -> None:
        if self.majority < 0 or (self.majority > 1 and self.majority % 2 == 0) or self.majority > MAX_MAJORITY:
            raise ValueError(f"majority must be 0, 1 or an odd window side up to {MAX_MAJORITY}, not {self.majority}")
        if self.sieve < 0:
            raise ValueError(f"sieve must be a number of pixels >= 0, not {self.sieve}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, not {self.connectivity}")

    @property
    def active(self) -> bool:
        return self.majority > 1 or self.sieve > 1

    @property
    def halo(self) -> int:
        """Pixels of context each side of a chunk needs for its exact result (see the module)."""
        radius = self.majority // 2 if self.majority > 1 else 0
        if self.sieve < 2:
            return radius
        return radius + ROUNDS * (self.sieve + CAP_FACTOR * self.sieve - 1)

    def to_json(self) -> dict:
        return {"majority": self.majority, "sieve": self.sieve, "connectivity": self.connectivity}

    @classmethod
    def from_json(cls, doc: dict) -> Cleanup:
        return cls(majority=int(doc.get("majority", 0)), sieve=int(doc.get("sieve", 0)), connectivity=int(doc.get("connectivity", 4)))


@dataclass(frozen=True)
class Cleaned:
    labels: np.ndarray  # uint8, the core only
    majority_changed: np.ndarray  # int64 (k + 1,): core pixels the majority changed, by their class before
    sieve_changed: np.ndarray  # int64 (k + 1,): core pixels the sieve changed, by their class before
    patches_removed: int  # patches the sieve merged whose first pixel (row-major) is in the core


@numba.njit(nogil=True, cache=True)
def _vote(labels, counts, y0, y1, x0, x1, centre, top, scan_window):  # pragma: no cover - compiled
    # The own class starts as the best, so it stays on a tie; else the smallest tied id wins.
    best, winner = counts[centre], centre
    if scan_window:  # fewer window pixels than classes: look only at the classes present
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                c = labels[yy, xx]
                n = counts[c]
                if c != NODATA_LABEL and (n > best or (n == best and winner != centre and c < winner)):
                    best, winner = n, c
    else:
        for c in range(1, top + 1):
            if counts[c] > best:
                best, winner = counts[c], c
    return winner


@numba.njit(nogil=True, cache=True)
def _majority(labels, side, top, out):  # pragma: no cover - compiled
    # Most pixels hold at least half the valid votes of their window and then keep their class (no
    # class can beat them). Counting, row by row, the window pixels equal to the centre and the
    # valid ones is one vectorised pass per window offset; only the other pixels build a histogram.
    height, width = labels.shape
    r = side // 2
    counts = np.zeros(top + 1, np.int32)
    scan_window = side * side < top
    same = np.empty(width, np.uint16)  # side <= MAX_MAJORITY: at most 961 votes
    valid = np.empty(width, np.uint16)
    for y in range(height):
        y0, y1 = max(0, y - r), min(height, y + r + 1)
        centres = labels[y]
        same[:] = 0
        valid[:] = 0
        for yy in range(y0, y1):
            for dx in range(-r, r + 1):
                lo, hi = max(0, -dx), min(width, width - dx)
                votes, own, n_same, n_valid = labels[yy, lo + dx : hi + dx], centres[lo:hi], same[lo:hi], valid[lo:hi]
                for x in range(hi - lo):  # slices of equal length: the loop vectorises
                    n_same[x] += np.uint16(votes[x] == own[x])
                    n_valid[x] += np.uint16(votes[x] != NODATA_LABEL)
        for x in range(width):
            centre = centres[x]
            if centre == NODATA_LABEL or 2 * same[x] >= valid[x]:
                out[y, x] = centre
                continue
            x0, x1 = max(0, x - r), min(width, x + r + 1)
            counts[:] = 0
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    counts[labels[yy, xx]] += 1
            out[y, x] = _vote(labels, counts, y0, y1, x0, x1, centre, top, scan_window)


@numba.njit(nogil=True, cache=True)
def _root(parent, i):  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression keeps later finds short
        parent[i], i = root, parent[i]
    return root


@numba.njit(nogil=True, cache=True)
def _union(parent, a, b):  # pragma: no cover - compiled
    # The smaller index is the root, so a root is its component's first run in row-major order.
    ra, rb = _root(parent, a), _root(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@numba.njit(nogil=True, cache=True)
def _runs(labels):  # pragma: no cover - compiled
    """The runs of equal valid class along each row: (first run of each row (height + 1,), run
    start x, run end x (exclusive)). Components are unions of runs: far fewer than pixels."""
    height, width = labels.shape
    count = 0
    for y in range(height):
        for x in range(width):
            c = labels[y, x]
            if c != NODATA_LABEL and (x == 0 or labels[y, x - 1] != c):
                count += 1
    first = np.zeros(height + 1, np.int64)
    x0 = np.empty(count, np.int32)
    x1 = np.empty(count, np.int32)
    n = 0
    for y in range(height):
        first[y] = n
        for x in range(width):
            c = labels[y, x]
            if c == NODATA_LABEL:
                continue
            if x == 0 or labels[y, x - 1] != c:
                x0[n] = x
                n += 1
            x1[n - 1] = x + 1
    first[height] = n
    return first, x0, x1


@numba.njit(nogil=True, cache=True)
def _components(labels, eight, first, x0, x1):  # pragma: no cover - compiled
    """Connected components of equal valid class, as ids 0.. of the runs in order of their first
    pixel (row-major); returns (component of each run, sizes)."""
    height = labels.shape[0]
    n = len(x0)
    parent = np.arange(n, dtype=np.int32)
    slack = 1 if eight else 0  # 8-connected runs also touch diagonally, one column further
    for y in range(1, height):
        i, above_end = first[y - 1], first[y]
        for j in range(first[y], first[y + 1]):
            while i < above_end and x1[i] + slack <= x0[j]:
                i += 1  # runs above that end before this one cannot touch the next either
            t = i
            while t < above_end and x0[t] < x1[j] + slack:
                if labels[y - 1, x0[t]] == labels[y, x0[j]]:
                    _union(parent, t, j)
                t += 1
    comp = np.empty(n, np.int32)
    sizes = np.zeros(n, np.int64)
    count = 0
    for r in range(n):
        root = _root(parent, r)
        if root == r:  # the first run of its component: a new id
            comp[r] = count
            count += 1
        else:
            comp[r] = comp[root]
        sizes[comp[r]] += x1[r] - x0[r]
    return comp, sizes[:count]


@numba.njit(nogil=True, cache=True)
def _run_at(first, x0, x1, y, x):  # pragma: no cover - compiled
    """The run holding pixel (y, x) (binary search in its row); -1 on nodata."""
    lo, hi = first[y], first[y + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if x0[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    r = lo - 1
    return r if r >= first[y] and x < x1[r] else -1


@numba.njit(nogil=True, cache=True)
def _best_class(labels, runs, comp, sizes, patch, dy, dx, cap, contacts, biggest, touched):  # pragma: no cover - compiled
    """For one small patch (its runs, as (row, run) pairs): the neighbouring class maximising
    (largest capped size of a patch of it touching the patch, contacts, -class), and that capped
    size (0: no valid neighbour)."""
    height, width = labels.shape
    first, x0, x1 = runs
    own = labels[patch[0, 0], x0[patch[0, 1]]]
    n_touched = 0
    for p in range(len(patch)):
        y, r = patch[p, 0], patch[p, 1]
        for x in range(x0[r], x1[r]):
            for d in range(len(dy)):
                yy, xx = y + dy[d], x + dx[d]
                if yy < 0 or yy >= height or xx < 0 or xx >= width:
                    continue
                c = labels[yy, xx]
                if c == NODATA_LABEL or c == own:  # an equal class touching it is the patch itself
                    continue
                if contacts[c] == 0:
                    touched[n_touched] = c
                    n_touched += 1
                contacts[c] += 1
                if biggest[c] < cap:  # at the cap no neighbour can count for more
                    biggest[c] = max(biggest[c], min(sizes[comp[_run_at(first, x0, x1, yy, xx)]], cap))
    winner, size, most = 0, 0, 0
    for t in range(n_touched):
        c = touched[t]
        better = biggest[c] > size or (biggest[c] == size and (contacts[c] > most or (contacts[c] == most and c < winner)))
        if better:
            winner, size, most = c, biggest[c], contacts[c]
        contacts[c] = 0  # reset for the next patch
        biggest[c] = 0
    return winner, size


@numba.njit(nogil=True, cache=True)
def _small_runs(first, comp, sizes, small):  # pragma: no cover - compiled
    """The runs of the components smaller than ``small`` as (row, run) pairs grouped by
    component (a counting sort), each group in row-major order; returns (group starts, pairs)."""
    start = np.zeros(len(sizes) + 1, np.int64)
    n_runs = len(comp)
    for r in range(n_runs):
        if sizes[comp[r]] < small:
            start[comp[r] + 1] += 1
    for c in range(len(sizes)):
        start[c + 1] += start[c]
    pairs = np.empty((start[-1], 2), np.int64)
    fill = start[:-1].copy()
    y = 0
    for r in range(n_runs):
        while first[y + 1] <= r:
            y += 1
        c = comp[r]
        if sizes[c] < small:
            pairs[fill[c], 0] = y
            pairs[fill[c], 1] = r
            fill[c] += 1
    return start, pairs


@numba.njit(nogil=True, cache=True)
def _sieve_round(labels, out, eight, small, cap, core):  # pragma: no cover - compiled
    """One round, from ``labels`` into ``out`` (a copy of it): returns (patches merged, of them
    those whose first pixel is in ``core`` = (y0, y1, x0, x1))."""
    first, x0, x1 = _runs(labels)
    comp, sizes = _components(labels, eight, first, x0, x1)
    start, pairs = _small_runs(first, comp, sizes, small)
    if eight:
        dy, dx = np.array([-1, -1, -1, 0, 0, 1, 1, 1]), np.array([-1, 0, 1, -1, 1, -1, 0, 1])
    else:
        dy, dx = np.array([-1, 0, 0, 1]), np.array([0, -1, 1, 0])
    contacts = np.zeros(256, np.int64)
    biggest = np.zeros(256, np.int64)
    touched = np.zeros(256, np.int64)
    merged = in_core = 0
    for c in range(len(sizes)):
        if start[c + 1] == start[c]:
            continue  # a large patch
        patch = pairs[start[c] : start[c + 1]]
        winner, size = _best_class(labels, (first, x0, x1), comp, sizes, patch, dy, dx, cap, contacts, biggest, touched)
        if size < small:
            continue  # no large neighbour (yet)
        for p in range(len(patch)):
            y, r = patch[p, 0], patch[p, 1]
            out[y, x0[r] : x1[r]] = winner
        merged += 1
        y, x = patch[0, 0], x0[patch[0, 1]]
        if core[0] <= y < core[1] and core[2] <= x < core[3]:
            in_core += 1
    return merged, in_core


def _sieve(labels: np.ndarray, size: int, connectivity: int, core: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """Up to ROUNDS rounds of the sieve; returns the result and the patches removed in ``core``."""
    current, removed = labels, 0
    for _ in range(ROUNDS):
        result = current.copy()
        merged, in_core = _sieve_round(current, result, connectivity == 8, size, CAP_FACTOR * size, core)
        removed += in_core
        current = result
        if merged == 0:
            break
    return current, removed


def _changed(before: np.ndarray, after: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(before[before != after], minlength=k + 1).astype(np.int64)


def clean(labels: np.ndarray, cleanup: Cleanup, *, k: int | None = None) -> Cleaned:
    """The cleanup of a whole raster (its edges are the raster's edges); k defaults to the
    largest label."""
    if k is None:
        k = int(labels.max(initial=0))
    return clean_window(labels, cleanup, core=(slice(None), slice(None)), k=k)


def clean_window(window: np.ndarray, cleanup: Cleanup, *, core: tuple[slice, slice], k: int) -> Cleaned:
    """The cleanup of the chunk ``window[core]``, exact when ``window`` has ``cleanup.halo``
    pixels of context on each side of it that is not the raster's edge."""
    if window.ndim != 2:
        raise ValueError(f"labels must be a (y, x) array, got shape {window.shape}")
    top = int(window.max(initial=0))
    if top > k or window.min(initial=0) < 0:
        raise ValueError(f"labels must be classes 0..{k}, found {window.min()}..{top}")
    labels = np.ascontiguousarray(window, dtype=np.uint8)
    (y0, y1, _), (x0, x1, _) = core[0].indices(labels.shape[0]), core[1].indices(labels.shape[1])
    voted = labels
    if cleanup.majority > 1:
        voted = np.empty_like(labels)
        _majority(labels, cleanup.majority, top, voted)
    sieved, removed = voted, 0
    if cleanup.sieve > 1:
        sieved, removed = _sieve(voted, cleanup.sieve, cleanup.connectivity, (y0, y1, x0, x1))
    inside = (slice(y0, y1), slice(x0, x1))
    return Cleaned(
        labels=sieved[inside].copy(),
        majority_changed=_changed(labels[inside], voted[inside], k),
        sieve_changed=_changed(voted[inside], sieved[inside], k),
        patches_removed=removed,
    )
