"""The sieve's kernels, for ``algo/cleanup.py``, which states the rule and why one round's result is
the same on any window holding the halo: runs of equal class along rows, patches as union-find on
runs, the cells' counts, and one round deciding the small patches. Labels are uint8 (y, x), 0 =
nodata."""

from __future__ import annotations

import numba
import numpy as np

from pipeline.algo.kernel import NODATA_LABEL

CELL = 16  # the side of the cells whose pixels of a class break ties between patches at the cap
CELL_REACH = 4  # cells counted around a small patch's cells


@numba.njit(nogil=True, cache=True)
def _root(parent, i):  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression keeps later finds short
        parent[i], i = root, parent[i]
    return root


@numba.njit(nogil=True, cache=True)
def _runs(labels, x0, x1, cls):  # pragma: no cover - compiled
    """The runs of equal valid class along each row: (first run of each row (height + 1,), run
    start x, run end x (exclusive), run class). Components are unions of runs: far fewer than
    pixels. One pass into ``x0, x1, cls``, grown as needed (labels after a majority filter have a
    run per ~12 pixels, speckled ones a run per ~5)."""
    height, width = labels.shape
    first = np.zeros(height + 1, np.int64)
    size = len(x0)
    n = 0
    for y in range(height):
        first[y] = n
        if n + width > size:  # room for a whole row of runs
            size = max(2 * size, n + width)
            x0, x1, cls = _grown(x0, size), _grown(x1, size), _grown(cls, size)
        previous = NODATA_LABEL
        for x in range(width):
            c = labels[y, x]
            if c != previous and c != NODATA_LABEL:
                x0[n] = x
                cls[n] = c
                n += 1
            if c != NODATA_LABEL:
                x1[n - 1] = x + 1
            previous = c
    first[height] = n
    return first, x0[:n], x1[:n], cls[:n]


@numba.njit(nogil=True, cache=True)
def _grown(values, size):  # pragma: no cover - compiled
    bigger = np.empty(size, values.dtype)
    bigger[: len(values)] = values
    return bigger


@numba.njit(nogil=True, cache=True)
def _components(eight, first, x0, x1, cls, parent):  # pragma: no cover - compiled
    """Connected components of equal valid class, as ids 0.. of the runs in order of their first
    pixel (row-major); returns (component of each run, sizes)."""
    height = len(first) - 1
    n = len(x0)
    parent = parent[:n] if len(parent) >= n else np.empty(n, np.int32)  # a root is its component's smallest run
    for r in range(n):
        parent[r] = r
    slack = 1 if eight else 0  # 8-connected runs also touch diagonally, one column further
    for y in range(1, height):
        i, above_end = first[y - 1], first[y]
        for j in range(first[y], first[y + 1]):
            while i < above_end and x1[i] + slack <= x0[j]:
                i += 1  # runs above that end before this one cannot touch the next either
            t, root = i, j  # j's root: j is new, so only this loop changes it
            while t < above_end and x0[t] < x1[j] + slack:
                if cls[t] == cls[j]:
                    other = _root(parent, t)
                    if other < root:
                        parent[root] = other
                        root = other
                    elif root < other:
                        parent[other] = root
                t += 1
            parent[j] = root
    comp, count = parent, 0  # each run's parent becomes its component, in place
    for r in range(n):
        if parent[r] == r:  # the first run of its component: a new id
            comp[r] = count
            count += 1
        else:  # parents come first, so their component is already known; it is r's
            comp[r] = comp[parent[r]]
    sizes = np.zeros(count, np.int64)
    for r in range(n):
        sizes[comp[r]] += x1[r] - x0[r]
    return comp, sizes


@numba.njit(nogil=True, cache=True)
def _cells(shape, top, place, first, x0, x1, cls):  # pragma: no cover - compiled
    """Per class 0..top, the pixels in the CELL x CELL cells of the raster's grid that the
    window (at ``place`` in the raster) overlaps, as an integral image: (integral (top + 1, rows
    + 1, cols + 1), the window's offset in its first cell (y, x)). Counted from the runs, a
    tenth as many as the pixels."""
    height, width = shape
    shift = (place[0] % CELL, place[1] % CELL)
    rows, cols = (height + shift[0] + CELL - 1) // CELL, (width + shift[1] + CELL - 1) // CELL
    integral = np.zeros((top + 1, rows + 1, cols + 1), np.int32)
    for y in range(height):
        i = (y + shift[0]) // CELL + 1
        for r in range(first[y], first[y + 1]):
            c, start = cls[r], x0[r]
            while start < x1[r]:
                j = (start + shift[1]) // CELL + 1
                stop = min(x1[r], (j * CELL) - shift[1])  # the end of the run or of its cell
                integral[c, i, j] += stop - start
                start = stop
    for c in range(1, top + 1):
        for i in range(1, rows + 1):
            for j in range(1, cols + 1):
                integral[c, i, j] += integral[c, i - 1, j] + integral[c, i, j - 1] - integral[c, i - 1, j - 1]
    return integral, shift


@numba.njit(nogil=True, cache=True)
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
def _touch(c, size, pairs, cap, contacts, biggest, touched, n_touched):  # pragma: no cover - compiled
    """Count ``pairs`` contacts with a class-c patch of ``size`` pixels; returns how many classes are touched."""
    if contacts[c] == 0:
        touched[n_touched] = c
        n_touched += 1
    contacts[c] += pairs
    biggest[c] = max(biggest[c], min(size, cap))
    return n_touched


