"""The sieve's round, for ``algo/cleanup.py``, which states the rule and why one round's result is
the same on any window holding the halo: each small patch that reaches the region asked for
looks at its neighbours, as runs (``algo/patches.py``), and takes the best one's class. Labels
are uint8 (y, x), 0 = nodata."""

from __future__ import annotations

import numba
import numpy as np

from pipeline.algo.patches import (
    components,
    edge_pairs,
    grown,
    in_box,
    join_box,
    runs,
)


# ``_neighbours`` and its helpers are inlined into ``sieve_round``'s loop over the patches: a call
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
def _at_cap(run, row, size, cap, capped, n_capped):  # pragma: no cover - compiled
    """Keep a neighbouring run of a patch at the cap as (run, row) in ``capped``: the patches
    between which the pixels in the tie-break box decide."""
    capped[n_capped, 0], capped[n_capped, 1] = run, row  # kept only if at the cap
    return n_capped + (size == cap)


@numba.njit(nogil=True, cache=True, inline="always")
def _neighbours(shape, runs, comp, sizes, patch, eight, cap, contacts, biggest, touched, capped):  # pragma: no cover - compiled
    """For one small patch (its runs, as (row, run) pairs in row-major order), per neighbouring
    class: its contacts and the largest capped size of a patch of it touching the patch, the
    classes touched (``touched``, returns how many) and the touching runs at the cap
    (``capped``, returns how many). Its neighbours are runs too: the runs just before and after
    each of its runs, and the runs of the rows above and below that overlap it (one column
    further when 8-connected); the patch's own class is met there as the patch itself."""
    height, width = shape
    first, x0, x1, cls = runs
    slack = 1 if eight else 0
    n_touched, n_capped, n = 0, 0, len(patch)
    p, above = 0, -1  # above: the patch's first run in the row above this row's, if any
    while p < n:  # the patch's runs in row y: p..q - 1
        y = patch[p, 0]
        q = p
        while q < n and patch[q, 0] == y:
            q += 1
        for s in range(p, q):
            r = patch[s, 1]
            a, b = x0[r], x1[r]
            for t in (r - 1, r + 1):  # in its row: a run that touches it (no nodata between) has another class
                if first[y] <= t < first[y + 1] and (x1[t] == a or x0[t] == b):
                    size = sizes[comp[t]]
                    n_touched = _touch(cls[t], size, 1, contacts, biggest, touched, n_touched)
                    n_capped = _at_cap(t, y, size, cap, capped, n_capped)
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
                    n_touched = _touch(cls[u], size, pairs, contacts, biggest, touched, n_touched)
                    n_capped = _at_cap(u, yy, size, cap, capped, n_capped)
                    u += 1
        above, p = patch[p, 1], q
    return n_touched, n_capped


@numba.njit(nogil=True, cache=True, inline="always")
def _pick(own, contacts, biggest, boxed, touched, n_touched):  # pragma: no cover - compiled
    """The touched class other than ``own`` maximising (largest capped size, at the cap its
    pixels in the tie-break box (``boxed``), contacts, -class), and that capped size; resets the
    counts for the next patch."""
    winner, size, near, most = 0, 0, -1, 0
    for t in range(n_touched):
        c = touched[t]
        key = (biggest[c], boxed[c], contacts[c], -c)
        if c != own and key > (size, near, most, -winner):
            winner, size, near, most = c, biggest[c], boxed[c], contacts[c]
        contacts[c] = 0  # reset for the next patch
        biggest[c] = 0
        boxed[c] = 0
    return winner, size


@numba.njit(nogil=True, cache=True, inline="always")
def _classes_at_cap(own, cap, biggest, touched, n_touched):  # pragma: no cover - compiled
    count = 0
    for t in range(n_touched):
        count += touched[t] != own and biggest[touched[t]] == cap
    return count


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


@numba.njit(nogil=True, cache=True, inline="always")
def _merge(patch, winner, runs, part_at, out, out_at, core, changed):  # pragma: no cover - compiled
    """Write ``winner`` over the patch's pixels in ``out``, add its pixels in ``core`` to
    ``changed`` (by their class before in row 0, after in row 1); returns whether its first pixel
    is in ``core``."""
    first, x0, x1, cls = runs
    for p in range(len(patch)):
        y, r = patch[p, 0] + part_at[0], patch[p, 1]
        a, b = x0[r] + part_at[1], x1[r] + part_at[1]
        left, right = max(a - out_at[1], 0), min(b - out_at[1], out.shape[1])
        if 0 <= y - out_at[0] < out.shape[0] and left < right:
            out[y - out_at[0], left:right] = winner
        if core[0] <= y < core[1]:
            inside = max(0, min(b, core[3]) - max(a, core[2]))
            changed[0, cls[r]] += inside
            changed[1, winner] += inside
    y, x = patch[0, 0] + part_at[0], x0[patch[0, 1]] + part_at[1]
    return core[0] <= y < core[1] and core[2] <= x < core[3]


