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


@numba.njit(nogil=True, cache=True)
def _majority_by_class(labels, side, top, out, votes):  # pragma: no cover - compiled
    # For few classes, counting every class's votes everywhere is cheaper than a histogram for
    # the pixels that need one (a tenth of a raw K-Means map): per class, a running count of its
    # pixels per column over the window's rows, summed across the window's columns; each pass is
    # one vectorised loop. ``votes``: an empty array of the integer type that counts them.
    height, width = labels.shape
    r = side // 2
    column = np.zeros((top + 1, width), votes.dtype)
    count = np.empty(width, votes.dtype)
    best = np.empty(width, votes.dtype)
    winner = np.empty(width, np.uint8)
    own = np.empty(width, votes.dtype)
    blank = np.zeros(width, np.uint8)
    result = np.empty(width, np.uint8)  # a row of the output
    for y in range(-r, height):
        # The row entering the window and the row leaving it, in one pass (nodata past the edges)
        entering = labels[y + r] if y + r < height else blank
        leaving = labels[y - r - 1] if y - r - 1 >= 0 else blank
        for c in range(1, top + 1):
            col, cls = column[c], np.uint8(c)  # a byte: against a wider class the bytes are widened (twice the time)
            for x in range(width):
                col[x] += (entering[x] == cls) - (leaving[x] == cls)
        if y < 0:
            continue
        centres = labels[y]
        best[:] = 0
        winner[:] = 0
        own[:] = 0
        for c in range(1, top + 1):
            col = column[c]
            count[:] = 0
            for dx in range(-r, r + 1):
                lo, hi = max(0, -dx), min(width, width - dx)
                votes, sums = col[lo + dx : hi + dx], count[lo:hi]
                for x in range(hi - lo):
                    sums[x] += votes[x]
            cls = np.uint8(c)
            for x in range(width):  # ascending classes and a strict ">": the smallest id wins ties
                # Selections as byte masks (all ones or zeros): written as conditionals, this loop
                # and the last one ran unvectorised under numba 0.68 (96 and 20 ms a window
                # instead of 2 and 3).
                n, most = count[x], best[x]  # read once: the stores below could alias them
                more = (n > most) * np.uint8(255)
                mine = (centres[x] == cls) * np.uint8(255)
                best[x] = max(n, most)
                winner[x] = (cls & more) | (winner[x] & ~more)
                own[x] = (n & mine) | (own[x] & ~mine)
        for x in range(width):
            centre = centres[x]
            keep = ((centre == NODATA_LABEL) | (own[x] == best[x])) * np.uint8(255)
            result[x] = (centre & keep) | (winner[x] & ~keep)
        # Written to ``out`` as a row: the loop above, writing into ``out`` itself, ran unvectorised
        # (twice the filter's time) when ``out`` began just after ``labels`` in memory, as two arrays
        # allocated one after the other do.
        out[y, :] = result
