"""The COG writer without dask's help: tiles, overviews, the tree of coarse levels, the header."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasters import CRS, ORIGIN, RESOLUTION
from rio_cogeo.cogeo import cog_validate

from pipeline.cog import (
    LABELS,
    MARGIN,
    TILE,
    Pyramid,
    halve,
    merge_node,
    place_parts,
    tiles_of,
    write_header,
    write_levels,
    write_template,
)

GRIDS = [(1300, 1100, 512), (1300, 1100, 2048), (2600, 5000, 1536), (5000, 300, 1024), (400, 300, 512)]


@pytest.mark.parametrize("height, width, chunk", GRIDS)
def test_every_tile_of_every_level_is_written_by_exactly_one_node(height, width, chunk):
    pyramid = Pyramid(height, width, chunk)
    assert max(pyramid.shapes[-1]) <= TILE and (len(pyramid.shapes) == 1 or max(pyramid.shapes[-2]) > TILE)
    written = [np.zeros(pyramid.tile_grid(level), dtype=int) for level in range(len(pyramid.shapes))]
    for depth in [0, *pyramid.depths()]:
        for node in pyramid.nodes(depth):
            for level in pyramid.levels(node):
                r0, r1, c0, c1 = pyramid.tiles(node, level)
                written[level][r0:r1, c0:c1] += 1
    assert all((w == 1).all() for w in written)


def test_the_nodes_under_a_node_are_its_subtree_at_each_depth():
    # A batch's graph lists the nodes under its root without visiting the others (Texas has
    # ~1,900 batches of ~160,000 nodes: the filter took 92 s of client time).
    pyramid = Pyramid(9000, 7000, 512)
    for top in [0, *pyramid.depths()]:
        for root in pyramid.nodes(top):
            for depth in range(top + 2):
                shift = top - depth
                expected = [n for n in pyramid.nodes(depth) if shift >= 0 and (n[1] >> shift, n[2] >> shift) == root[1:]]
                assert pyramid.nodes(depth, under=root) == expected
            assert pyramid.nodes(top, under=root) == [root]


def test_tiles_are_padded_with_nodata_and_decode_as_zlib():
    array = np.arange(600 * 700, dtype=np.uint32).reshape(600, 700).astype(np.float32)
    tiles = tiles_of(array, MARGIN)
    assert len(tiles) == 4
    last = np.frombuffer(zlib.decompress(tiles[3]), dtype="<f4").reshape(TILE, TILE)
    np.testing.assert_array_equal(last[: 600 - TILE, : 700 - TILE], array[TILE:, TILE:])
    assert np.isnan(last[600 - TILE :]).all() and np.isnan(last[:, 700 - TILE :]).all()


def test_average_ignores_nodata_and_keeps_edge_pixels():
    array = np.array([[1, 3, 5], [np.nan, 2, 7], [4, np.nan, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(halve(array, "average"), np.array([[2, 6], [4, np.nan]], dtype=np.float32))
    np.testing.assert_array_equal(halve(array, "nearest"), array[::2, ::2])


def write_cog(tmp_path: Path, layer, array: np.ndarray, chunk: int, *, bigtiff=None) -> Path:
    """What the chunk tasks and the tree write, called in order here, then the client's header."""
    parts = tmp_path / "parts"
    parts.mkdir()
    pyramid = Pyramid(*array.shape, chunk)
    sizes, ups = {}, {}
    for node in pyramid.nodes(0):
        _, i, j = node
        block = array[i * chunk : (i + 1) * chunk, j * chunk : (j + 1) * chunk]
        sizes[node], up = write_levels(parts, layer, pyramid, node, block)
        ups[node] = {layer.name: up}
    for depth in pyramid.depths():
        for node in pyramid.nodes(depth):
            children = [[ups[child] for child in row] for row in pyramid.children(node)]
            node_sizes, ups[node] = merge_node(parts, [layer], pyramid, node, children)
            sizes[node] = node_sizes[layer.name]
    template = tmp_path / "template.tif"
    transform = rasterio.Affine(RESOLUTION, 0, ORIGIN[0], 0, -RESOLUTION, ORIGIN[1])
    palette = {0: (0, 0, 0), 1: (10, 20, 30)} if layer is LABELS else None
    tags = {"CLASS_1": "water"}
    write_template(template, layer=layer, crs=CRS, transform=transform, palette=palette, tags=tags, description="what")
    cog = tmp_path / "out.tif"
    placements = write_header(cog, layer=layer, pyramid=pyramid, sizes=sizes, template=template, bigtiff=bigtiff)
    place_parts(cog, folder=parts, layer=layer, pyramid=pyramid, placements=placements)
    return cog


def coordinates(height: int, width: int) -> np.ndarray:
    """Pixel values that encode their position, so a misplaced tile shows up as wrong values."""
    rows, cols = np.mgrid[:height, :width]
    return ((rows * 7 + cols * 13) % 254 + 1).astype(np.uint8)


@pytest.mark.parametrize("chunk, bigtiff", [(512, None), (1536, True)])
def test_labels_cog_levels_are_decimations_on_any_chunking(tmp_path, chunk, bigtiff):
    array = coordinates(2100, 2900)
    array[:40] = 0  # nodata
    cog = write_cog(tmp_path, LABELS, array, chunk, bigtiff=bigtiff)
    assert cog_validate(str(cog), quiet=True) == (True, [], [])
    with rasterio.open(cog) as src:
        np.testing.assert_array_equal(src.read(1), array)
        assert src.overviews(1) == [2, 4, 8] and src.nodata == 0 and src.crs.to_string() == CRS
        assert src.transform.c == ORIGIN[0] and src.colormap(1)[1] == (10, 20, 30, 255) and src.colormap(1)[0][3] == 0
        assert src.tags()["CLASS_1"] == "water" and src.descriptions == ("what",)
    assert cog.read_bytes()[2] == (43 if bigtiff else 42)
    for level in range(3):
        with rasterio.open(cog, OVERVIEW_LEVEL=level) as src:
            np.testing.assert_array_equal(src.read(1), array[:: 2 ** (level + 1), :: 2 ** (level + 1)])


def test_margin_cog_is_averaged_and_has_the_same_bytes_on_any_chunking(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.random((1700, 1300), dtype=np.float32)
    array[rng.random(array.shape) < 0.3] = np.nan
    by_chunk = []
    for chunk in (512, 1024, 1536):
        (tmp_path / str(chunk)).mkdir()
        by_chunk.append(write_cog(tmp_path / str(chunk), MARGIN, array, chunk))
    assert by_chunk[0].read_bytes() == by_chunk[1].read_bytes() == by_chunk[2].read_bytes()
    expected = array
    for level in range(2):
        expected = halve(expected, "average")
        with rasterio.open(by_chunk[0], OVERVIEW_LEVEL=level) as src:
            np.testing.assert_array_equal(src.read(1), expected)
    with rasterio.open(by_chunk[0]) as src:
        assert np.isnan(src.nodata) and src.dtypes == ("float32",) and src.colorinterp[0].name == "gray"
        np.testing.assert_array_equal(src.read(1), array)
