"""The first look: each tile's coarsest overview (a lattice of windows where a file has none), where
each look pixel lies, and the windows it makes the sample read: more where a surface is rare, every
valid pixel still equally likely."""

import logging

import dask
import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from rasterio.enums import Resampling
from rasters import (
    ORIGIN,
    RESOLUTION,
    class_centres,
    planted_classes,
    planted_image,
    write_raster,
)

import pipeline.algo.first_look as first_look_module
from pipeline.algo.first_look import first_look
from pipeline.algo.kernel import nearest
from pipeline.algo.sample import (
    _window_pixels,
    draw_sample,
    inclusion_probabilities,
    plan_sample,
    systematic,
)
from pipeline.config import InputConfig
from pipeline.io.imagery import as_imagery
from pipeline.io.mosaic import open_mosaic
from pipeline.io.mosaic.look import LookGrid, look_tile
from pipeline.stages.edge import input_spec


def with_overviews(path, factors=(2, 4, 8, 16, 32)):
    import rasterio

    with rasterio.open(path, "r+") as dst:
        dst.build_overviews(list(factors), Resampling.average)
    return path


def mosaic_of(*paths, crs=None, chunk=512):
    return open_mosaic(input_spec(InputConfig(paths=[str(p) for p in paths], crs=crs)), chunk=chunk)


