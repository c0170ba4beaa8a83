"""The two-stage sample: stratified seeded windows, then seeded keys per pixel, on real GeoTIFFs."""

import logging
import re

import numpy as np
import pytest
from rasters import (
    ORIGIN,
    RESOLUTION,
    class_centres,
    planted_classes,
    planted_image,
    write_raster,
)

from pipeline.algo.first_look import first_look
from pipeline.algo.kernel import nearest
from pipeline.algo.sample import draw_sample
from pipeline.config import InputConfig
from pipeline.io.mosaic import open_mosaic
from pipeline.stages.edge import input_spec

K = 4


def windows_read(caplog) -> tuple[int, int, int]:
    """(windows read, windows covered, rounds) from the sample's log line."""
    message = [r.getMessage() for r in caplog.records if r.name == "pipeline.algo.sample"][-1]
    read, total, rounds = re.search(r"from (\d+) of (\d+) windows \(\d+ strata, (\d+) round", message).groups()
    return int(read), int(total), int(rounds)


@pytest.fixture
def planted_mosaic(tmp_path):
    truth = planted_classes(1024, 1024, K, seed=11)
    centres = class_centres(K, 4, low=20, high=240, seed=11)
    image = planted_image(truth, centres, noise=2.0, dtype="uint8", seed=11)
    path = write_raster(tmp_path / "planted.tif", image)
    return open_mosaic(input_spec(InputConfig(paths=str(path))), chunk=512), truth, centres


def test_reads_a_fraction_of_the_windows_and_stays_unbiased(planted_mosaic, caplog):
    mosaic, truth, centres = planted_mosaic
    caplog.set_level(logging.INFO, logger="pipeline.algo.sample")
    classes = []
    look = first_look(mosaic, window=64)  # the same for every seed: looked at once
    for seed in range(32):
        sample = draw_sample(mosaic, size=2000, seed=seed, window=64, min_windows=32, look=look).pixels
        assert len(sample) == 2000 and not np.isnan(sample).any()
        assert windows_read(caplog) == (32, 256, 1)  # one round: an eighth of the mosaic decoded
        classes.append(nearest(sample.T, centres)[0] - 1)
    # Every pixel is equally likely to be drawn, so class shares match the truth map's.
    drawn = np.bincount(np.concatenate(classes), minlength=K) / (32 * 2000)
    np.testing.assert_allclose(drawn, np.bincount(truth.ravel(), minlength=K) / truth.size, atol=0.03)


def test_nodata_heavy_mosaic_raises_the_rate_until_the_sample_is_full(tmp_path, caplog):
    truth = planted_classes(1024, 1024, K, seed=12)
    image = planted_image(truth, class_centres(K, 4, low=20, high=240, seed=12), noise=2.0, dtype="uint8", seed=12)
    image[:, 128:] = 0  # seven eighths nodata
    mosaic = open_mosaic(input_spec(InputConfig(paths=str(write_raster(tmp_path / "collar.tif", image, nodata=0)))), chunk=512)
    caplog.set_level(logging.INFO, logger="pipeline.algo.sample")
    sample = draw_sample(mosaic, size=4000, seed=0, window=64, min_windows=32).pixels
    assert len(sample) == 4000 and not np.isnan(sample).any() and (sample > 0).any(axis=1).all()
    read, total, rounds = windows_read(caplog)
    assert rounds > 1 and 32 <= read <= total == 256


def test_strata_of_an_irregular_mosaic_keep_every_pixel_equally_likely(tmp_path):
    # Three tiles in an L (a quarter of the bounding box empty), each its own classes, and strata
    # that straddle tiles: class shares of the sample still match the mosaic's.
    centres = class_centres(K, 4, low=20, high=240, seed=13)
    half = np.kron(np.array([[2, 3]]), np.ones((256, 128), dtype=int))
    truths = [np.zeros((256, 256), int), np.ones((256, 256), int), half]
    origins = [(0, 0), (0, 256), (256, 0)]  # (row, col) in pixels
    paths = []
    for n, (truth, (row, col)) in enumerate(zip(truths, origins)):
        image = planted_image(truth, centres, noise=2.0, dtype="uint8", seed=n)
        origin = (ORIGIN[0] + col * RESOLUTION, ORIGIN[1] - row * RESOLUTION)
        paths.append(str(write_raster(tmp_path / f"tile{n}.tif", image, origin=origin)))
    mosaic = open_mosaic(input_spec(InputConfig(paths=paths)), chunk=512)
    drawn = []
    look = first_look(mosaic, window=64)
    for seed in range(40):
        sample = draw_sample(mosaic, size=600, seed=seed, window=64, min_windows=7, look=look).pixels
        drawn.append(nearest(sample.T, centres)[0] - 1)
    shares = np.bincount(np.concatenate(drawn), minlength=K) / (40 * 600)
    np.testing.assert_allclose(shares, [1 / 3, 1 / 3, 1 / 6, 1 / 6], atol=0.03)
