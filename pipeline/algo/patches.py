"""The patches of a label map for the sieve (``algo/sieve.py``): runs of equal class along rows,
patches as union-find on runs with their sizes, and a patch's pixels within a box. Labels are
uint8 (y, x), 0 = nodata."""

from __future__ import annotations

import numba
import numpy as np

from pipeline.algo.kernel import NODATA_LABEL


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
def runs(labels, x0, x1, cls, side=0, lead_x=0):  # pragma: no cover - compiled
    """The runs of equal valid class along each row: (first run of each row (height + 1,), run
    start x, run end x (exclusive), run class), cut where the raster's blocks of ``side`` begin
    if a side is given (``lead_x``: the array's column offset into its first block). Components
    are unions of runs: far fewer than pixels. One pass into ``x0, x1, cls``, grown as needed
    (labels after a majority filter have a run per ~10 pixels, speckled ones a run per ~5).

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
            x0, x1, cls = grown(x0, size), grown(x1, size), grown(cls, size)
        row = labels[y]
        starts[0] = row[0] != NODATA_LABEL
        for x in range(1, width):
            starts[x] = row[x] != row[x - 1]
        if side:  # a block's first column starts a run too
            for x in range(side - lead_x, width, side):
                starts[x] = 1
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
def grown(values, size):  # pragma: no cover - compiled
    """``values`` in a longer array of ``size`` rows (its first rows)."""
    bigger = np.empty((size,) + values.shape[1:], values.dtype)
    bigger[: len(values)] = values
    return bigger


@numba.njit(nogil=True, cache=True)
def components(eight, runs, parent, after, piece, blocks):  # pragma: no cover - compiled
    """Connected components of equal valid class, and their *pieces*: their parts connected
    within one block of the raster's grid (``blocks`` = (side, the array's offset (y, x) into
    its first block, its rows and columns of blocks); the runs are cut at the blocks' column
    edges, ``runs(..., side, lead_x)``). Components are ids 0.. in the order of their first run
    (row-major). Returns (component of each run, sizes, each component's first run, each run's
    next run in its component (-1 after the last), in ``after`` if long enough; each run's piece,
    in ``piece``, the pieces' sizes; the pairs of runs that touch across a block edge, with
    their segment (``edge_pairs``)).

    Union-find on runs, in two steps: first only what touches within a block (the pieces), while
    the pairs across an edge are listed; then those pairs are joined too (the components). One
    pass over the runs gives both, instead of a second union-find on the cut runs of the patches
    at the cap (26 ms a window, measured)."""
    first, x0, x1, cls = runs
    height, n = len(first) - 1, len(x0)
    side, lead_y, lead_x, rows, columns = blocks
    parent = parent[:n] if len(parent) >= n else np.empty(n, np.int32)  # a root is its set's smallest run
    for r in range(n):
        parent[r] = r
    segment, one, other = _crossing_arrays(first, lead_y, blocks)
    crossings = 0
    slack = 1 if eight else 0  # 8-connected runs also touch diagonally, one column further
    for y in range(height):
        v = (lead_y + y) // side  # the row of blocks
        for j in range(first[y] + 1, first[y + 1]):  # a run cut at a column edge and what continues it
            if x1[j - 1] == x0[j] and cls[j - 1] == cls[j]:
                crossings = _crossing(segment, one, other, crossings, v * columns + (lead_x + x0[j]) // side, j - 1, j)
        if y == 0:
            continue
        edge_row = (lead_y + y) % side == 0  # across a row edge: a row edge's segment, or a corner's
        i, above_end = first[y - 1], first[y]
        for j in range(first[y], first[y + 1]):
            while i < above_end and x1[i] + slack <= x0[j]:
                i += 1  # runs above that end before this one cannot touch the next either
            t, root = i, j  # j's root: j is new, so only this loop changes it
            while t < above_end and x0[t] < x1[j] + slack:
                if cls[t] == cls[j]:
                    # Runs overlapping in x are in one column of blocks; only a diagonal can cross
                    # a column edge (a division only then).
                    edge = x0[j] if x1[t] == x0[j] else (x0[t] if x0[t] == x1[j] else -1)
                    if edge >= 0 and (lead_x + edge) % side != 0:
                        edge = -1
                    if edge_row or edge >= 0:
                        kind = (2 * rows if edge >= 0 else rows) if edge_row else 0
                        column = (lead_x + (edge if edge >= 0 else x0[j])) // side
                        crossings = _crossing(segment, one, other, crossings, (kind + v) * columns + column, t, j)
                    else:
                        root = _union(parent, t, root)
                t += 1
            parent[j] = root
    piece = piece[:n] if len(piece) >= n else np.empty(n, np.int32)
    piece_sizes = _pieces(parent, x0, x1, piece)
    for m in range(crossings):
        _union(parent, one[m], _root(parent, other[m]))
    comp, sizes, head, after = _numbered(parent, x0, x1, after)
    return comp, sizes, head, after, piece, piece_sizes, (segment[:crossings], one[:crossings], other[:crossings])


@numba.njit(nogil=True, cache=True, inline="always")
def _union(parent, t, root):  # pragma: no cover - compiled
    """Join run t's set with the set whose root is ``root``; returns the joined set's root (the
    smaller)."""
    other = _root(parent, t)
    if other < root:
        parent[root] = other
        return other
    if root < other:
        parent[other] = root
    return root


@numba.njit(nogil=True, cache=True)
def _crossing_arrays(first, lead_y, blocks):  # pragma: no cover - compiled
    """Room for the pairs that touch across a block edge: per row at most 3 per column edge (the
    cut run's continuation, two diagonals), per row edge 2 per run of its two rows."""
    side, _, _, rows, columns = blocks
    height = len(first) - 1
    bound = 3 * columns * height
    for v in range(1, rows):
        edge_row = v * side - lead_y
        bound += 2 * (first[edge_row + 1] - first[edge_row - 1])
    return np.empty(bound, np.int32), np.empty(bound, np.int32), np.empty(bound, np.int32)


@numba.njit(nogil=True, cache=True, inline="always")
def _crossing(segment, one, other, count, seg, a, b):  # pragma: no cover - compiled
    segment[count], one[count], other[count] = seg, a, b
    return count + 1


@numba.njit(nogil=True, cache=True)
def _pieces(parent, x0, x1, piece):  # pragma: no cover - compiled
    """Each run's set as ids 0.. in the order of their first runs (``parent``: a union-find whose
    roots are their sets' smallest runs), into ``piece``; returns the sets' sizes."""
    count = 0
    for r in range(len(x0)):
        if parent[r] == r:
            piece[r] = count
            count += 1
        else:  # parents come first, so their set is already known; it is r's
            piece[r] = piece[parent[r]]
    sizes = np.zeros(count, np.int32)
    for r in range(len(x0)):
        sizes[piece[r]] += x1[r] - x0[r]
    return sizes


@numba.njit(nogil=True, cache=True)
def _numbered(parent, x0, x1, after):  # pragma: no cover - compiled
    """The components of a union-find on runs (``components``), numbered in place of ``parent``."""
    n = len(x0)
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
def edge_pairs(crossings, piece, comp, sizes, cap, segments):  # pragma: no cover - compiled
    """The pairs of pieces that touch across a block edge or corner (``crossings``, from
    ``components``), of the patches at the ``cap`` (the runs' ``comp``, capped ``sizes``; no
    array of them: 3 MB a window), sorted by segment, and each segment's first pair; a segment's
    repeats among its last 4 pairs dropped (an edge meets the same few patches row after row, in
    turns). ``segments``: 3 rows columns. A segment is where two blocks meet: ``v * columns +
    c``, the left edge of the block in row of blocks v and column c; ``(rows + h) * columns +
    c``, the top edge of the block in row h and column c; ``(2 rows + h) * columns + c``, the top
    left corner of that block, where 8-connected pixels touch diagonally (the array's blocks,
    numbered from 0 at its first pixel's). A pair is joined in a box only if the box holds both
    its blocks."""
    across, runs_one, runs_other = crossings
    count, total = 0, len(across)
    segment, one, other = np.empty(total, np.int64), np.empty(total, np.int32), np.empty(total, np.int32)
    last = np.full((segments, 4), -1, np.int64)  # per segment, its last pairs (smaller * 2**31 + larger)
    for m in range(total):
        if sizes[comp[runs_one[m]]] == cap:  # the two runs are of one component
            count = _pair(segment, one, other, last, count, across[m], piece[runs_one[m]], piece[runs_other[m]])
    order = np.argsort(segment[:count], kind="mergesort")
    firsts = np.searchsorted(segment[:count][order], np.arange(segments + 1))
    return (one[:count][order], other[:count][order]), firsts


@numba.njit(nogil=True, cache=True, inline="always")
def _pair(segment, one, other, last, count, seg, a, b):  # pragma: no cover - compiled
    """Keep the pair (a, b) for ``seg`` unless it is one of the segment's last 4 (an edge meets
    the same few patches row after row, in turns)."""
    key = np.int64(min(a, b)) * 2147483648 + max(a, b)
    for k in range(4):
        if last[seg, k] == key:
            return count
    for k in range(3, 0, -1):
        last[seg, k] = last[seg, k - 1]
    last[seg, 0] = key
    segment[count], one[count], other[count] = seg, a, b
    return count + 1


@numba.njit(nogil=True, cache=True, inline="always")
def _box_root(box, p):  # pragma: no cover - compiled
    """The root of piece p in the box's union-find (``box``: tag, stamp, parent, size, the
    pieces' sizes), set up for p when the box meets it first."""
    tag, stamp, parent, size, sizes = box
    if stamp[p] != tag:
        stamp[p], parent[p], size[p] = tag, p, sizes[p]
        return p
    return _root(parent, p)


@numba.njit(nogil=True, cache=True, inline="always")
def _join(box, a, b):  # pragma: no cover - compiled
    ra, rb = _box_root(box, a), _box_root(box, b)
    if ra != rb:
        parent, size = box[2], box[3]
        parent[rb] = ra
        size[ra] += size[rb]


@numba.njit(nogil=True, cache=True)
def join_box(pairs, firsts, blocks, block_row, block_column, box):  # pragma: no cover - compiled
    """Join the pieces that touch where the blocks of the box of 3 x 3 blocks around the array's
    block (``block_row``, ``block_column``) meet (``block_pieces``; ``blocks``: its rows and
    columns of blocks): afterwards a piece's root in ``box`` holds the pixels connected to it
    within the box."""
    rows, columns = blocks
    one, other = pairs
    r0, r1, c0, c1 = max(0, block_row - 1), min(rows, block_row + 2), max(0, block_column - 1), min(columns, block_column + 2)
    for kind, v0, c_0 in ((0, r0, c0 + 1), (1, r0 + 1, c0), (2, r0 + 1, c0 + 1)):  # column edges, row edges, corners
        for v in range(v0, r1):
            for c in range(c_0, c1):
                seg = (kind * rows + v) * columns + c
                for k in range(firsts[seg], firsts[seg + 1]):
                    _join(box, one[k], other[k])


@numba.njit(nogil=True, cache=True, inline="always")
def in_box(x0, piece, run, row, area, box):  # pragma: no cover - compiled
    """The pixels connected within the box (``join_box``) to ``run`` (in ``row``), 0 if it lies
    outside: a run cut at the blocks' edges lies in one block, so wholly in the box or not."""
    y0, y1, bx0, bx1 = area
    if not (y0 <= row < y1 and bx0 <= x0[run] < bx1):
        return 0
    return box[3][_box_root(box, piece[run])]