def coordinates_image(height: int, width: int, bands: int = 4) -> np.ndarray:
    """float32 (band, y, x): band 1 the row, band 2 the column of each pixel, the others constant:
    an averaged overview pixel holds the centre of the block it stands for."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([rows, cols] + [np.full((height, width), 7.0, np.float32)] * (bands - 2))


def test_the_look_reads_the_coarsest_overview_at_least_64_pixels_across_and_places_its_pixels(tmp_path):
    path = with_overviews(write_raster(tmp_path / "coords.tif", coordinates_image(1536, 2048)))
    mosaic = mosaic_of(path)
    grid = LookGrid(mosaic.height, mosaic.width, 512, mosaic.bands, per_window=64)
    look = look_tile(mosaic.tiles[0], grid)
    assert look.factor == 16  # /32 is 48 x 64: under 64 pixels across
    assert 0.5 * 12 * 64 <= len(look.values) <= 2 * 12 * 64  # about 64 pixels for each of the 12 windows
    rows, cols = look.values[:, 0], look.values[:, 1]
    np.testing.assert_array_equal(look.windows, (rows // 512).astype(int) * 4 + (cols // 512).astype(int))
    record = first_look(mosaic, window=512).record
    assert record.levels == {16: 1} and record.lattice_windows == 0 and record.passes == 1


def test_a_reprojected_tiles_look_lands_where_the_mosaic_draws_its_pixels(tmp_path):
    # A tile in UTM 15 on a zone-14 grid: its look pixels, placed through the warp, fall in the
    # windows where the mosaic reader draws the pixels they stand for.
    west = write_raster(tmp_path / "west.tif", np.full((4, 512, 512), 50.0, np.float32))
    east_origin = (ORIGIN[0] + 512 * RESOLUTION, ORIGIN[1])
    from rasterio.warp import transform as transform_points

    (x,), (y,) = transform_points("EPSG:32614", "EPSG:32615", [east_origin[0]], [east_origin[1]])
    east = write_raster(tmp_path / "east.tif", coordinates_image(1024, 1024), origin=(x, y), crs="EPSG:32615")
    with_overviews(east, (2, 4, 8))
    mosaic = mosaic_of(west, east, crs="EPSG:32614")
    tile = next(t for t in mosaic.tiles if t.warp is not None)
    grid = LookGrid(mosaic.height, mosaic.width, 256, mosaic.bands, per_window=64)
    look = look_tile(tile, grid)
    assert look.factor == 8
    from pipeline.io.mosaic import to_dask

    full = to_dask(mosaic).compute()
    # Where the mosaic draws each 8 x 8 block of the source (the pixels an overview pixel stands for).
    ys, xs = np.nonzero(full[2] == 7)  # the reprojected tile's pixels
    block = (full[0, ys, xs] // 8).astype(int) * 128 + (full[1, ys, xs] // 8).astype(int)
    counts = np.bincount(block, minlength=128 * 128)
    centre_y = np.bincount(block, weights=ys, minlength=128 * 128) / np.maximum(counts, 1)
    centre_x = np.bincount(block, weights=xs, minlength=128 * 128) / np.maximum(counts, 1)
    looked = (look.values[:, 0] // 8).astype(int) * 128 + (look.values[:, 1] // 8).astype(int)
    drawn = (centre_y[looked] // 256).astype(int) * grid.columns + (centre_x[looked] // 256).astype(int)
    assert (counts[looked] > 0).all() and np.mean(drawn == look.windows) >= 0.95


def test_files_without_overviews_are_looked_at_on_a_lattice_of_windows(tmp_path):
    plain = write_raster(tmp_path / "plain.tif", np.full((4, 4096, 2048), 80, np.uint8), block=128)
    rich = with_overviews(write_raster(tmp_path / "rich.tif", np.full((4, 4096, 2048), 90, np.uint8), origin=(ORIGIN[0] + 2048 * RESOLUTION, ORIGIN[1])))
    mosaic = mosaic_of(plain, rich)
    seen = first_look(mosaic, window=128)
    # 32 x 32 windows: a lattice of one in 4 x 4, read only over the file without overviews.
    assert seen.record.lattice_stride == 4 and seen.record.lattice_windows == 8 * 4
    assert seen.record.levels == {32: 1}
    assert (seen.valid_share[seen.valid_share > 0] == 1).all()
    # An array from Python has no files: the lattice alone.
    data = xr.DataArray(np.full((4, 2048, 2048), 80, np.uint8), dims=("band", "y", "x")).rio.write_crs("EPSG:32614")
    record = first_look(as_imagery(data), window=128).record
    assert record.tiles == 0 and record.lattice_windows == 64 and record.pixels > 0


@pytest.fixture(scope="module")
def rare_mosaic(tmp_path_factory):
    """1024 x 1024 of four planted classes, with a fifth, far from them, in one window of 64 x 64
    (0.4 % of the pixels); overviews as NAIP COGs have them."""
    tmp_path = tmp_path_factory.mktemp("rare")
    truth = planted_classes(1024, 1024, 4, seed=21)
    truth[192:256, 192:256] = 4
    centres = np.vstack([class_centres(4, 4, low=40, high=160, seed=21), [[250, 5, 250, 5]]])
    image = planted_image(truth, centres, noise=3.0, dtype="uint8", seed=21)
    path = with_overviews(write_raster(tmp_path / "rare.tif", image), (2, 4, 8))
    return mosaic_of(path), truth, centres


def rare_windows(mosaic):
    covered = mosaic.covered(64)
    rows, cols = np.nonzero(covered)
    return rows * covered.shape[1] + cols, {3 * 16 + 3}


@pytest.mark.parametrize("in_memory", [True, False])
def test_windows_of_a_rare_surface_are_read_for_certain_in_one_pass_or_two(rare_mosaic, in_memory, monkeypatch):
    mosaic, _, _ = rare_mosaic
    if not in_memory:
        monkeypatch.setattr(first_look_module, "IN_MEMORY", 0)  # as at state scale: a thinned pre-fit, then per-window sums
    seen = first_look(mosaic, window=64)
    assert seen.record.passes == (1 if in_memory else 2)
    numbers, rare = rare_windows(mosaic)
    inclusion = inclusion_probabilities(seen.mass(numbers, _window_pixels(mosaic, numbers, 64, 16)), 32)
    at = {int(n): p for n, p in zip(numbers, inclusion)}
    # 32 windows of 256 read: 1 in 8 without the look; a spectral group gets 1/16 of them at least.
    assert all(at[n] == 1.0 for n in rare)
    assert np.median(inclusion) == pytest.approx(32 / 256, rel=0.3)
    assert inclusion.sum() == pytest.approx(32)


def test_the_rare_surface_is_in_every_sample_in_its_share_and_every_pixel_equally_likely(rare_mosaic):
    mosaic, truth, centres = rare_mosaic
    seen = first_look(mosaic, window=64)
    shares = {"look": [], "no look": []}
    drawn = []
    for seed in range(12):
        for design, look in (("look", seen), ("no look", False)):
            sample = draw_sample(mosaic, size=3000, seed=seed, window=64, min_windows=32, look=look).pixels
            classes = nearest(sample.T, centres)[0] - 1
            shares[design].append(np.mean(classes == 4))
            if design == "look":
                drawn.append(classes)
    truth_share = np.mean(truth == 4)
    assert min(shares["look"]) > 0.5 * truth_share  # in every sample
    assert min(shares["no look"]) == 0  # without the look, some samples miss it
    assert np.mean(shares["look"]) == pytest.approx(truth_share, rel=0.15)  # not over-represented: self-weighting
    assert np.std(shares["look"]) < 0.5 * np.std(shares["no look"])
    drawn_shares = np.bincount(np.concatenate(drawn), minlength=5) / (12 * 3000)
    np.testing.assert_allclose(drawn_shares, np.bincount(truth.ravel(), minlength=5) / truth.size, atol=0.03)


def test_the_look_and_the_sample_are_the_same_on_processes(rare_mosaic):
    mosaic, _, _ = rare_mosaic
    threaded = first_look(mosaic, window=64)
    with dask.config.set(scheduler="processes", num_workers=2):
        spawned = first_look(mosaic, window=64)
    np.testing.assert_array_equal(threaded.boost, spawned.boost)
    np.testing.assert_array_equal(threaded.reference, spawned.reference)


def test_systematic_sampling_reads_each_window_with_its_probability():
    inclusion = inclusion_probabilities(np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05]), 3)
    assert inclusion[0] == 1.0 and inclusion.sum() == pytest.approx(3)
    counts = np.zeros(6)
    for seed in range(4000):
        picked = systematic(inclusion, np.random.default_rng(seed))
        assert len(picked) == 3 == len(set(picked.tolist()))
        counts[picked] += 1
    np.testing.assert_allclose(counts / 4000, inclusion, atol=0.03)


def test_the_sample_says_how_it_was_drawn(rare_mosaic, caplog):
    mosaic, _, _ = rare_mosaic
    caplog.set_level(logging.INFO, logger="pipeline")
    drawn = draw_sample(mosaic, size=3000, seed=0, window=64, min_windows=32)
    record = drawn.record.to_json()
    assert record["windows"] == 32 and record["covered"] == 256 and record["certain"] >= 1
    assert record["inclusion"][1] == 1.0 and record["inclusion"][0] < 0.1
    assert record["first_look"]["overview_levels"] == {"8": 1} and record["weights"] == [1.0, 1.0]
    assert len(drawn.reference) > 1000 and "first look: 1 tile(s) through overviews" in caplog.text
    plan = plan_sample(mosaic, size=3000, seed=0, window=64, min_windows=32, look=first_look(mosaic, window=64))
    assert max(p * q for p, q in zip(plan.inclusion, plan.rates)) == pytest.approx(plan.pi)  # every pixel equally likely


def test_a_sliver_of_windows_at_the_edge_does_not_make_the_sample_read_everything(tmp_path):
    # 1025 rows: the last row of 64-pixel windows is one pixel high. Its windows stay likely
    # enough that their pixels' rate is at most 1 without reading more windows than planned.
    truth = planted_classes(1025, 1024, 4, seed=5)
    image = planted_image(truth, class_centres(4, 4, low=40, high=200, seed=5), noise=3.0, dtype="uint8", seed=5)
    mosaic = mosaic_of(with_overviews(write_raster(tmp_path / "sliver.tif", image), (2, 4, 8)))
    plan = plan_sample(mosaic, size=3000, seed=0, window=64, min_windows=32, look=first_look(mosaic, window=64))
    assert plan.covered == 17 * 16 and plan.strata <= 40  # 32 planned
    assert max(plan.rates) <= 1.0
