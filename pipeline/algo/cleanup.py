"""The cleanup of a label map: a majority (mode) filter, then a sieve (minimum mapping unit),
both exactly the same whether computed on the whole raster or chunk by chunk on windows of
"chunk + ``Cleanup.halo``" (``stages/cleanup.py`` and the write pass map ``clean_window`` over
chunks). Labels are uint8 (y, x): 0 = nodata, classes 1..k. The rules are stated here; their
kernels are in ``algo/majority.py``, ``algo/sieve.py`` and ``algo/patches.py``.

Majority (window side w = ``majority`` >= 3, r = w // 2). Each valid pixel takes the most frequent
class among the valid pixels of the w x w window centred on it (cut at the array's edges); nodata
never votes and never changes. Ties: the pixel's own class if it is among the tied, else the
smallest class id. Votes read the input, not the pixels already filtered.

Sieve (N = ``sieve`` >= 2, S = CAP_FACTOR * N), on the majority's output, for up to ROUNDS rounds.
Patches are the connected components of equal valid class (4- or 8-connected); a patch is small
if it has < N pixels. Each small patch P looks at the classes of the pixels adjacent to it (same
connectivity) and, for each such class c: the largest *capped* size min(|Q|, S) of a class-c
patch Q touching P; for classes at the cap, the most pixels that such a Q at the cap has in P's
tie-break box, connected within the box (the box: the 3 x 3 blocks of side B = S // 2 of the
raster's grid around the block of P's first pixel, row-major; a large patch has more of itself
around P); and the number of adjacent (P pixel, class-c pixel) pairs. P takes the class
maximising (capped size, pixels in the box, contacts, -c) if that capped size is >= N (a large
neighbour); otherwise it waits for a later round; a patch touching only nodata and the edge
stays. All small patches of a round decide on that round's input; the next round runs on the
result (stop when none merged).

Why it is chunk-invariant, and the halo H = r + ROUNDS * (N + S - 1) (``Cleanup.halo``). A small
patch P containing p has < N pixels, so it lies within N - 2 of p (Chebyshev) and a patch with
>= N pixels has N of them within N - 1 of p: smallness is decided within N - 1. A pixel adjacent
to P lies within N - 1 of p, and min(|Q|, S) of its patch is decided within S - 1 of it. On a
window, a component cut by the window's edge, seen from a pixel with >= D context pixels, reaches
that edge so it has >= S pixels inside the window already: min(size in window, S) is exact. P's
box lies within 2B - 1 <= S - 1 of P's first pixel, so within N + S - 3 of p; it is made of the
raster's blocks (the window says where it lies), so what it holds, and what is connected within
it, is the same in every window that holds it. One round's output is thus exact with D = N + S -
2 pixels of context (we keep one spare), ROUNDS rounds with ROUNDS * D, and the majority's
output, their input, with r more.

How it differs from GDAL (``GDALSieveFilter``, ``rasterio.features.sieve``): GDAL merges a small
polygon into the neighbour with the largest *global* size and follows chains of small polygons
in one go; both need the whole raster. We cap sizes at S (so among neighbours of >= S pixels the
one with more of itself in P's box wins, a bounded stand-in for the larger), decide chains round
by round, and group neighbours by class: two parts of one field, touching P on both sides and
joined far away, may be one patch globally and two in a window, so only their class is a local
(chunk-invariant) notion.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from pipeline.algo.majority import MAX_MAJORITY, majority
from pipeline.algo.sieve import sieve_round

# Chosen by measurement on the four NAIP scenes' labels (k = 7), against GDAL's sieve
# (docs/algorithms.md#cleanup): at majority 3, sieve 16, 8-connected, capped sizes and contacts
# agree on 99.61 % of valid pixels; with the pixels in the tie-break box between patches at the
# cap, 99.99 %. A larger cap would widen the halo (N + S - 1) for next to nothing; a second round
# merges ~10 more patches per scene for twice the sieve's time and twice the halo.
CAP_FACTOR = 16
ROUNDS = 1


_reused = threading.local()
REUSED_BYTES = 64 << 20  # larger arrays (a whole raster cleaned at once) are not kept


def reused(name: str, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    """An array of ``shape`` that this thread reuses from window to window (a window's fresh
    pages cost more page faults than its majority filter): valid until this thread asks for
    ``name`` again."""
    size = int(np.prod(shape))
    if size * np.dtype(dtype).itemsize > REUSED_BYTES:
        return np.empty(shape, dtype)
    arrays = _reused.__dict__.setdefault("arrays", {})
    if name not in arrays or arrays[name].size < size or arrays[name].dtype != dtype:
        arrays[name] = np.empty(size, dtype)
    return arrays[name][:size].reshape(shape)


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
        return radius + ROUNDS * _reach(self.sieve)

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
    gained: np.ndarray  # int64 (k + 1,): core pixels either changed, by their class after it
    patches_removed: int  # patches the sieve merged whose first pixel (row-major) is in the core

    def pixels(self, before: np.ndarray) -> np.ndarray:
        """Core pixels per class after the cleanup, from those ``before`` it (the label pass
        counts them already: a count of the cleaned core would cost 8 % of the cleanup)."""
        return before - self.majority_changed - self.sieve_changed + self.gained


def _reach(size: int) -> int:
    """The context one round's output needs (see the module), one pixel spare."""
    return size + CAP_FACTOR * size - 1


