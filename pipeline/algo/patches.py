"""The patches of a label map for the sieve (``algo/sieve.py``): runs of equal class along rows,
patches as union-find on runs with their sizes, the cells' counts, and a capped flood fill for
the patches whose size the runs' part of the window does not settle. Labels are uint8 (y, x),
0 = nodata."""

from __future__ import annotations

import numba
import numpy as np

from pipeline.algo.kernel import NODATA_LABEL
from pipeline.algo.majority import BY_CLASS

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


# The index of a 64-bit word's lowest set bit: the bit times a de Bruijn sequence, top 6 bits.
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.array(
    [0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
     63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6],
    np.int64,
)
_BYTES_TO_BITS = np.uint64(0x0102040810204080)  # times 8 bytes of 0 or 1: their bits in the top byte


@numba.njit(nogil=True, cache=True)
def runs(labels, x0, x1, cls):  # pragma: no cover - compiled
    """The runs of equal valid class along each row: (first run of each row (height + 1,), run
    start x, run end x (exclusive), run class). Components are unions of runs: far fewer than
    pixels. One pass into ``x0, x1, cls``, grown as needed (labels after a majority filter have a
    run per ~10 pixels, speckled ones a run per ~5).

    A pixel-by-pixel loop takes a branch per pixel, mispredicted at each run's start (7 ms a
    window); here a vectorised pass marks the pixels whose class differs from the one before,
    the marks are packed 64 to a word, and only the marked pixels are visited (2 ms)."""
    height, width = labels.shape
    first = np.zeros(height + 1, np.int64)
    size = len(x0)
    words = (width + 63) // 64
    starts = np.zeros(64 * words, np.uint8)  # 1 where a pixel's class differs from the one before
    eights = starts.view(np.uint64)
    n = 0
    for y in range(height):
        first[y] = n
        if n + width > size:  # room for a whole row of runs
            size = max(2 * size, n + width)
            x0, x1, cls = _grown(x0, size), _grown(x1, size), _grown(cls, size)
        row = labels[y]
        starts[0] = row[0] != NODATA_LABEL
        for x in range(1, width):
            starts[x] = row[x] != row[x - 1]
        for w in range(words):
            marks = np.uint64(0)
            for k in range(8):
                marks |= ((eights[8 * w + k] * _BYTES_TO_BITS) >> np.uint64(56)) << np.uint64(8 * k)
            while marks:
                lowest = marks & (~marks + np.uint64(1))
                marks ^= lowest
                x = 64 * w + _LOWEST_BIT[(lowest * _DE_BRUIJN) >> np.uint64(58)]
                if x > 0 and row[x - 1] != NODATA_LABEL:  # the run before ends here
                    x1[n - 1] = x
                if row[x] != NODATA_LABEL:
                    x0[n] = x
                    cls[n] = row[x]
                    n += 1
        if row[width - 1] != NODATA_LABEL:
            x1[n - 1] = width
    first[height] = n
    return first, x0[:n], x1[:n], cls[:n]


@numba.njit(nogil=True, cache=True)
def _grown(values, size):  # pragma: no cover - compiled
    bigger = np.empty(size, values.dtype)
    bigger[: len(values)] = values
    return bigger


@numba.njit(nogil=True, cache=True)
def components(eight, first, x0, x1, cls, parent, after):  # pragma: no cover - compiled
    """Connected components of equal valid class, as ids 0.. of the runs in order of their first
    pixel (row-major); returns (component of each run, sizes, each component's first run, each
    run's next run in its component (-1 after the last), in ``after`` if long enough)."""
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
    count = 0
    for r in range(n):
        count += parent[r] == r
    sizes = np.zeros(count, np.int32)
    head = np.empty(count, np.int32)
    tail = np.empty(count, np.int32)
    after = after[:n] if len(after) >= n else np.empty(n, np.int32)
    comp, count = parent, 0  # each run's parent becomes its component, in place
    for r in range(n):
        if parent[r] == r:  # the first run of its component: a new id
            c = count
            count += 1
            head[c] = r
        else:  # parents come first, so their component is already known; it is r's
            c = comp[parent[r]]
            after[tail[c]] = r
        comp[r] = c
        tail[c] = r
        after[r] = -1
        sizes[c] += x1[r] - x0[r]
    return comp, sizes, head, after


