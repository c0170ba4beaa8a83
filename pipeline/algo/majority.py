"""The majority (mode) filter's kernels, for ``algo/cleanup.py``, which states the rule and why the
result is the same on any window holding the halo. Labels are uint8 (y, x), 0 = nodata."""

from __future__ import annotations

import numba
import numpy as np

from pipeline.algo.kernel import NODATA_LABEL

MAX_MAJORITY = 31  # a window's votes fit in uint16 (and config.postprocess allows up to 31)
BY_CLASS = 12  # up to this many classes the majority counts every class's votes (faster, measured)


def majority(labels: np.ndarray, side: int, top: int, out: np.ndarray | None = None) -> np.ndarray:
    """The majority filter of ``labels`` (classes 0..top) with a ``side`` x ``side`` window, into
    ``out`` (an array of the labels' shape and type, or a new one)."""
    voted = np.empty_like(labels) if out is None else out
    if top <= BY_CLASS:
        # Votes counted in the narrowest integer that holds a window's: twice the lanes per vector.
        _majority_by_class(labels, side, top, voted, np.zeros(0, np.uint8 if side * side <= 255 else np.uint16))
    else:
        _majority(labels, side, top, voted)
    return voted


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


# The loops of ``_majority_by_class`` are functions of their own, not inlined: inside the one
# kernel, LLVM vectorised the selection loop on one machine (znver3) and not on another (znver1:
# 34 ms a window instead of 5, measured); alone, with plain row arrays, it vectorises on both.
@numba.njit(nogil=True, cache=True)
def _column_update(column, entering, leaving, cls):  # pragma: no cover - compiled
    """A class's pixel count per column over the window's rows, moved down one row."""
    for x in range(column.shape[0]):
        column[x] += (entering[x] == cls) - (leaving[x] == cls)


@numba.njit(nogil=True, cache=True)
def _window_sums(padded, sums, r):  # pragma: no cover - compiled
    """A class's votes in each pixel's window: ``padded`` (its column counts with r zeros each
    side, the votes past the edges) summed over the window's 2 r + 1 columns."""
    width = sums.shape[0]
    if r == 1:  # the common 3 x 3 window, in one pass
        for x in range(width):
            sums[x] = padded[x] + padded[x + 1] + padded[x + 2]
        return
    sums[:] = 0
    for dx in range(2 * r + 1):
        for x in range(width):
            sums[x] += padded[x + dx]


@numba.njit(nogil=True, cache=True)
def _select(count, centres, best, winner, own, cls):  # pragma: no cover - compiled
    """Take class ``cls`` (``count`` votes) where it beats the best so far; keep the centres'
    own class's votes. Ascending classes and a strict ">": the smallest id wins ties."""
    for x in range(count.shape[0]):
        # Selections as byte masks (all ones or zeros): written as conditionals, the loop ran
        # unvectorised under numba 0.68 (measured).
        n, most = count[x], best[x]  # read once: the stores below could alias them
        more = (n > most) * np.uint8(255)
        mine = (centres[x] == cls) * np.uint8(255)
        best[x] = max(n, most)
        winner[x] = (cls & more) | (winner[x] & ~more)
        own[x] = (n & mine) | (own[x] & ~mine)


@numba.njit(nogil=True, cache=True)
def _voted_row(centres, own, best, winner, out):  # pragma: no cover - compiled
    """The row's result: its own class where that has the most votes (or nodata), else the winner."""
    for x in range(centres.shape[0]):
        centre = centres[x]
        keep = ((centre == NODATA_LABEL) | (own[x] == best[x])) * np.uint8(255)
        out[x] = (centre & keep) | (winner[x] & ~keep)


@numba.njit(nogil=True, cache=True)
def _majority_by_class(labels, side, top, out, votes):  # pragma: no cover - compiled
    # For few classes, counting every class's votes everywhere is cheaper than a histogram for
    # the pixels that need one (a tenth of a raw K-Means map): per class, a running count of its
    # pixels per column over the window's rows, summed across the window's columns; each pass is
    # one vectorised loop. ``votes``: an empty array of the integer type that counts them.
    height, width = labels.shape
    r = side // 2
    columns = np.zeros((top + 1, width + 2 * r), votes.dtype)  # r zeros each side: no votes past the edges
    count = np.empty(width, votes.dtype)
    best = np.empty(width, votes.dtype)
    winner = np.empty(width, np.uint8)
    own = np.empty(width, votes.dtype)
    blank = np.zeros(width, np.uint8)
    for y in range(-r, height):
        # The row entering the window and the row leaving it, in one pass (nodata past the edges)
        entering = labels[y + r] if y + r < height else blank
        leaving = labels[y - r - 1] if y - r - 1 >= 0 else blank
        for c in range(1, top + 1):
            # The class as a byte: against a wider class the bytes are widened (twice the time).
            _column_update(columns[c, r : r + width], entering, leaving, np.uint8(c))
        if y < 0:
            continue
        best[:] = 0
        winner[:] = 0
        own[:] = 0
        for c in range(1, top + 1):
            _window_sums(columns[c], count, r)
            _select(count, labels[y], best, winner, own, np.uint8(c))
        _voted_row(labels[y], own, best, winner, out[y])