def _sieve(
    labels: np.ndarray, top: int, size: int, connectivity: int, core: tuple[int, int, int, int], place: tuple[int, int]
) -> tuple[np.ndarray, int, np.ndarray]:
    """Up to ROUNDS rounds of the sieve on ``labels`` (classes 0..top) at ``place`` in the
    raster; returns the result in ``core``, the patches removed there and the pixels changed
    there by their class before (row 0) and after (row 1; a pixel changes at most once: once
    merged, it is part of a large patch). The last round writes the core only."""
    current, removed, changed = labels, 0, np.zeros((2, top + 1), np.int64)
    reach = _reach(size)
    runs = labels.size // 8 + labels.shape[1] + 2  # a run per 8 pixels, grown if more (speckle)
    scratch = tuple(reused(f"runs-{n}", (runs,), dtype) for n, dtype in enumerate((np.int32, np.int32, np.int32, np.uint8, np.int32, np.int32)))
    y0, y1, x0, x1 = core
    for left in range(ROUNDS - 1, -1, -1):
        grown = reach * left  # the later rounds need this round's output this far around the core
        region = (y0 - grown, y1 + grown, x0 - grown, x1 + grown)
        out_at = (0, 0) if left else (y0, x0)
        result = current.copy() if left else current[y0:y1, x0:x1].copy()
        merged, in_core = sieve_round(
            current, top, result, out_at, connectivity == 8, size, CAP_FACTOR * size, CAP_FACTOR * size // 2, place, core, region, scratch, changed
        )
        removed += in_core
        if not left:
            return result, removed, changed
        current = result
        if merged == 0:  # nor will a later round, in a smaller region
            break
    return current[y0:y1, x0:x1].copy(), removed, changed


@numba.njit(nogil=True, cache=True)
def _differ(was, now, differs):  # pragma: no cover - compiled
    """1 where a row's pixel changed, else 0: a vectorised loop of its own (see algo/majority.py)."""
    for x in range(was.shape[0]):
        differs[x] = was[x] != now[x]


@numba.njit(nogil=True, cache=True)
def _changed(before, after, k):  # pragma: no cover - compiled
    """Pixels that differ between ``before`` and ``after``, per class 0..k they had before (row
    0) and have after (row 1)."""
    counts = np.zeros((2, k + 1), np.int64)
    height, width = before.shape
    differs = np.zeros((width + 7) // 8 * 8, np.uint8)  # past the width: 0, never changed
    eights = differs.view(np.uint64)
    for y in range(height):
        was, now = before[y], after[y]
        _differ(was, now, differs)
        # A few per cent change, in clusters: 8 pixels at a time are skipped where none did.
        for i in range(len(eights)):
            if eights[i]:
                for x in range(8 * i, 8 * i + 8):
                    counts[0, was[x]] += differs[x]
                    counts[1, now[x]] += differs[x]
    return counts


def clean(labels: np.ndarray, cleanup: Cleanup, *, k: int | None = None) -> Cleaned:
    """The cleanup of a whole raster (its edges are the raster's edges); k defaults to the
    largest label."""
    if k is None:
        k = int(labels.max(initial=0))
    return clean_window(labels, cleanup, core=(slice(None), slice(None)), k=k)


def clean_window(
    window: np.ndarray, cleanup: Cleanup, *, core: tuple[slice, slice], k: int, place: tuple[int, int] = (0, 0)
) -> Cleaned:
    """The cleanup of the chunk ``window[core]``, exact when ``window`` has ``cleanup.halo``
    pixels of context on each side of it that is not the raster's edge; ``place``: the
    window's first (row, column) in the raster."""
    if window.ndim != 2:
        raise ValueError(f"labels must be a (y, x) array, got shape {window.shape}")
    top = int(window.max(initial=0))
    if top > k or (window.dtype.kind != "u" and window.min(initial=0) < 0):  # labels are unsigned bytes: no pass to find a minimum
        raise ValueError(f"labels must be classes 0..{k}, found {window.min()}..{top}")
    labels = np.ascontiguousarray(window, dtype=np.uint8)
    (y0, y1, _), (x0, x1, _) = core[0].indices(labels.shape[0]), core[1].indices(labels.shape[1])
    voted = labels
    if cleanup.majority > 1:
        voted = majority(labels, cleanup.majority, top, out=reused("voted", labels.shape))
    inside = (slice(y0, y1), slice(x0, x1))
    if cleanup.sieve > 1:
        sieved, removed, sieve_changed = _sieve(voted, top, cleanup.sieve, cleanup.connectivity, (y0, y1, x0, x1), place)
    else:
        sieved, removed, sieve_changed = voted[inside].copy(), 0, np.zeros((2, top + 1), np.int64)
    majority_changed = _changed(labels[inside], voted[inside], k) if cleanup.majority > 1 else np.zeros((2, k + 1), np.int64)
    sieve_changed = np.pad(sieve_changed, ((0, 0), (0, k - top)))
    return Cleaned(
        labels=sieved, majority_changed=majority_changed[0], sieve_changed=sieve_changed[0],
        gained=majority_changed[1] + sieve_changed[1], patches_removed=removed,
    )
