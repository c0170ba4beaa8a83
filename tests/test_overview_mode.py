"""2 x 2 MODE overviews of labels (``halve(array, "mode")``, ``LABELS_MODE``)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from test_cog import write_cog

from pipeline.cog import LABELS, LABELS_MODE, halve, halve_mode

REPO = Path(__file__).resolve().parents[1]


def oracle(array: np.ndarray) -> np.ndarray:
    """Slow and obvious: count each block's valid classes in pure Python."""
    h, w = array.shape
    out = np.zeros((-(-h // 2), -(-w // 2)), dtype=np.uint8)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            block = array[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            votes = Counter(int(v) for v in block.ravel() if v != 0)
            if not votes:
                continue
            top = max(votes.values())
            tied = {c for c, n in votes.items() if n == top}
            first = int(block[0, 0])
            out[i, j] = first if first in tied else min(tied)
    return out


def mode(*block) -> int:
    """The mode of one 2 x 2 block given row-major as a, b, c, d."""
    result = halve(np.array(block, dtype=np.uint8).reshape(2, 2), "mode")
    assert result.shape == (1, 1) and result.dtype == np.uint8
    return int(result[0, 0])


@pytest.mark.parametrize(
    "block, expected",
    [
        ((3, 3, 3, 3), 3),
        ((1, 2, 2, 2), 2),  # a majority beats the top-left pixel
        ((2, 1, 1, 3), 1),  # two votes beat one, wherever they sit
        ((5, 7, 9, 3), 5),  # four-way tie: top-left
        ((5, 7, 7, 5), 5),  # two-two tie with the top-left among the tied
        ((7, 5, 5, 7), 7),  # ... whatever its class id
        ((9, 9, 4, 4), 9),
        ((4, 4, 9, 9), 4),
        ((255, 255, 1, 1), 255),  # the largest uint8 class is a class like any other
    ],
)
def test_majority_then_top_left_on_ties(block, expected):
    assert mode(*block) == expected


@pytest.mark.parametrize(
    "block, expected",
    [
        ((0, 7, 5, 9), 5),  # top-left is nodata: the smallest of the three tied classes
        ((0, 9, 7, 0), 7),
        ((0, 4, 4, 2), 4),
        ((0, 0, 0, 6), 6),
    ],
)
def test_smallest_class_on_ties_without_the_top_left(block, expected):
    assert mode(*block) == expected


@pytest.mark.parametrize(
    "block, expected",
    [
        ((0, 0, 0, 0), 0),
        ((0, 0, 3, 4), 3),  # two nodata never outvote two classes
        ((0, 0, 0, 8), 8),  # one valid pixel wins over three nodata
        ((8, 0, 0, 0), 8),
        ((2, 0, 0, 1), 2),
    ],
)
def test_nodata_never_votes(block, expected):
    assert mode(*block) == expected


def test_odd_edges_cut_the_blocks():
    array = np.array(
        [
            [1, 2, 3, 3, 6],
            [2, 2, 4, 4, 7],
            [0, 5, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    # row 0: [[1,2],[2,2]] -> 2; [[3,3],[4,4]] -> 3 (top-left); cut 2 x 1 [6, 7] -> 6
    # row 1 (cut 1 x 2): [0, 5] -> 5; [0, 0] -> 0; cut 1 x 1 [0] -> 0
    np.testing.assert_array_equal(halve(array, "mode"), np.array([[2, 3, 6], [5, 0, 0]], dtype=np.uint8))
    np.testing.assert_array_equal(halve(np.array([[0, 4, 4], [9, 9, 0]], np.uint8), "mode"), [[9, 4]])
    np.testing.assert_array_equal(halve(np.array([[7]], np.uint8), "mode"), [[7]])
    np.testing.assert_array_equal(halve(np.array([[0, 3, 3]], np.uint8).T, "mode"), [[3], [3]])


@pytest.mark.parametrize("shape", [(2, 2), (1, 1), (1, 7), (9, 1), (33, 64), (64, 33), (101, 77), (256, 256)])
@pytest.mark.parametrize("k", [1, 3, 12, 255])
def test_matches_a_pure_python_oracle(shape, k):
    rng = np.random.default_rng([shape[0], shape[1], k])
    array = rng.integers(0, k + 1, shape, dtype=np.uint8)
    array[rng.random(shape) < 0.2] = 0
    np.testing.assert_array_equal(halve(array, "mode"), oracle(array))


def test_matches_the_oracle_on_blocky_labels_over_several_levels():
    rng = np.random.default_rng(1)
    array = np.kron(rng.integers(0, 6, (25, 31), dtype=np.uint8), np.ones((3, 5), dtype=np.uint8))  # 75 x 155
    array ^= (rng.random(array.shape) < 0.1).astype(np.uint8)  # noisy class edges
    ours, theirs = array, array
    for _ in range(4):
        ours, theirs = halve(ours, "mode"), oracle(theirs)
        np.testing.assert_array_equal(ours, theirs)


def test_levels_do_not_depend_on_the_chunking():
    rng = np.random.default_rng(2)
    array = rng.integers(0, 5, (1000, 1304), dtype=np.uint8)  # chunks end on even pixels, the mosaic on any
    array = np.concatenate([array, array[:, :1]], axis=1)  # odd width: the last chunk is odd, as at a mosaic's edge
    rows, cols = [0, 256, 384, 1000], [0, 512, 640, 1152, 1305]
    pieces = [[array[r0:r1, c0:c1] for c0, c1 in pairwise(cols)] for r0, r1 in pairwise(rows)]
    whole = array
    for level in range(1, 4):
        whole = halve(whole, "mode")
        pieces = [[halve(p, "mode") for p in row] for row in pieces]
        np.testing.assert_array_equal(np.block(pieces), whole, err_msg=f"level {level}")
        assert whole.dtype == np.uint8


def test_uint8_in_uint8_out_and_other_types_refused():
    array = np.random.default_rng(3).integers(0, 9, (64, 48), dtype=np.uint8)
    out = halve(array, "mode")
    assert out.dtype == np.uint8 and out.shape == (32, 24) and out.flags.c_contiguous
    np.testing.assert_array_equal(halve_mode(array[:, ::-1]), oracle(array[:, ::-1]))  # any strides
    with pytest.raises(TypeError):
        halve(array.astype(np.int32), "mode")
    with pytest.raises(TypeError):
        halve(array[None], "mode")


def test_labels_mode_layer_shares_the_labels_parts_prefix():
    assert LABELS_MODE.resampling == "mode" and LABELS.resampling == "nearest"
    assert (LABELS_MODE.name, LABELS_MODE.dtype, LABELS_MODE.nodata) == (LABELS.name, LABELS.dtype, LABELS.nodata)


def test_mode_cog_has_the_same_bytes_on_any_chunking_and_mode_overviews(tmp_path):
    rng = np.random.default_rng(4)
    array = np.kron(rng.integers(1, 7, (70, 97), dtype=np.uint8), np.ones((30, 30), dtype=np.uint8))[:2100, :2900]
    array[rng.random(array.shape) < 0.3] = 3
    array[:40] = 0
    cogs = []
    for chunk in (512, 1536):
        (tmp_path / str(chunk)).mkdir()
        cogs.append(write_cog(tmp_path / str(chunk), LABELS_MODE, array, chunk))
    assert cogs[0].read_bytes() == cogs[1].read_bytes()
    expected = array
    for level in range(3):
        expected = halve_mode(expected)
        with rasterio.open(cogs[0], OVERVIEW_LEVEL=level) as src:
            np.testing.assert_array_equal(src.read(1), expected)
    assert not np.array_equal(expected, array[::8, ::8])  # mode differs from nearest here


def test_overview_views_script_renders_a_level_with_the_palette(tmp_path):
    array = np.zeros((1200, 1300), dtype=np.uint8)
    array[:, 650:] = 1
    cog = write_cog(tmp_path, LABELS, array, 512)  # palette 1 -> (10, 20, 30), 0 transparent
    script = REPO / "scripts" / "overview_views.py"
    png = tmp_path / "level1.png"
    subprocess.run([sys.executable, str(script), str(cog), str(png), "--level", "1"], check=True)
    image = np.asarray(Image.open(png).convert("RGBA"))
    assert image.shape == (600, 650, 4)  # level 1 = the first overview (factor 2)
    assert tuple(image[0, -1]) == (10, 20, 30, 255) and image[0, 0, 3] == 0
    with rasterio.open(cog) as src:  # the scale whose 0.28 mm screen pixel is 3.5 COG pixels: factor 4 is nearest
        assert src.overviews(1) == [2, 4]
        resolution = src.res[0]
    png = tmp_path / "scale.png"
    scale = round(resolution * 3.5 / 0.00028)
    out = subprocess.run(
        [sys.executable, str(script), str(cog), str(png), "--scale", f"1:{scale}"], check=True, capture_output=True, text=True
    )
    assert Image.open(png).size == (325, 300) and "factor 4" in out.stdout
    png = tmp_path / "full.png"
    subprocess.run([sys.executable, str(script), str(cog), str(png), "--level", "0"], check=True)
    assert Image.open(png).size == (1300, 1200)