@numba.njit(nogil=True, cache=True)
def _best_class(shape, runs, comp, sizes, patch, eight, cap, cells, contacts, biggest, touched):  # pragma: no cover - compiled
    """For one small patch (its runs, as (row, run) pairs): the neighbouring class maximising
    (largest capped size of a patch of it touching the patch, at the cap its pixels near the
    patch (``_cells``), contacts, -class), and that capped size (0: no valid neighbour). Its
    neighbours are runs too: the runs just before and after each of its runs, and the runs of
    the rows above and below that overlap it (one column further when 8-connected)."""
    height, width = shape
    first, x0, x1, cls = runs
    integral, shift = cells
    own = cls[patch[0, 1]]
    slack = 1 if eight else 0
    n_touched = 0
    top, bottom, left, right = height, 0, width, 0  # the patch's bounding box
    for p in range(len(patch)):
        y, r = patch[p, 0], patch[p, 1]
        a, b = x0[r], x1[r]
        top, bottom, left, right = min(top, y), max(bottom, y), min(left, a), max(right, b - 1)
        for t in (r - 1, r + 1):  # in its row: a run that touches it (no nodata between) has another class
            if first[y] <= t < first[y + 1] and (x1[t] == a or x0[t] == b):
                n_touched = _touch(cls[t], sizes[comp[t]], 1, cap, contacts, biggest, touched, n_touched)
        for yy in (y - 1, y + 1):
            if yy < 0 or yy >= height:
                continue
            t = _first_reaching(first, x1, yy, a - slack)
            while t < first[yy + 1] and x0[t] < b + slack:
                c = cls[t]
                if c != own:  # an equal class touching it is the patch itself
                    pairs = 0  # (patch pixel, run pixel) pairs that touch
                    for x in range(a, b):
                        pairs += max(0, min(x + slack + 1, x1[t]) - max(x - slack, x0[t]))
                    n_touched = _touch(c, sizes[comp[t]], pairs, cap, contacts, biggest, touched, n_touched)
                t += 1
    rows, cols = integral.shape[1] - 1, integral.shape[2] - 1
    cy0, cy1 = max(0, (top + shift[0]) // CELL - CELL_REACH), min(rows, (bottom + shift[0]) // CELL + CELL_REACH + 1)
    cx0, cx1 = max(0, (left + shift[1]) // CELL - CELL_REACH), min(cols, (right + shift[1]) // CELL + CELL_REACH + 1)
    winner, size, near, most = 0, 0, -1, 0
    for t in range(n_touched):
        c = touched[t]
        count = -1  # below the cap the capped sizes decide; the near pixels are not needed
        if biggest[c] == cap:
            count = integral[c, cy1, cx1] - integral[c, cy0, cx1] - integral[c, cy1, cx0] + integral[c, cy0, cx0]
        key = (biggest[c], count, contacts[c], -c)
        if key > (size, near, most, -winner):
            winner, size, near, most = c, biggest[c], count, contacts[c]
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
    pairs = np.empty((start[-1], 2), np.int32)
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
def _meets(patch, x0, x1, region):  # pragma: no cover - compiled
    """Whether a patch (its (row, run) pairs) has a pixel in ``region`` = (y0, y1, x0, x1)."""
    for p in range(len(patch)):
        y, r = patch[p, 0], patch[p, 1]
        if region[0] <= y < region[1] and x0[r] < region[3] and x1[r] > region[2]:
            return True
    return False


@numba.njit(nogil=True, cache=True)
def sieve_round(labels, top, out, out_at, eight, small, cap, place, core, region, scratch):  # pragma: no cover - compiled
    """One round, from ``labels`` (classes 0..top, at ``place`` = (row, column) in the raster)
    into ``out`` (a copy of its part from ``out_at`` = (y, x) on), deciding the small patches
    with a pixel in ``region`` (the others' results are not needed): returns (patches merged, of
    them those whose first pixel is in ``core``; both (y0, y1, x0, x1)). ``scratch``: arrays to
    hold the runs (x0, x1 and parent int32, class uint8), grown if short."""
    first, x0, x1, cls = _runs(labels, scratch[0], scratch[1], scratch[3])
    cells = _cells(labels.shape, top, place, first, x0, x1, cls)
    comp, sizes = _components(eight, first, x0, x1, cls, scratch[2])
    start, pairs = _small_runs(first, comp, sizes, small)
    contacts = np.zeros(256, np.int64)
    biggest = np.zeros(256, np.int64)
    touched = np.zeros(256, np.int64)
    merged = in_core = 0
    for c in range(len(sizes)):
        if start[c + 1] == start[c]:
            continue  # a large patch
        patch = pairs[start[c] : start[c + 1]]
        if not _meets(patch, x0, x1, region):
            continue  # its result is not needed
        winner, size = _best_class(labels.shape, (first, x0, x1, cls), comp, sizes, patch, eight, cap, cells, contacts, biggest, touched)
        if size < small:
            continue  # no large neighbour (yet)
        for p in range(len(patch)):
            y, r = patch[p, 0], patch[p, 1]
            row, left, right = y - out_at[0], max(x0[r] - out_at[1], 0), min(x1[r] - out_at[1], out.shape[1])
            if 0 <= row < out.shape[0] and left < right:
                out[row, left:right] = winner
        merged += 1
        y, x = patch[0, 0], x0[patch[0, 1]]
        if core[0] <= y < core[1] and core[2] <= x < core[3]:
            in_core += 1
    return merged, in_core
