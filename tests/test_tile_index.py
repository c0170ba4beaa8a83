"""The tile index: every window gets exactly the tiles it overlaps, and tasks stay small."""

import pickle

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window
from rasters import write_raster

import pipeline.io.mosaic.array as mosaic_module
from pipeline.algo.sample import plan_sample, window_of
from pipeline.config import InputConfig
from pipeline.io.mosaic import Mosaic, Tile, open_mosaic, read, to_dask, to_xarray
from pipeline.io.remote import Href
from pipeline.stages.edge import input_spec


def synthetic_mosaic(tiles: list[Tile], *, height: int, width: int, chunk: int) -> Mosaic:
    return Mosaic(
        tuple(tiles), "EPSG:32614", Affine(1, 0, 0, 0, -1, 0), height, width, (1, 2, 3), ("r", "g", "b"), "uint8", chunk, 3
    )


def scattered_tiles(n: int, *, height: int, width: int, seed: int) -> list[Tile]:
    """Tiles of many sizes anywhere on the grid, some reprojected, overlapping each other."""
    rng = np.random.default_rng(seed)
    tiles = []
    for i in range(n):
        h, w = int(rng.integers(1, 900)), int(rng.integers(1, 900))
        row, col = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        warp = ("EPSG:32614", Affine(1, 0, col, 0, -1, -row)) if i % 5 == 0 else None
        tiles.append(Tile(Href(f"tile{i}.tif"), row, col, h, w, "nodata", None, (0.0,) * 3, warp))
    return tiles


def brute_force(tiles: list[Tile], window: Window) -> tuple[Tile, ...]:
    r0, c0 = window.row_off, window.col_off
    r1, c1 = r0 + window.height, c0 + window.width
    return tuple(t for t in tiles if t.row_off < r1 and r0 < t.row_off + t.height and t.col_off < c1 and c0 < t.col_off + t.width)


@pytest.mark.parametrize("chunk", [256, 512, 1000])
def test_a_window_gets_exactly_the_tiles_it_overlaps(chunk):
    height, width = 3000, 4100
    tiles = scattered_tiles(400, height=height, width=width, seed=chunk)
    mosaic = synthetic_mosaic(tiles, height=height, width=width, chunk=chunk)
    rng = np.random.default_rng(0)
    windows = [w for _, w in mosaic.windows()]
    for _ in range(300):  # windows of any size and place, not only chunks
        h, w = int(rng.integers(1, 1500)), int(rng.integers(1, 1500))
        windows.append(Window(int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h))
    for window in windows:
        assert mosaic.tiles_in(window) == brute_force(tiles, window)  # the same tiles, in drawing order


def test_corner_and_edge_contacts():
    # A 10 x 10 window at (100, 100) and tiles around it.
    corner = Tile(Href("corner.tif"), 109, 109, 50, 50, "none", None, (None,) * 3)  # shares only the window's last pixel
    diagonal = Tile(Href("diagonal.tif"), 110, 110, 50, 50, "none", None, (None,) * 3)  # touches the corner point only
    edge = Tile(Href("edge.tif"), 100, 110, 10, 50, "none", None, (None,) * 3)  # shares the right edge line only
    inside = Tile(Href("inside.tif"), 103, 104, 1, 1, "none", None, (None,) * 3)  # one pixel inside
    mosaic = synthetic_mosaic([corner, diagonal, edge, inside], height=400, width=400, chunk=64)
    assert mosaic.tiles_in(Window(100, 100, 10, 10)) == (corner, inside)


