"""The per-block kernels, tested without dask against brute force."""

import numpy as np
import pytest
from rasters import assign_labels
from scipy.spatial.distance import cdist

from pipeline import ConfigError
from pipeline.algo.kernel import class_statistics, label_block, nearest_all
from pipeline.algo.kmeans import class_order
from pipeline.algo.lloyd import sum_squared_errors
from pipeline.algo.sample import sample_block, valid_pixels


@pytest.mark.parametrize("k", [2, 7, 254])
def test_nearest_matches_brute_force(k):
    rng = np.random.default_rng(k)
    pixels = rng.uniform(0, 255, (4, 5000)).astype(np.float32)
    centroids = rng.uniform(0, 255, (k, 4))
    label, best, second, stats = nearest_all(pixels, centroids, dtype=np.float64)
    squared = cdist(pixels.T.astype(np.float64), centroids, "sqeuclidean")
    np.testing.assert_array_equal(label, squared.argmin(axis=1) + 1)
    two = np.sort(squared, axis=1)[:, :2]
    np.testing.assert_allclose(best, two[:, 0], rtol=1e-12)
    np.testing.assert_allclose(second, two[:, 1], rtol=1e-12)
    assert label.dtype == np.uint8 and label.min() >= 1 and label.max() <= k
    np.testing.assert_array_equal(stats[1:, 0], np.bincount(label, minlength=k + 1)[1:])
    np.testing.assert_allclose(stats[1:, 1], np.bincount(label, weights=pixels[0], minlength=k + 1)[1:])


def test_nan_pixels_get_label_zero_and_ties_the_lower_class():
    block = np.array([[[np.nan, 5.0, 0.0]], [[1.0, 5.0, 0.0]]], dtype=np.float32)  # (band, y, x)
    centroids = np.array([[0.0, 0.0], [10.0, 10.0]])
    np.testing.assert_array_equal(assign_labels(block, centroids), [[0, 1, 1]])


def test_labels_do_not_depend_on_the_block_shape():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (3, 64, 80)).astype(np.float32)
    centroids = rng.uniform(0, 255, (9, 3))
    whole = assign_labels(image, centroids)
    pieces = np.block([[assign_labels(image[:, r : r + 16, c : c + 20], centroids) for c in range(0, 80, 20)] for r in range(0, 64, 16)])
    np.testing.assert_array_equal(whole, pieces)


def test_class_statistics_count_and_sum_per_class():
    block = np.array([[[1.0, 2.0, np.nan]], [[10.0, 20.0, np.nan]]], dtype=np.float32)
    centroids = np.array([[0.0, 0.0], [100.0, 100.0]])
    labels, stats, _ = label_block(block, centroids)
    np.testing.assert_array_equal(labels, [[1, 1, 0]])
    np.testing.assert_array_equal(stats, [[1, 0, 0], [2, 3, 30], [0, 0, 0]])
    np.testing.assert_array_equal(class_statistics(block, labels, 2), stats)


def test_sum_squared_errors_is_exact_in_memory_and_chunked():
    import dask.array as da

    rng = np.random.default_rng(2)
    matrix = rng.uniform(0, 255, (30_000, 4)).astype(np.float32)
    centroids = rng.uniform(0, 255, (5, 4))
    exact = cdist(matrix.astype(np.float64), centroids, "sqeuclidean").min(axis=1).sum()
    assert sum_squared_errors(matrix, centroids) == pytest.approx(exact, rel=1e-12)
    assert sum_squared_errors(da.from_array(matrix, chunks=(7000, 4)), centroids) == pytest.approx(exact, rel=1e-12)


def test_order_by_brightness_is_independent_of_input_order():
    spectra = np.array([[200.0, 10.0], [5.0, 5.0], [10.0, 200.0], [50.0, 60.0]])
    ordered = spectra[class_order(spectra, ("a", "b"), "brightness")]
    np.testing.assert_array_equal(ordered, spectra[::-1][class_order(spectra[::-1], ("a", "b"), "brightness")])
    assert list(ordered.mean(axis=1)) == sorted(ordered.mean(axis=1))
    np.testing.assert_array_equal(ordered[2:], [[10.0, 200.0], [200.0, 10.0]])  # tie: band 1 decides
    np.testing.assert_array_equal(class_order(spectra, ("a", "b"), "none"), [0, 1, 2, 3])


def test_order_by_ndvi_needs_red_and_nir():
    spectra = np.array([[30.0, 200.0], [100.0, 90.0], [60.0, 20.0]])  # (red, nir): vegetation first
    order = class_order(spectra, ("Red", "NIR"), "ndvi")
    np.testing.assert_array_equal(order, [2, 1, 0])
    with pytest.raises(ConfigError, match=r"model.order_by: ndvi needs input bands named red and nir, but the bands are band1, band2; name them with input.band_names"):
        class_order(spectra, ("band1", "band2"), "ndvi")


@pytest.mark.parametrize("k", [2, 7, 254])
def test_margin_is_the_gap_between_the_two_nearest_centroids(k):
    rng = np.random.default_rng(k)
    block = rng.uniform(0, 255, (4, 40, 50)).astype(np.float32)
    block[:, :3, :5] = np.nan
    centroids = rng.uniform(0, 255, (k, 4))
    labels, _, margin = label_block(block, centroids, with_margin=True)
    np.testing.assert_array_equal(labels, assign_labels(block, centroids))
    distances = np.sort(cdist(block.reshape(4, -1).T.astype(np.float64), centroids), axis=1)
    expected = (distances[:, 1] - distances[:, 0]).reshape(40, 50)
    valid = labels > 0
    np.testing.assert_allclose(margin[valid], expected[valid], atol=1e-2)  # float32 distances up to ~400
    assert margin.dtype == np.float32 and (margin[valid] >= 0).all()
    assert np.isnan(margin[~valid]).all() and (~valid).sum() == 15


def test_sample_block_is_seeded_by_block_index_and_skips_nodata():
    rng = np.random.default_rng(3)
    block = rng.uniform(0, 255, (4, 50, 50)).astype(np.float32)
    block[:, :10] = np.nan
    keys, pixels = sample_block(block, seed=7, index=23, rate=0.5)
    again = sample_block(block, seed=7, index=23, rate=0.5)
    other = sample_block(block, seed=7, index=24, rate=0.5)
    np.testing.assert_array_equal(pixels, again[1])
    assert not np.array_equal(keys, other[0][: len(keys)])
    assert not np.isnan(pixels).any() and (keys < 1).all()  # keys are normalised by the rate
    assert 0.4 < len(pixels) / len(valid_pixels(block)) < 0.6
