"""Mosaics across UTM zones: with input.crs, tiles of another CRS are reprojected, never dropped."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import (
    Resampling,
    calculate_default_transform,
    reproject,
    transform_bounds,
)
from rasters import (
    RESOLUTION,
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)
from sklearn.metrics import adjusted_rand_score

from pipeline import InputError, load_config, run
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.stages.edge import input_spec

# 2 km across the zone 14 / zone 15 border (96° W) at 47° N, in zone 14 coordinates.
ORIGIN = (727_000.0, 5_210_600.0)
SIZE = 1000
SPLIT = 560  # the zone 14 tile keeps columns :SPLIT, the zone 15 tile columns SPLIT - 60:


def to_crs(source: Path, destination: Path, crs: str) -> Path:
    """gdalwarp -t_srs crs -r near, through rasterio."""
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        profile = {**src.profile, "photometric": "MINISBLACK", "crs": crs, "transform": transform, "width": width, "height": height}
        with rasterio.open(destination, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.nearest)
    return destination


@pytest.fixture
def two_zones(tmp_path):
    truth = planted_classes(SIZE, SIZE, 4, seed=7)
    image = planted_image(truth, class_centres(4, 4, low=20, high=240, seed=7), noise=3.0, dtype="uint8", seed=7)
    west = write_raster(tmp_path / "west_z14.tif", image[:, :, :SPLIT], origin=ORIGIN, nodata=0)
    east_origin = (ORIGIN[0] + RESOLUTION * (SPLIT - 60), ORIGIN[1])
    east14 = write_raster(tmp_path / "east_z14.tif", image[:, :, SPLIT - 60 :], origin=east_origin, nodata=0)
    east = to_crs(east14, tmp_path / "east_z15.tif", "EPSG:32615")
    east14.unlink()
    return truth, west, east


def test_tiles_in_two_utm_zones_each_contribute_labelled_pixels(two_zones, make_config, caplog):
    truth, west, east = two_zones
    caplog.set_level(logging.INFO, logger="pipeline")
    config = load_config(make_config([west, east], input={"crs": "EPSG:32614"}, model={"k": 4}, dask={"chunk": 512}))
    result = run(config)
    assert "2 file(s) on EPSG:32614 at 2 (the finest of the tiles in EPSG:32614), 1 reprojected" in caplog.text
    with rasterio.open(result.output) as out:
        labels, grid, bounds = out.read(1), out.transform, out.bounds
        assert out.crs.to_epsg() == 32614 and out.res == (RESOLUTION, RESOLUTION)
    for tile in (west, east):  # the footprint is the union of every tile's reprojected bounds
        with rasterio.open(tile) as src:
            left, bottom, right, top = transform_bounds(src.crs, "EPSG:32614", *src.bounds)
        assert bounds.left <= left and bounds.bottom <= bottom and bounds.right >= right and bounds.top >= top
    row0, col0 = round((grid.f - ORIGIN[1]) / RESOLUTION), round((ORIGIN[0] - grid.c) / RESOLUTION)
    scene = labels[row0 : row0 + SIZE, col0 : col0 + SIZE]
    # The zone 14 tile is on the grid as it is: where the other tile is not drawn on top of it,
    # its classes come back exactly.
    assert adjusted_rand_score(truth[:, : SPLIT - 60].ravel(), scene[:, : SPLIT - 60].ravel()) == 1.0
    # Only the zone 15 tile covers the east: nearly all of it is labelled, with the planted classes
    # (two nearest-neighbour warps move a patch edge by at most a pixel).
    east_only = scene[:, SPLIT:]
    assert (east_only > 0).mean() > 0.99
    valid = east_only > 0
    assert adjusted_rand_score(truth[:, SPLIT:][valid], east_only[valid]) > 0.9


def test_mixed_crs_without_input_crs_names_both_files_and_the_key(two_zones, make_config):
    _, west, east = two_zones
    with pytest.raises(InputError, match=r"east_z15.tif: CRS EPSG:32615 differs from .*west_z14.tif \(EPSG:32614\); set input.crs \(e.g. EPSG:32614\)"):
        open_mosaic(input_spec(load_config(make_config([west, east])).input), chunk=512)


def test_naip_scene_reprojected_to_the_next_zone_joins_the_mosaic(naip_scenes, make_config, tmp_path):
    moved = to_crs(naip_scenes[-1], tmp_path / "naip_z15.tif", "EPSG:32615")
    config = load_config(make_config([naip_scenes[0], moved], input={"crs": "EPSG:26914"}, model={"k": 4}, sample={"size": 50_000}))
    mosaic = open_mosaic(input_spec(config.input), chunk=config.dask.chunk)
    assert [t.warp is not None for t in mosaic.tiles] == [False, True] and mosaic.transform.a == 5.0
    grid = rasterio.transform.array_bounds(mosaic.height, mosaic.width, mosaic.transform)
    for scene in (naip_scenes[0], moved):
        with rasterio.open(scene) as src:
            left, bottom, right, top = transform_bounds(src.crs, "EPSG:26914", *src.bounds)
        assert grid[0] <= left + 1e-6 and grid[1] <= bottom + 1e-6 and grid[2] >= right - 1e-6 and grid[3] >= top - 1e-6
    # The moved scene alone, read through its WarpedVRT on the mosaic's grid: its pixels are all
    # there (the 5 m grid keeps the area) and every one of them is labelled.
    alone = to_dask(dataclasses.replace(mosaic, tiles=mosaic.tiles[1:])).compute()
    from_moved = ~np.isnan(alone).any(axis=0)
    with rasterio.open(naip_scenes[-1]) as src:
        assert from_moved.sum() == pytest.approx((src.read() != 0).any(axis=0).sum(), rel=0.01)
    labels = read_labels(run(config).output)
    assert labels.shape == from_moved.shape and (labels[from_moved] > 0).all()


def test_reprojection_is_exact_and_does_not_depend_on_the_window(naip_scenes, tmp_path):
    from rasterio.warp import transform as transform_points
    from rasterio.windows import Window

    from pipeline.config import InputConfig
    from pipeline.io.mosaic import read

    moved = to_crs(naip_scenes[0], tmp_path / "naip_z15.tif", "EPSG:32615")
    mosaic = open_mosaic(input_spec(InputConfig(paths=str(moved), crs="EPSG:26914")), chunk=256)
    whole = read(mosaic.plan(Window(0, 0, mosaic.width, mosaic.height)))
    # Any chunking gives the same pixels (the source positions hang on a lattice of the footprint).
    np.testing.assert_array_equal(to_dask(mosaic).compute(), whole)
    with rasterio.open(moved) as src:
        source, inverse, source_crs = src.read(), ~src.transform, src.crs
        gdal = np.zeros((src.count, mosaic.height, mosaic.width), np.uint8)
        reproject(source, gdal, src_transform=src.transform, src_crs=src.crs, dst_transform=mosaic.transform,
                  dst_crs=mosaic.crs, resampling=Resampling.nearest, src_nodata=0, dst_nodata=0, tolerance=0)
    ours = np.nan_to_num(whole, nan=0).astype(np.uint8)
    # Every pixel takes the source pixel that contains its centre, projected exactly by PROJ.
    rows, cols = np.unravel_index(np.random.default_rng(0).choice(whole[0].size, 5000, replace=False), whole[0].shape)
    t = mosaic.transform
    xs, ys = t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e
    sx, sy = (np.asarray(v) for v in transform_points(mosaic.crs, source_crs, xs, ys))
    src_cols = np.floor(inverse.a * sx + inverse.b * sy + inverse.c).astype(int)
    src_rows = np.floor(inverse.d * sx + inverse.e * sy + inverse.f).astype(int)
    inside = (src_rows >= 0) & (src_rows < source.shape[1]) & (src_cols >= 0) & (src_cols < source.shape[2])
    np.testing.assert_array_equal(ours[:, rows[inside], cols[inside]], source[:, src_rows[inside], src_cols[inside]])
    # GDAL's warper picks a neighbour where a centre falls within ~0.01 pixel of an edge.
    assert (ours == gdal).all(axis=0).mean() > 0.99