def test_read_tasks_name_the_tiles_never_copy_them():
    # 2,500 tiles: the tiles sit in one graph key (sent once to each worker), and each chunk task
    # names it and its window: no task grows with the number of tiles in the mosaic.
    tiles = [Tile(Href(f"t{i}.tif"), (i // 50) * 100, (i % 50) * 100, 120, 120, "none", None, (None,) * 3) for i in range(2500)]
    mosaic = synthetic_mosaic(tiles, height=5020, width=5020, chunk=256)
    graph = dict(to_dask(mosaic).__dask_graph__())
    sizes = sorted(len(pickle.dumps(task)) for task in graph.values())
    assert len(graph) == len(mosaic.windows()) + 1
    assert sizes[-2] < 1000 and sizes[-1] < 2 * len(pickle.dumps(mosaic.tiles))
    assert len(pickle.dumps(mosaic.tiles)) > 100 * sizes[-2]


def test_a_slice_of_the_mosaic_reads_only_its_window(tmp_path, monkeypatch):
    image = np.random.default_rng(2).integers(1, 255, (3, 300, 400), dtype=np.uint8)
    mosaic = open_mosaic(input_spec(InputConfig(paths=str(write_raster(tmp_path / "one.tif", image, nodata=0)))), chunk=256)
    windows = []
    monkeypatch.setattr(mosaic_module, "read", lambda job, read=read: windows.append(job.window) or read(job))
    part = to_dask(mosaic)[:, 100:160, 200:300:3].compute()
    np.testing.assert_array_equal(part, image[:, 100:160, 200:300:3])
    # Two chunks (256 wide) share the window; each reads only its part of it.
    assert [(w.row_off, w.height) for w in windows] == [(100, 60)] * 2
    assert sum(w.width for w in windows) <= 100


def test_tiles_of_different_sizes_and_zones_read_through_the_index(tmp_path):
    # Real files: a big tile, a small one on top of it, one in another UTM zone (reprojected).
    rng = np.random.default_rng(3)
    big = write_raster(tmp_path / "big.tif", rng.integers(1, 255, (3, 300, 400), dtype=np.uint8), nodata=0)
    small = write_raster(tmp_path / "small.tif", rng.integers(1, 255, (3, 50, 70), dtype=np.uint8), nodata=0, origin=(500_100.0, 5_199_900.0))
    # Zone 15's grid near the same place: reprojected onto zone 14's grid by the mosaic.
    east = write_raster(
        tmp_path / "east.tif", rng.integers(1, 255, (3, 100, 100), dtype=np.uint8), nodata=0,
        crs="EPSG:32615", origin=(44_285.0, 5_217_137.0),  # (500_800, 5_199_700) in zone 14
    )
    mosaic = open_mosaic(input_spec(InputConfig(paths=[str(big), str(small), str(east)], crs="EPSG:32614")), chunk=128)
    full = to_dask(mosaic).compute()
    all_tiles = list(mosaic.tiles)
    for (_, window), block in zip(mosaic.windows(), [b for row in _blocks(full, mosaic) for b in row]):
        job = mosaic.plan(window)
        assert job.tiles == brute_force(all_tiles, window)
        np.testing.assert_array_equal(read(job), block)
    assert sum(1 for t in mosaic.tiles if t.warp is not None) == 1


def _blocks(full: np.ndarray, mosaic: Mosaic):
    c = mosaic.chunk
    return [[full[:, r : r + c, q : q + c] for q in range(0, mosaic.width, c)] for r in range(0, mosaic.height, c)]


def test_the_sample_sees_the_whole_mosaic():
    # A long, thin mosaic of 60 tiles: every stretch of it gets windows, for every seed.
    tiles = [Tile(Href(f"t{i}.tif"), 0, i * 1024, 1024, 1024, "none", None, (None,) * 3) for i in range(60)]
    mosaic = synthetic_mosaic(tiles, height=1024, width=60 * 1024, chunk=2048)
    for seed in range(5):
        plan = plan_sample(mosaic, size=30 * 256, seed=seed, window=512, min_windows=30)  # 30 strata
        assert plan.strata == 30 and len(plan.windows) == 30 and plan.covered == 240
        tile_of_window = [window_of(mosaic, n, 512).col_off // 1024 for n in plan.windows]
        # 30 strata of 8 windows (2 tiles) each: one window in every pair of tiles.
        assert sorted(t // 2 for t in tile_of_window) == list(range(30))


def test_strata_follow_the_covered_area_not_the_bounding_box():
    # An L of tiles: the empty quarter of the bounding box is never read.
    tiles = [Tile(Href(f"t{r}{c}.tif"), r * 512, c * 512, 512, 512, "none", None, (None,) * 3) for r in range(8) for c in range(8) if r < 4 or c < 4]
    mosaic = synthetic_mosaic(tiles, height=4096, width=4096, chunk=1024)
    plan = plan_sample(mosaic, size=16 * 256, seed=1, window=512, min_windows=16)
    assert plan.covered == 48 and len(plan.windows) == 16
    for number in plan.windows:
        window = window_of(mosaic, number, 512)
        assert mosaic.tiles_in(window), window


def test_the_mosaic_as_xarray_keeps_its_grid_and_crs(tmp_path):
    image = np.random.default_rng(5).integers(1, 255, (3, 90, 70), dtype=np.uint8)
    mosaic = open_mosaic(input_spec(InputConfig(paths=str(write_raster(tmp_path / "one.tif", image, nodata=0)))), chunk=64)
    array = to_xarray(mosaic)
    assert array.rio.crs.to_string() == mosaic.crs and array.rio.transform() == mosaic.transform
    np.testing.assert_array_equal(array.values, image.astype(np.float32))