@numba.njit(nogil=True, cache=True)
def cap_sizes(first, x0, x1, comp, sizes, cap, width, open_edges):  # pragma: no cover - compiled
    """Sizes capped at ``cap``, in place; a component below the cap with a pixel on an edge of
    the runs' part where the window goes on (``open_edges``: top, bottom, left, right) may be
    larger in the window: its size becomes minus its pixels in the part (``flooded`` counts it)."""
    height = len(first) - 1
    for c in range(len(sizes)):
        sizes[c] = min(sizes[c], cap)
    for y in range(height):
        lo, hi = first[y], first[y + 1]
        if (y == 0 and open_edges[0]) or (y == height - 1 and open_edges[1]):
            for r in range(lo, hi):
                _open(sizes, comp[r], cap)
        elif lo < hi:  # only a row's first and last runs can be on a side edge
            if open_edges[2] and x0[lo] == 0:
                _open(sizes, comp[lo], cap)
            if open_edges[3] and x1[hi - 1] == width:
                _open(sizes, comp[hi - 1], cap)


@numba.njit(nogil=True, cache=True)
def _open(sizes, c, cap):  # pragma: no cover - compiled
    if 0 < sizes[c] < cap:
        sizes[c] = -sizes[c]


@numba.njit(nogil=True, cache=True)
def flooded(labels, y, x, eight, cap, seen, queue):  # pragma: no cover - compiled
    """min(pixels of the component of ``labels[y, x]``, cap), by a flood fill that stops at
    ``cap`` pixels. ``seen``: one bit per pixel of ``labels``, all clear (and left clear);
    ``queue``: room for cap + 8 pixel indices."""
    height, width = labels.shape
    c = labels[y, x]
    start = y * width + x
    seen[start >> 3] |= np.uint8(1 << (start & 7))
    queue[0] = start
    n, head = 1, 0
    while head < n and n < cap:
        p = queue[head]
        head += 1
        py, px = p // width, p % width
        for qy in range(max(0, py - 1), min(height, py + 2)):
            for qx in range(max(0, px - 1), min(width, px + 2)):
                if (qy != py and qx != px and not eight) or labels[qy, qx] != c:
                    continue
                q = qy * width + qx
                bit = np.uint8(1 << (q & 7))
                if seen[q >> 3] & bit == 0:
                    seen[q >> 3] |= bit
                    queue[n] = q
                    n += 1
    for i in range(n):
        seen[queue[i] >> 3] = 0
    return min(n, cap)


_BYTE_SUM = np.uint64(0x0101010101010101)  # times 8 bytes: their sum in the top byte (if under 256)


@numba.njit(nogil=True, cache=True)
def cells(labels, top, place, first, x0, x1, cls):  # pragma: no cover - compiled
    """Per class 0..top, the pixels in the CELL x CELL cells of the raster's grid that
    ``labels`` (at ``place`` in the raster; its runs ``first, x0, x1, cls``) overlaps, as an
    integral image: (integral (top + 1, rows + 1, cols + 1), the array's offset in its first
    cell (y, x)). Up to BY_CLASS classes, per class a vectorised count of its pixels per column
    over a row of cells, summed 8 columns per multiply (1 ms a window); above, from the runs (a
    tenth as many as the pixels, but a loop with branches: 3.6 ms)."""
    height, width = labels.shape
    shift = (place[0] % CELL, place[1] % CELL)
    rows, cols = (height + shift[0] + CELL - 1) // CELL, (width + shift[1] + CELL - 1) // CELL
    integral = np.zeros((top + 1, rows + 1, cols + 1), np.int32)
    if top <= BY_CLASS:
        column = np.zeros((top + 1, cols * CELL), np.uint8)  # per class, its pixels in each column of the row of cells
        eights = column.reshape(-1).view(np.uint64).reshape(top + 1, cols * CELL // 8)
        for y in range(height):
            row = labels[y]
            for c in range(1, top + 1):
                col, klass = column[c, shift[1] : shift[1] + width], np.uint8(c)
                for x in range(width):
                    col[x] += row[x] == klass
            if (y + shift[0] + 1) % CELL == 0 or y == height - 1:  # the row of cells is complete
                i = (y + shift[0]) // CELL + 1
                for c in range(1, top + 1):
                    words = eights[c]
                    for j in range(cols):
                        integral[c, i, j + 1] = ((words[2 * j] * _BYTE_SUM) >> np.uint64(56)) + ((words[2 * j + 1] * _BYTE_SUM) >> np.uint64(56))
                column[:] = 0
    else:
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
