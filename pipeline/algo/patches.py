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
def components(eight, first, x0, x1, cls, parent, after, blocks=(0, 0, 0)):  # pragma: no cover - compiled
    """Connected components of equal valid class, as ids 0.. of the runs in order of their first
    pixel (row-major); returns (component of each run, sizes, each component's first run, each
    run's next run in its component (-1 after the last), in ``after`` if long enough).
    ``blocks`` = (side, the array's offset (y, x) into its first block): with a side,
    components within each block of the raster's grid (the runs must not cross a block's column
    edge)."""
    height = len(first) - 1
    n = len(x0)
    parent = parent[:n] if len(parent) >= n else np.empty(n, np.int32)  # a root is its component's smallest run
    for r in range(n):
        parent[r] = r
    slack = 1 if eight else 0  # 8-connected runs also touch diagonally, one column further
    side, lead_y, lead_x = blocks
    for y in range(1, height):
        if side and (lead_y + y) % side == 0:
            continue  # the first row of a row of blocks
        i, above_end = first[y - 1], first[y]
        for j in range(first[y], first[y + 1]):
            while i < above_end and x1[i] + slack <= x0[j]:
                i += 1  # runs above that end before this one cannot touch the next either
            t, root = i, j  # j's root: j is new, so only this loop changes it
            while t < above_end and x0[t] < x1[j] + slack:
                # Runs overlapping in x are in one column of blocks; only a diagonal can cross an edge.
                across = (x1[t] == x0[j] and (lead_x + x0[j]) % side == 0) or (x0[t] == x1[j] and (lead_x + x0[t]) % side == 0) if side else False
                if cls[t] == cls[j] and not across:
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
def block_pieces(eight, runs, kept, side, lead, blocks):  # pragma: no cover - compiled
    """The runs for which ``kept`` is true, cut at the column edges of the raster's ``side`` x
    ``side`` blocks (``lead``: the array's offset (y, x) into its first block; ``blocks``: the
    rows and columns of blocks it overlaps), their components
    within each block (the *pieces*), and the pairs of pieces that touch across each edge between
    two blocks (the runs must be whole components: a kept run touches no other of its class):
    (cut runs (first, x0, x1, class), each run's first cut run, each cut run's piece, the
    pieces' sizes, the pairs (piece, piece) sorted by segment, each segment's first pair). A
    segment is where two blocks meet: ``v * columns + c``, the left
    edge of the block in row of blocks v and column c; ``(rows + h) * columns + c``, the top
    edge of the block in row h and column c; ``(2 rows + h) * columns + c``, the top left corner
    of that block, where 8-connected pixels touch diagonally (the array's blocks, numbered from 0
    at its first pixel's). A pair is joined in a box only if the box holds both its blocks."""
    cut, cut_column, start = _cut_runs(runs, kept, side, lead[1], blocks[1])
    piece, sizes, _, _ = components(eight, cut[0], cut[1], cut[2], cut[3], np.empty(0, np.int32), np.empty(0, np.int32), (side, lead[0], lead[1]))
    pairs, firsts = _edge_pairs(eight, cut, cut_column, piece, side, lead, blocks)
    return start, piece, sizes, pairs, firsts


@numba.njit(nogil=True, cache=True)
def _cut_runs(runs, kept, side, lead_x, columns):  # pragma: no cover - compiled
    """The kept runs cut at the blocks' column edges (``lead_x``: the array's offset into its
    first block): (cut runs (first, x0, x1, class), each one's column of blocks, each run's
    first cut run), without a division per run."""
    first, x0, x1, cls = runs
    height, n = len(first) - 1, len(x0)
    # A kept run is cut once per column edge it crosses, so a row's cut runs are at most its
    # kept runs and the edges between its ``columns`` of blocks (counting them first cost 40 %).
    total = np.count_nonzero(kept) + height * (columns - 1)
    cut_first = np.empty(height + 1, np.int64)
    cut_x0, cut_x1, cut_cls = np.empty(total, np.int32), np.empty(total, np.int32), np.empty(total, np.uint8)
    cut_column = np.empty(total, np.int32)
    start = np.empty(n, np.int32)
    m = 0
    for y in range(height):
        cut_first[y] = m
        edge, column = side - lead_x, 0
        for r in range(first[y], first[y + 1]):
            start[r] = m
            if not kept[r]:
                continue
            a = x0[r]
            while edge <= a:
                edge += side
                column += 1
            while True:
                b = min(x1[r], edge)
                cut_x0[m], cut_x1[m], cut_cls[m], cut_column[m] = a, b, cls[r], column
                m += 1
                if b == x1[r]:
                    break
                a = b
                edge += side
                column += 1
    cut_first[height] = m
    return (cut_first, cut_x0[:m], cut_x1[:m], cut_cls[:m]), cut_column[:m], start


