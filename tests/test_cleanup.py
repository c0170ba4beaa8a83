"""The cleanup kernel (``algo/cleanup.py``): the majority and sieve rules on hand-made arrays, an
independent slow oracle of the same rules, exactness chunk by chunk with ``Cleanup.halo`` of
context (and not with less), and agreement with GDAL's sieve."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio.features
from scipy import ndimage

from pipeline.algo import cleanup as module
from pipeline.algo.cleanup import Cleanup, clean, clean_window
from pipeline.algo.majority import BY_CLASS
from pipeline.algo.patches import runs


def majority_oracle(labels: np.ndarray, side: int) -> np.ndarray:
    r = side // 2
    out = labels.copy()
    for y, x in zip(*np.nonzero(labels)):
        window = labels[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        counts = np.bincount(window[window > 0], minlength=256)
        tied = np.flatnonzero(counts == counts.max())
        out[y, x] = labels[y, x] if labels[y, x] in tied else tied[0]
    return out


def box_oracle(labels: np.ndarray, patch: np.ndarray, contacts: list[tuple[int, int]], cap: int, structure: np.ndarray) -> int:
    """The most pixels that a patch touching ``patch`` at ``contacts`` has in the patch's
    tie-break box, connected within the box: the 3 x 3 blocks of side cap // 2 around the block
    of the patch's first pixel."""
    side = cap // 2
    ys, xs = np.nonzero(patch)  # row-major: the first pixel first
    y0, x0 = max(0, (ys[0] // side - 1) * side), max(0, (xs[0] // side - 1) * side)
    y1, x1 = (ys[0] // side + 2) * side, (xs[0] // side + 2) * side
    best = 0
    for y, x in contacts:
        if y0 <= y < y1 and x0 <= x < x1:
            pieces, _ = ndimage.label(labels[y0:y1, x0:x1] == labels[y, x], structure=structure)
            best = max(best, int((pieces == pieces[y - y0, x - x0]).sum()))
    return best


def sieve_oracle(labels: np.ndarray, n: int, connectivity: int) -> np.ndarray:
    """One round of the rule, written from its definition with scipy's labelling."""
    cap = module.CAP_FACTOR * n
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    comp = np.full(labels.shape, -1)
    sizes: list[int] = []
    for c in range(1, 256):
        pieces, count = ndimage.label(labels == c, structure=structure)
        for p in range(1, count + 1):
            comp[pieces == p] = len(sizes)
            sizes.append(int((pieces == p).sum()))
    out = labels.copy()
    offsets = [(dy, dx) for dy, dx in itertools.product((-1, 0, 1), repeat=2) if (dy, dx) != (0, 0) and (connectivity == 8 or 0 in (dy, dx))]
    for patch, size in enumerate(sizes):
        if size >= n:
            continue
        biggest: dict[int, int] = {}
        contacts: dict[int, int] = {}
        at_cap: dict[int, list[tuple[int, int]]] = {}
        for y, x in zip(*np.nonzero(comp == patch)):
            for dy, dx in offsets:
                yy, xx = y + dy, x + dx
                if 0 <= yy < labels.shape[0] and 0 <= xx < labels.shape[1] and labels[yy, xx] not in (0, labels[y, x]):
                    c = int(labels[yy, xx])
                    biggest[c] = max(biggest.get(c, 0), min(sizes[comp[yy, xx]], cap))
                    contacts[c] = contacts.get(c, 0) + 1
                    if sizes[comp[yy, xx]] >= cap:
                        at_cap.setdefault(c, []).append((yy, xx))
        if biggest:
            boxed = {c: box_oracle(labels, comp == patch, at_cap[c], cap, structure) if c in at_cap else 0 for c in biggest}
            best = max(biggest, key=lambda c: (biggest[c], boxed[c], contacts[c], -c))
            if biggest[best] >= n:
                out[comp == patch] = best
    return out


def noisy_blobs(shape: tuple[int, int], k: int, seed: int, noise: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, k + 1, (shape[0] // 9 + 1, shape[1] // 9 + 1))
    labels = np.kron(coarse, np.ones((9, 9), dtype=np.int64))[: shape[0], : shape[1]].astype(np.uint8)
    speck = rng.random(shape) < noise
    labels[speck] = rng.integers(1, k + 1, int(speck.sum()))
    labels[rng.random(shape) < 0.03] = 0
    labels[: shape[0] // 5, : shape[1] // 4] = 0  # a nodata corner
    return labels


@pytest.mark.parametrize("side", [15, 17])
def test_the_majority_counts_windows_of_one_class(side):
    # Votes are counted in one byte up to 15 x 15 = 225 of them, in two above: a window of
    # 17 x 17 = 289 pixels nearly all of one class would wrap a byte and lose to the specks.
    rng = np.random.default_rng(side)
    labels = np.ones((80, 90), np.uint8)
    labels[rng.random(labels.shape) < 0.08] = 2
    labels[rng.random(labels.shape) < 0.03] = 0
    assert np.array_equal(clean(labels, Cleanup(majority=side), k=2).labels, majority_oracle(labels, side))


def test_majority_ties_keep_the_centre_else_the_smallest_class():
    # centre 3 tied with 1 (3 votes each): 3 stays; centre 5 (1 vote) against 2 and 4 tied: 2.
    kept = np.array([[1, 1, 1], [3, 3, 3], [0, 0, 0]], dtype=np.uint8)
    assert clean(kept, Cleanup(majority=3)).labels[1, 1] == 3
    lost = np.array([[4, 4, 4], [2, 5, 0], [2, 2, 0]], dtype=np.uint8)
    assert clean(lost, Cleanup(majority=3)).labels[1, 1] == 2
    # nodata never votes and never changes; the window is cut at the edges
    holes = np.array([[0, 0, 7], [0, 0, 7], [1, 0, 0]], dtype=np.uint8)
    out = clean(holes, Cleanup(majority=3)).labels
    assert (out[holes == 0] == 0).all() and out[2, 0] == 1 and out[0, 2] == 7


def test_sieve_merges_into_the_largest_neighbour_then_the_most_contacts():
    field = np.full((9, 9), 1, dtype=np.uint8)
    field[4, 4] = 2
    assert clean(field, Cleanup(sieve=4)).labels[4, 4] == 1
    # a 2-pixel speck between a 30-pixel class 3 and a 36-pixel class 1: the larger wins
    split = np.ones((6, 11), dtype=np.uint8)
    split[:, 6:] = 3
    split[2, 5:7] = 2
    assert (clean(split, Cleanup(sieve=3)).labels[2, 5:7] == 1).all()
    # both beyond the cap, as many pixels of each in the speck's box (the whole array here; one
    # nodata pixel evens them): the speck's contacts decide (5 with class 3, 3 with class 1)
    wide = np.ones((60, 60), dtype=np.uint8)
    wide[:, 30:] = 3
    wide[10, 29:32] = 2
    wide[50, 5] = 0
    assert (wide == 1).sum() == (wide == 3).sum()
    assert (clean(wide, Cleanup(sieve=4)).labels[10, 29:32] == 3).all()
    wide[50, 5] = 1  # one more pixel of class 1 in the box: class 1 wins
    assert (clean(wide, Cleanup(sieve=4)).labels[10, 29:32] == 1).all()


def test_between_two_patches_at_the_cap_the_one_filling_more_of_the_box_wins():
    # A 1-pixel speck (class 3) on the border of a field (class 1, 3 contacts) and a forest
    # (class 2, 5 contacts), both larger than the cap: the field has more of itself in the
    # speck's box, so it takes the speck although the forest touches it more.
    labels = np.ones((96, 96), dtype=np.uint8)
    labels[40:, 50:] = 2
    labels[40, 49] = 2  # the forest's corner reaches round the speck
    labels[41, 49] = 2
    labels[40, 50] = 3
    n = 4
    cap = module.CAP_FACTOR * n
    eight = ndimage.generate_binary_structure(2, 2)
    assert (labels == 2).sum() >= cap
    assert box_oracle(labels, labels == 3, [(39, 50)], cap, eight) > box_oracle(labels, labels == 3, [(40, 51)], cap, eight)
    got = clean(labels, Cleanup(sieve=n, connectivity=8), k=3)
    assert got.labels[40, 50] == 1 and got.patches_removed == 1


@pytest.mark.parametrize("connectivity", [4, 8])
def test_only_what_is_connected_within_the_box_counts(connectivity):
    # A speck (class 3) between a class-1 strip and a class-2 blob, both at the cap. Class 1 has
    # more pixels in the speck's box (32 x 32 blocks, the box rows and columns 0..95), but the
    # strip joins them only outside it (a loop closing at column 120): connected within the
    # box, the strip has 76 pixels and the blob 160, so the blob wins. Close the loop inside the
    # box and class 1 wins.
    n = 4
    assert module.CAP_FACTOR * n // 2 == 32
    labels = np.zeros((96, 140), dtype=np.uint8)
    labels[40, 20:121] = 1  # the strip: 101 pixels, 76 of them in the box
    labels[60:96, 20:121] = 1  # a field below it, joined to the strip at column 120 only
    labels[41:60, 120] = 1
    labels[41:51, 50:66] = 2  # the blob: 160 pixels under the strip
    labels[41, 49] = 3  # the speck, touching the strip above and the blob on its right
    labels[40, 49] = 1
    got = clean(labels, Cleanup(sieve=n, connectivity=connectivity), k=3)
    assert got.labels[41, 49] == 2
    labels[41:60, 30] = 1  # the strip and the field now meet inside the box
    got = clean(labels, Cleanup(sieve=n, connectivity=connectivity), k=3)
    assert got.labels[41, 49] == 1


def test_a_patch_bounded_only_by_nodata_or_the_edge_stays():
    island = np.zeros((7, 7), dtype=np.uint8)
    island[3, 3] = 5
    assert clean(island, Cleanup(sieve=10, connectivity=8)).labels[3, 3] == 5
    assert clean(island, Cleanup(majority=3, sieve=10)).patches_removed == 0


def test_connectivity_decides_what_a_patch_is():
    diagonal = np.ones((8, 8), dtype=np.uint8)
    for i in range(1, 5):
        diagonal[i, i] = 2  # 4 pixels touching only by corners
    four = clean(diagonal, Cleanup(sieve=3, connectivity=4)).labels
    eight = clean(diagonal, Cleanup(sieve=3, connectivity=8)).labels
    assert (four == 1).all()  # four 1-pixel patches, each merged
    assert np.array_equal(eight, diagonal)  # one 4-pixel patch: not small


@pytest.mark.parametrize(("seed", "k"), [(0, 5), (1, 5), (2, 5), (3, BY_CLASS + 2)])
def test_the_kernel_is_the_rules(seed, k):
    # Also what it counts, with more classes than the majority counts class by class.
    labels = noisy_blobs((60, 75), k, seed)
    for majority, sieve, connectivity in itertools.product((0, 3, 5), (0, 2, 5, 12), (4, 8)):
        expected = majority_oracle(labels, majority) if majority else labels
        expected = sieve_oracle(expected, sieve, connectivity) if sieve > 1 else expected
        got = clean(labels, Cleanup(majority, sieve, connectivity), k=k)
        assert np.array_equal(got.labels, expected), (majority, sieve, connectivity)
        voted = majority_oracle(labels, majority) if majority else labels
        assert np.array_equal(got.majority_changed, np.bincount(labels[labels != voted], minlength=k + 1))
        assert np.array_equal(got.sieve_changed, np.bincount(voted[voted != expected], minlength=k + 1))
        before = np.bincount(labels.ravel(), minlength=k + 1)
        assert np.array_equal(got.pixels(before), np.bincount(expected.ravel(), minlength=k + 1))


@pytest.mark.parametrize(("side", "k"), [(3, 13), (7, 5), (31, 40), (3, BY_CLASS)])
def test_the_majority_is_the_rule_for_wide_windows_and_many_classes(side, k):
    # Up to BY_CLASS classes every class's votes are counted; above, a histogram per pixel that
    # needs one, and 3 x 3 with 13 classes scans the window instead of the classes; 31 is the
    # widest window allowed.
    labels = noisy_blobs((70, 90), k, seed=side, noise=0.5)
    assert np.array_equal(clean(labels, Cleanup(majority=side), k=k).labels, majority_oracle(labels, side))
    with pytest.raises(ValueError, match="odd window side up to 31"):
        Cleanup(majority=33)


def by_chunks(labels: np.ndarray, cleanup: Cleanup, side: int, context: int) -> tuple[np.ndarray, int, np.ndarray]:
    """The cleanup chunk by chunk, each with ``context`` pixels around it (cut at the edges)."""
    out = np.zeros_like(labels)
    removed, changed = 0, np.zeros(6, dtype=np.int64)
    height, width = labels.shape
    for r0, c0 in itertools.product(range(0, height, side), range(0, width, side)):
        r1, c1 = min(height, r0 + side), min(width, c0 + side)
        w0, w1, v0, v1 = max(0, r0 - context), min(height, r1 + context), max(0, c0 - context), min(width, c1 + context)
        core = (slice(r0 - w0, r1 - w0), slice(c0 - v0, c1 - v0))
        got = clean_window(labels[w0:w1, v0:v1], cleanup, core=core, k=5, place=(w0, v0))
        out[r0:r1, c0:c1] = got.labels
        removed += got.patches_removed
        changed += got.sieve_changed
    return out, removed, changed


@pytest.mark.parametrize(("cleanup", "side"), [(Cleanup(3, 4, 8), 80), (Cleanup(5, 3, 4), 64), (Cleanup(0, 2, 8), 37), (Cleanup(3, 0), 17)])
def test_chunk_by_chunk_with_the_halo_is_the_whole_array(cleanup, side):
    labels = noisy_blobs((200, 230), 5, seed=side)
    # a snake of N - 1 pixels (the tallest small patch) across a chunk corner
    n = max(cleanup.sieve, 2)
    labels[side - n // 2 : side - n // 2 + n - 1, side] = 4
    whole = clean(labels, cleanup, k=5)
    stitched, removed, changed = by_chunks(labels, cleanup, side, cleanup.halo)
    assert np.array_equal(stitched, whole.labels)
    assert removed == whole.patches_removed and np.array_equal(changed, whole.sieve_changed)


@pytest.mark.parametrize("width", [1, 63, 64, 65, 200])
def test_runs_are_the_rows_maximal_stretches_of_one_valid_class(width):
    # Found 64 pixels at a time: widths around a word, nodata anywhere, the class 255, and
    # arrays too short for the runs (grown).
    rng = np.random.default_rng(width)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(7, width), p=[0.2, 0.3, 0.3, 0.2])
    labels[2] = 0
    labels[3] = 255
    first, x0, x1, cls = runs(labels, np.empty(1, np.int32), np.empty(1, np.int32), np.empty(1, np.uint8))
    for y, row in enumerate(labels):
        edges = np.flatnonzero(np.diff(row, prepend=0, append=0))
        expected = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if row[a] != 0]
        got = list(zip(x0[first[y] : first[y + 1]], x1[first[y] : first[y + 1]]))
        assert got == expected and (cls[first[y] : first[y + 1]] == row[[a for a, _ in expected]]).all()


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize(("snake", "winner"), [(200, 2), (300, 2), (140, 4)])
def test_a_neighbour_running_out_into_the_halo_is_counted_up_to_the_cap(snake, winner, connectivity):
    # A 1-pixel speck (class 3) at a chunk's edge between a 156-pixel blob (class 4) and a line
    # (class 2) that runs out into the next chunk, past the halo when longer than 270 pixels:
    # the speck takes the line's class if the line has more pixels, counted up to S = 256, the
    # same chunk by chunk as on the whole array, on each side of the chunk.
    n, side = 16, 300
    cleanup = Cleanup(sieve=n, connectivity=connectivity)
    assert cleanup.halo == 271
    labels = np.zeros((2 * side, 2 * side), dtype=np.uint8)  # turned, chunk edges stay chunk edges
    labels[150, side - 2] = 3
    labels[144:156, side - 15 : side - 2] = 4
    steps = np.arange(snake)
    labels[150 + (steps % 2 if connectivity == 8 else 0), side - 1 + steps] = 2  # 8-connected: a zigzag
    for turn in range(4):
        turned = np.rot90(labels, turn).copy()
        whole = clean(turned, cleanup, k=5)
        assert np.rot90(whole.labels, -turn)[150, side - 2] == winner
        stitched, removed, changed = by_chunks(turned, cleanup, side, cleanup.halo)
        assert np.array_equal(stitched, whole.labels), turn
        assert removed == whole.patches_removed and np.array_equal(changed, whole.sieve_changed)


def test_a_neighbour_joined_out_in_the_halo_is_one_patch_from_each_side():
    # A U of class 2 (239 pixels) whose two arms leave the chunk and join in the halo: each
    # arm alone is smaller than the blobs (156 pixels), the U is larger, so both specks take
    # class 2, chunk by chunk as on the whole array.
    side, arm = 300, 110
    cleanup = Cleanup(sieve=16)
    labels = np.zeros((2 * side, 2 * side), dtype=np.uint8)
    for row in (150, 170):
        labels[row, side - 2] = 3
        labels[row - 6 : row + 6, side - 15 : side - 2] = 4
        labels[row, side - 1 : side - 1 + arm] = 2
    labels[150:171, side - 2 + arm] = 2
    whole = clean(labels, cleanup, k=5)
    assert (labels == 2).sum() == 239 and (whole.labels[[150, 170], side - 2] == 2).all()
    stitched, removed, changed = by_chunks(labels, cleanup, side, cleanup.halo)
    assert np.array_equal(stitched, whole.labels)


def test_more_rounds_stay_exact_chunk_by_chunk(monkeypatch):
    # Each round but the last decides the small patches within the later rounds' reach of the
    # core, the last writes the core only: two rounds chunk by chunk are still the whole array.
    monkeypatch.setattr(module, "ROUNDS", 2)
    cleanup = Cleanup(0, 4, 8)
    labels = noisy_blobs((230, 250), 5, seed=7, noise=0.35)
    # a chain across a chunk corner (113): a 1-pixel patch touching only nodata and a 3-pixel
    # patch, which touches a field: the field takes the 3 pixels in round 1, the 1 in round 2
    labels[105:122, 105:122] = 1
    labels[110:115, 108:113] = 0
    labels[112, 112] = 2
    labels[111:114, 113] = 3
    whole = clean(labels, cleanup, k=5)
    assert whole.labels[112, 112] == 1
    stitched, removed, changed = by_chunks(labels, cleanup, 113, cleanup.halo)
    assert np.array_equal(stitched, whole.labels)
    assert removed == whole.patches_removed and np.array_equal(changed, whole.sieve_changed)
    monkeypatch.setattr(module, "ROUNDS", 1)
    assert clean(labels, cleanup, k=5).labels[112, 112] == 2  # one round leaves it


def test_reused_arrays_carry_nothing_from_one_window_to_the_next(monkeypatch):
    # Each thread reuses its majority output and run arrays (larger ones are fresh): a large
    # window, a small one and a window with more runs than the arrays hold give what fresh
    # arrays give.
    cleanup = Cleanup(3, 6, 8)
    windows = [noisy_blobs((300, 280), 6, seed=1), noisy_blobs((90, 70), 4, seed=2), noisy_blobs((200, 210), 9, seed=3, noise=0.9)]
    reused = [clean(labels, cleanup) for labels in windows]
    monkeypatch.setattr(module, "REUSED_BYTES", 0)
    for labels, got in zip(windows, reused):
        fresh = clean(labels, cleanup)
        assert np.array_equal(got.labels, fresh.labels) and np.array_equal(got.sieve_changed, fresh.sieve_changed)


def test_less_context_than_the_halo_can_change_the_result():
    # A speck of N - 1 pixels (class 2) from a chunk's last column rightwards, between class 3
    # (N - 1 contacts, S - 1 pixels) and class 1 (1 contact, a snake of exactly S pixels running
    # on from the speck's end): class 1 wins only if the whole snake is seen, N + S - 2 pixels
    # past the edge (the halo, N + S - 1, keeps one spare pixel; from N = 6 on, the snake reaches
    # further than the cells counted).
    n = 6
    cap = module.CAP_FACTOR * n
    cleanup = Cleanup(sieve=n)
    x = cap  # the chunk is columns [0, x + 1)
    labels = np.zeros((6, x + 2 * cleanup.halo), dtype=np.uint8)
    labels[3, x : x + n - 1] = 2
    labels[2, x : x + n - 1] = 3
    labels[1, x + 2 * n - 1 - cap : x + n - 1] = 3
    labels[3, x + n - 1 : x + n - 1 + cap] = 1
    assert (labels == 3).sum() == cap - 1 and cleanup.halo == n + cap - 1
    core = (slice(None), slice(0, x + 1))
    for context, winner in ((cleanup.halo, 1), (cleanup.halo - 1, 1), (cleanup.halo - 2, 3)):
        got = clean_window(labels[:, : x + 1 + context], cleanup, core=core, k=5).labels
        assert got[3, x] == winner, context
    assert clean(labels, cleanup, k=5).labels[3, x] == 1


def test_agrees_with_gdal_on_most_pixels():
    labels = noisy_blobs((300, 320), 6, seed=5, noise=0.15)
    voted = labels  # speckled: the sieve alone has work everywhere
    ours = clean(voted, Cleanup(sieve=12, connectivity=8), k=6).labels
    gdal = rasterio.features.sieve(voted, size=12, connectivity=8, mask=voted > 0)
    valid = voted > 0
    assert (ours == gdal)[valid].mean() >= 0.99
    assert (ours != voted).sum() > 100  # and the sieve did work
