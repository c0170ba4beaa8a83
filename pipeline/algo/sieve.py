"""The sieve's round, for ``algo/cleanup.py``, which states the rule and why one round's result is
the same on any window holding the halo: each small patch that reaches the region asked for
looks at its neighbours, as runs (``algo/patches.py``), and takes the best one's class. Labels
are uint8 (y, x), 0 = nodata."""

from __future__ import annotations

import numba
import numpy as np

from pipeline.algo.patches import (
    CELL,
    CELL_REACH,
    cap_sizes,
    cells,
    components,
    flooded,
    runs,
)


# ``_best_class`` and its helpers are inlined into ``sieve_round``'s loop over the patches: a call
# passing arrays costs more there than the work it does (9 of 47 ms a window, measured).
@numba.njit(nogil=True, cache=True, inline="always")
def _first_reaching(first, x1, y, x):  # pragma: no cover - compiled
    """The first run of row y that ends after column x (binary search; runs are sorted)."""
    lo, hi = first[y], first[y + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if x1[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(nogil=True, cache=True)
def _flooded_size(sizes, c, y, x, eight, cap, flood):  # pragma: no cover - compiled
    """The capped size of component c, which the runs' part does not settle (``cap_sizes``),
    counted by a flood fill from its pixel (y, x) of the part in the window (``flood``: the
    labels, the part's origin in them, the fill's arrays) and kept for its other neighbours."""
    labels, origin, seen, queue = flood
    sizes[c] = flooded(labels, y + origin[0], x + origin[1], eight, cap, seen, queue)
    return sizes[c]


@numba.njit(nogil=True, cache=True, inline="always")
def _touch(c, size, pairs, contacts, biggest, touched, n_touched):  # pragma: no cover - compiled
    """Count ``pairs`` contacts with a class-c patch of capped ``size``; returns how many classes
    are touched. Branch-free: the class varies from run to run."""
    touched[n_touched] = c  # kept only if c is new
    n_touched += contacts[c] == 0
    contacts[c] += pairs
    biggest[c] = max(biggest[c], size)
    return n_touched


@numba.njit(nogil=True, cache=True, inline="always")
def _best_class(shape, runs, comp, sizes, patch, eight, cap, cells, flood, contacts, biggest, touched):  # pragma: no cover - compiled
    """For one small patch (its runs, as (row, run) pairs in row-major order): the neighbouring
    class maximising (largest capped size of a patch of it touching the patch, at the cap its
    pixels near the patch (``cells``), contacts, -class), and that capped size (0: no valid
    neighbour). Its neighbours are runs too: the runs just before and after each of its runs,
    and the runs of the rows above and below that overlap it (one column further when
    8-connected); the patch's own class, met there as the patch itself, is dropped at the end."""
    height, width = shape
    first, x0, x1, cls = runs
    slack = 1 if eight else 0
    n_touched, n = 0, len(patch)
    top, bottom, left, right = patch[0, 0], patch[n - 1, 0], width, 0  # the patch's bounding box
    p, above = 0, -1  # above: the patch's first run in the row above this row's, if any
    while p < n:  # the patch's runs in row y: p..q - 1
        y = patch[p, 0]
        q = p
        while q < n and patch[q, 0] == y:
            q += 1
        for s in range(p, q):
            r = patch[s, 1]
            a, b = x0[r], x1[r]
            left, right = min(left, a), max(right, b - 1)
            for t in (r - 1, r + 1):  # in its row: a run that touches it (no nodata between) has another class
                if first[y] <= t < first[y + 1] and (x1[t] == a or x0[t] == b):
                    size = sizes[comp[t]]
                    if size < 0:
                        size = _flooded_size(sizes, comp[t], y, x0[t], eight, cap, flood)
                    n_touched = _touch(cls[t], size, 1, contacts, biggest, touched, n_touched)
        below = patch[q, 1] if q < n and patch[q, 0] == y + 1 else -1
        for yy, anchor in ((y - 1, above), (y + 1, below)):
            if yy < 0 or yy >= height:
                continue
            # The first run of row yy that reaches the row's first run: a few runs before the
            # patch's own run in row yy if it has one, else by binary search; then rightwards.
            reach = x0[patch[p, 1]] - slack
            if anchor < 0:
                t = _first_reaching(first, x1, yy, reach)
            else:
                t = anchor
                while t > first[yy] and x1[t - 1] > reach:
                    t -= 1
            for s in range(p, q):
                r = patch[s, 1]
                a, b = x0[r], x1[r]
                while t < first[yy + 1] and x1[t] <= a - slack:
                    t += 1
                u = t
                while u < first[yy + 1] and x0[u] < b + slack:
                    lo, hi = x0[u], x1[u]
                    pairs = max(0, min(b, hi) - max(a, lo))  # (patch pixel, run pixel) pairs that touch
                    if eight:
                        pairs += max(0, min(b + 1, hi) - max(a + 1, lo)) + max(0, min(b - 1, hi) - max(a - 1, lo))
                    size = sizes[comp[u]]
                    if size < 0:
                        size = _flooded_size(sizes, comp[u], yy, lo, eight, cap, flood)
                    n_touched = _touch(cls[u], size, pairs, contacts, biggest, touched, n_touched)
                    u += 1
        above, p = patch[p, 1], q
    return _pick(cls[patch[0, 1]], cap, cells, (top, bottom, left, right), contacts, biggest, touched, n_touched)


@numba.njit(nogil=True, cache=True, inline="always")
def _pick(own, cap, cells, box, contacts, biggest, touched, n_touched):  # pragma: no cover - compiled
    """The touched class other than ``own`` maximising (largest capped size, at the cap its
    pixels in the cells near the patch's bounding ``box`` (top, bottom, left, right), contacts,
    -class), and that capped size; resets the counts for the next patch."""
    integral, shift = cells
    rows, cols = integral.shape[1] - 1, integral.shape[2] - 1
    cy0, cy1 = max(0, (box[0] + shift[0]) // CELL - CELL_REACH), min(rows, (box[1] + shift[0]) // CELL + CELL_REACH + 1)
    cx0, cx1 = max(0, (box[2] + shift[1]) // CELL - CELL_REACH), min(cols, (box[3] + shift[1]) // CELL + CELL_REACH + 1)
    winner, size, near, most = 0, 0, -1, 0
    for t in range(n_touched):
        c = touched[t]
        count = -1  # below the cap the capped sizes decide; the near pixels are not needed
        if biggest[c] == cap:
            count = integral[c, cy1, cx1] - integral[c, cy0, cx1] - integral[c, cy1, cx0] + integral[c, cy0, cx0]
        key = (biggest[c], count, contacts[c], -c)
        if c != own and key > (size, near, most, -winner):
            winner, size, near, most = c, biggest[c], count, contacts[c]
        contacts[c] = 0  # reset for the next patch
        biggest[c] = 0
    return winner, size


@numba.njit(nogil=True, cache=True, inline="always")
def _patch_runs(r, row, first, x0, x1, after, region, runs_of):  # pragma: no cover - compiled
    """The runs of the patch whose first run r is in row ``row``, followed through ``after``, into
    ``runs_of`` as (row, run) pairs; returns how many, and whether one has a pixel in ``region``
    = (y0, y1, x0, x1)."""
    n, meets = 0, False
    while r >= 0:
        while first[row + 1] <= r:
            row += 1
        runs_of[n, 0], runs_of[n, 1] = row, r
        meets |= region[0] <= row < region[1] and x0[r] < region[3] and x1[r] > region[2]
        n += 1
        r = after[r]
    return n, meets


@numba.njit(nogil=True, cache=True)
def sieve_round(labels, top, out, out_at, eight, small, cap, place, core, region, scratch, changed):  # pragma: no cover - compiled
    """One round, from ``labels`` (classes 0..top, at ``place`` = (row, column) in the raster)
    into ``out`` (a copy of its part from ``out_at`` = (y, x) on), deciding the small patches
    with a pixel in ``region`` (the others' results are not needed): returns (patches merged, of
    them those whose first pixel is in ``core``; both (y0, y1, x0, x1)), and adds the pixels it
    changes in ``core`` to ``changed``, by their class before. ``scratch``: arrays to hold the
    runs (x0, x1, parent and next run int32, class uint8), grown if short.

    Runs, patches and cells are built on the part of ``labels`` that those patches, their
    neighbours and the cells around them lie in (the region and small - 1 + (CELL_REACH + 1) *
    CELL pixels around it: three quarters of a window), not on the whole window: a neighbour
    below the cap that reaches out of the part is measured by a flood fill in the window."""
    height, width = labels.shape
    grow = small - 1 + (CELL_REACH + 1) * CELL
    py0, py1, px0, px1 = max(0, region[0] - grow), min(height, region[1] + grow), max(0, region[2] - grow), min(width, region[3] + grow)
    part = labels[py0:py1, px0:px1]
    first, x0, x1, cls = runs(part, scratch[0], scratch[1], scratch[3])
    counts = cells(part, top, (place[0] + py0, place[1] + px0), first, x0, x1, cls)
    comp, sizes, head, after = components(eight, first, x0, x1, cls, scratch[2], scratch[4])
    cap_sizes(first, x0, x1, comp, sizes, cap, px1 - px0, (py0 > 0, py1 < height, px0 > 0, px1 < width))
    flood = (labels, (py0, px0), np.zeros((labels.size + 7) // 8, np.uint8), np.empty(cap + 8, np.int64))
    contacts = np.zeros(256, np.int64)
    biggest = np.zeros(256, np.int64)
    touched = np.zeros(256, np.int64)
    runs_of = np.empty((small, 2), np.int32)  # a small patch's runs as (row, run) pairs
    ry0, ry1, rx0, rx1 = region[0] - py0, region[1] - py0, region[2] - px0, region[3] - px0
    merged = in_core = first_row = 0
    for c in range(len(sizes)):
        if not 0 < sizes[c] < small:
            continue  # large (a patch reaching the part's open edges is)
        r = head[c]
        while first[first_row + 1] <= r:  # components come in the order of their first runs
            first_row += 1
        if first_row < ry0 - (small - 2) or first_row >= ry1:
            continue  # it cannot reach the region: it spans fewer than small rows
        n, meets = _patch_runs(r, first_row, first, x0, x1, after, (ry0, ry1, rx0, rx1), runs_of)
        if not meets:
            continue  # its result is not needed
        patch = runs_of[:n]
        winner, size = _best_class(part.shape, (first, x0, x1, cls), comp, sizes, patch, eight, cap, counts, flood, contacts, biggest, touched)
        if size < small:
            continue  # no large neighbour (yet)
        for p in range(len(patch)):
            y, r = patch[p, 0] + py0, patch[p, 1]
            a, b = x0[r] + px0, x1[r] + px0
            left, right = max(a - out_at[1], 0), min(b - out_at[1], out.shape[1])
            if 0 <= y - out_at[0] < out.shape[0] and left < right:
                out[y - out_at[0], left:right] = winner
            if core[0] <= y < core[1]:
                changed[cls[r]] += max(0, min(b, core[3]) - max(a, core[2]))
        merged += 1
        y, x = patch[0, 0] + py0, x0[patch[0, 1]] + px0
        if core[0] <= y < core[1] and core[2] <= x < core[3]:
            in_core += 1
    return merged, in_core