@numba.njit(nogil=True, cache=True)
def _edge_pairs(eight, cut, cut_column, piece, side, lead, blocks):  # pragma: no cover - compiled
    """The pairs of pieces that touch across a block edge or corner (``block_pieces``), sorted
    by segment, and each segment's first pair; each segment's repeats among its last 4 pairs
    dropped (an edge meets the same few patches row after row, in turns)."""
    first, x0, x1, cls = cut
    height = len(first) - 1
    rows, columns = blocks
    bound = 3 * (columns + 1) * height  # at most 3 per column edge and row, 2 per run in an edge row
    for v in range(1, rows):
        edge_row = v * side - lead[0]
        bound += 2 * (first[edge_row + 1] - first[edge_row - 1])
    segment, one, other = np.empty(bound, np.int64), np.empty(bound, np.int32), np.empty(bound, np.int32)
    last = np.full((3 * rows * columns, 4), -1, np.int64)  # per segment, its last pairs (smaller * 2**31 + larger)
    count = 0
    left = np.full(columns + 1, -1, np.int64)  # per column edge, the cut run ending at it in this row
    right = np.full(columns + 1, -1, np.int64)  # and the one starting at it
    left_above, right_above = np.full(columns + 1, -1, np.int64), np.full(columns + 1, -1, np.int64)
    for y in range(height):
        v = (y + lead[0]) // side
        left[:] = -1
        right[:] = -1
        for t in range(first[y], first[y + 1]):
            c = cut_column[t]
            if x0[t] == c * side - lead[1] and x0[t] > 0:
                right[c] = t
            if x1[t] == (c + 1) * side - lead[1]:
                left[c + 1] = t
        diagonals = eight and (y + lead[0]) % side != 0  # across a row edge too: a corner (below)
        for e in range(1, columns):
            for a, b, diagonal in ((left[e], right[e], False), (left[e], right_above[e], True), (right[e], left_above[e], True)):
                if a >= 0 and b >= 0 and cls[a] == cls[b] and (diagonals or not diagonal):
                    count = _pair(segment, one, other, last, count, v * columns + e, piece[a], piece[b])
        left, left_above = left_above, left
        right, right_above = right_above, right
    slack = 1 if eight else 0
    for v in range(1, rows):  # the row edges: runs above and below that touch, as in ``components``
        edge_row = v * side - lead[0]
        i, above_end = first[edge_row - 1], first[edge_row]
        for j in range(first[edge_row], first[edge_row + 1]):
            while i < above_end and x1[i] + slack <= x0[j]:
                i += 1
            t = i
            while t < above_end and x0[t] < x1[j] + slack:
                if cls[t] == cls[j]:
                    if cut_column[t] != cut_column[j]:  # diagonal across a column edge too
                        seg = (2 * rows + v) * columns + max(cut_column[t], cut_column[j])
                    else:
                        seg = (rows + v) * columns + cut_column[j]
                    count = _pair(segment, one, other, last, count, seg, piece[t], piece[j])
                t += 1
    order = np.argsort(segment[:count], kind="mergesort")
    firsts = np.searchsorted(segment[:count][order], np.arange(3 * rows * columns + 1))
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
def in_box(runs, start, piece, run, row, area, side, lead_x, box):  # pragma: no cover - compiled
    """The pixels connected within the box (``join_box``) to the part of ``run`` (in ``row``)
    that lies in it, 0 if none does; ``start``: each run's first cut run (``block_pieces``),
    ``lead_x``: the array's column offset into its first block."""
    first, x0, x1, cls = runs
    y0, y1, bx0, bx1 = area
    a = max(x0[run], bx0)
    if not (y0 <= row < y1 and a < min(x1[run], bx1)):
        return 0
    cut = start[run] + (lead_x + a) // side - (lead_x + x0[run]) // side  # its cut piece holding column a
    return box[3][_box_root(box, piece[cut])]