@numba.njit(nogil=True, cache=True)
def _part(shape, region, place, grow, block):  # pragma: no cover - compiled
    """The part of the labels a round needs: ``region`` and ``grow`` pixels around it, cut at
    the array's edges, as (y0, y1, x0, x1); its offset into its first block of the raster's
    grid (``place``: the array's first pixel in the raster), and the blocks it overlaps."""
    height, width = shape
    py0, py1, px0, px1 = max(0, region[0] - grow), min(height, region[1] + grow), max(0, region[2] - grow), min(width, region[3] + grow)
    lead = ((place[0] + py0) % block, (place[1] + px0) % block)
    blocks = ((py1 - py0 + lead[0] + block - 1) // block, (px1 - px0 + lead[1] + block - 1) // block)
    return (py0, py1, px0, px1), lead, blocks


@numba.njit(nogil=True, cache=True)
def sieve_round(labels, top, out, out_at, eight, small, cap, block, place, core, region, scratch, changed):  # pragma: no cover - compiled
    """One round, from ``labels`` (classes 0..top, at ``place`` = (row, column) in the raster)
    into ``out`` (a copy of its part from ``out_at`` = (y, x) on), deciding the small patches
    with a pixel in ``region`` (the others' results are not needed): returns (patches merged, of
    them those whose first pixel is in ``core``; both (y0, y1, x0, x1)), and adds the pixels it
    changes in ``core`` to ``changed``, by their class before (row 0) and after (row 1).
    ``block``: the side of the raster's blocks whose 3 x 3 around a patch's first pixel is its
    tie-break box. ``scratch``: arrays to hold the runs (x0, x1, parent and next run int32,
    class uint8, piece int32), grown if short.

    Runs and patches are built on the part of ``labels`` that those patches, their neighbours
    and boxes lie in (the region and small - 2 + 2 * block pixels around it, which the capped
    sizes need too). A patch with two or more neighbouring classes at the cap waits, then is
    decided box by box (``_decide_waiting``)."""
    (py0, py1, px0, px1), lead, blocks = _part(labels.shape, region, place, small - 2 + 2 * block, block)
    part = labels[py0:py1, px0:px1]
    first, x0, x1, cls = runs_ = runs(part, scratch[0], scratch[1], scratch[3], block, lead[1])  # cut at the blocks' edges
    comp, sizes, head, after, piece, piece_sizes, crossings = components(eight, runs_, scratch[2], scratch[4], scratch[5], (block, lead[0], lead[1], blocks[0], blocks[1]))
    np.minimum(sizes, cap, sizes)
    contacts, biggest, boxed, touched = np.zeros((4, 256), np.int64)  # per class, reset after each patch
    runs_of = np.empty((small, 2), np.int32)  # a small patch's runs as (row, run) pairs
    capped = np.empty((8 * small + 16, 2), np.int32)  # its neighbours' runs at the cap: at most 2 per pixel and 6 per run, and a spare
    waiting, n_waiting = np.empty((len(sizes), 5), np.int64), 0  # (component, first row, box, ends of its looks)
    looks = (np.empty((1024, 3), np.int64), np.empty((1024, 2), np.int32), 0, 0)  # what the waiting patches saw (``_kept``)
    ry0, ry1, rx0, rx1 = region[0] - py0, region[1] - py0, region[2] - px0, region[3] - px0
    merged = in_core = first_row = 0
    for c in range(len(sizes)):
        if sizes[c] >= small:
            continue  # large
        r = head[c]
        while first[first_row + 1] <= r:  # components come in the order of their first runs
            first_row += 1
        if first_row < ry0 - (small - 2) or first_row >= ry1:
            continue  # it cannot reach the region: it spans fewer than small rows
        n, meets = _patch_runs(r, first_row, first, x0, x1, after, (ry0, ry1, rx0, rx1), runs_of)
        if not meets:
            continue  # its result is not needed
        patch = runs_of[:n]
        n_touched, n_capped = _neighbours(part.shape, runs_, comp, sizes, patch, eight, cap, contacts, biggest, touched, capped)
        own = cls[r]
        if _classes_at_cap(own, cap, biggest, touched, n_touched) > 1:
            box = (first_row + lead[0]) // block * blocks[1] + (x0[r] + lead[1]) // block  # the part's block of its first pixel
            looks = _kept(own, (contacts, biggest, touched, n_touched), cls, piece, capped[:n_capped], looks)  # and resets the counts
            waiting[n_waiting, 0], waiting[n_waiting, 1], waiting[n_waiting, 2], waiting[n_waiting, 3], waiting[n_waiting, 4] = c, first_row, box, looks[2], looks[3]
            n_waiting += 1
            continue
        winner, size = _pick(own, contacts, biggest, boxed, touched, n_touched)
        if size >= small:  # else no large neighbour (yet)
            merged += 1
            in_core += _merge(patch, winner, runs_, (py0, px0), out, out_at, core, changed)
    if n_waiting == 0:
        return merged, in_core
    waited = _decide_waiting(
        part, runs_, (comp, sizes, head, after), (piece, piece_sizes, crossings), waiting[:n_waiting], (cap, block, blocks, lead),
        ((py0, px0), (ry0, ry1, rx0, rx1)), (runs_of, looks[0], looks[1], contacts, biggest, boxed, touched), (out, out_at, core, changed),
    )
    return merged + waited[0], in_core + waited[1]


@numba.njit(nogil=True, cache=True)
def _kept(own, counts, cls, piece, capped, looks):  # pragma: no cover - compiled
    """Append what a waiting patch saw to ``looks`` (its neighbouring classes as (class, capped
    size, contacts); of its neighbouring runs at the cap of another class, one (run, row) per
    piece: a piece's pixels in a box are the same from each of its runs), grown if short, and
    reset the counts for the next patch."""
    contacts, biggest, touched, n_touched = counts
    classes, pieces, n_classes, n_pieces = looks
    if n_classes + n_touched > len(classes) or n_pieces + len(capped) > len(pieces):
        classes, pieces = grown(classes, 2 * (n_classes + n_touched)), grown(pieces, 2 * (n_pieces + len(capped)))
    for t in range(n_touched):
        c = touched[t]
        classes[n_classes, 0], classes[n_classes, 1], classes[n_classes, 2] = c, biggest[c], contacts[c]
        n_classes += 1
        contacts[c], biggest[c] = 0, 0  # for the next patch
    start = n_pieces
    for j in range(len(capped)):
        t = capped[j, 0]
        if cls[t] == own:
            continue
        new = True
        for e in range(start, n_pieces):  # a few pieces per patch
            new &= piece[pieces[e, 0]] != piece[t]
        if new:
            pieces[n_pieces] = capped[j]
            n_pieces += 1
    return classes, pieces, n_classes, n_pieces


@numba.njit(nogil=True, cache=True)
def _decide_waiting(part, runs_, patches, pieces, waiting, rule, places, counts, output):  # pragma: no cover - compiled
    """Decide the small patches that wait for their tie-break box (``sieve_round``), box by box,
    from what they saw (``_kept``): returns (patches merged, of them those whose first pixel is
    in the core)."""
    first, x0, x1, cls = runs_
    comp, sizes, head, after = patches
    piece, piece_sizes, crossings = pieces
    cap, block, blocks, lead = rule
    part_at, region = places
    runs_of, classes, seen, contacts, biggest, boxed, touched = counts
    out, out_at, core, changed = output
    height, width = part.shape
    # Only the patches at the cap are counted in a box: the pairs of their pieces only.
    pairs, firsts = edge_pairs(crossings, piece, comp, sizes, cap, 3 * blocks[0] * blocks[1])
    box = (0, np.zeros(len(piece_sizes), np.int64), np.empty(len(piece_sizes), np.int32), np.empty(len(piece_sizes), np.int64), piece_sizes)
    merged = in_core = 0
    for i in np.argsort(waiting[:, 2], kind="mergesort"):
        c, row, at = waiting[i, 0], waiting[i, 1], waiting[i, 2]
        classes_from, pieces_from = (waiting[i - 1, 3], waiting[i - 1, 4]) if i else (0, 0)
        by, bx = at // blocks[1], at % blocks[1]  # the part's block of the patch's first pixel
        area = (
            max(0, (by - 1) * block - lead[0]), min(height, (by + 2) * block - lead[0]),
            max(0, (bx - 1) * block - lead[1]), min(width, (bx + 2) * block - lead[1]),
        )
        if at + 1 != box[0]:  # a new box: its pieces joined where its blocks meet
            box = (at + 1, box[1], box[2], box[3], box[4])
            join_box(pairs, firsts, blocks, by, bx, box)
        n_touched = 0
        for e in range(classes_from, waiting[i, 3]):
            touched[n_touched], biggest[classes[e, 0]], contacts[classes[e, 0]] = classes[e, 0], classes[e, 1], classes[e, 2]
            n_touched += 1
        for e in range(pieces_from, waiting[i, 4]):
            t = seen[e, 0]
            boxed[cls[t]] = max(boxed[cls[t]], in_box(x0, piece, t, seen[e, 1], area, box))
        winner, _ = _pick(cls[head[c]], contacts, biggest, boxed, touched, n_touched)
        n, _ = _patch_runs(head[c], row, first, x0, x1, after, region, runs_of)
        merged += 1
        in_core += _merge(runs_of[:n], winner, runs_, part_at, out, out_at, core, changed)
    return merged, in_core
