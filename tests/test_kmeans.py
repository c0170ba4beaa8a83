"""The fit: the same optimum whatever the seed, the same centroids on any scheduler, and a record
of how many restarts agreed."""

import json
import logging

import dask
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from pipeline import load_config, run
from pipeline.config import ModelConfig
from pipeline.kmeans import Restarts, fit_kmeans, kmeans_plusplus, lloyd, same_map, sum_squared_errors
from pipeline.html_report import report_for
from pipeline.label import nearest
from rasters import class_centres, planted_classes, planted_image, write_raster

DEFAULTS = ModelConfig()


def blobs(seed: int, *, k: int = 10, n: int = 40_000, bands: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shuffled (n, band) sample of k Gaussian blobs of unequal sizes and spreads, the blob of
    each pixel and the blobs' means: a landscape where one k-means++ start often ends in a local
    optimum."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 235, (k, bands))
    counts = np.maximum((rng.dirichlet(np.ones(k)) * n).astype(int), 50)
    spread = rng.uniform(2, 8, k)
    pixels = np.concatenate([c + s * rng.standard_normal((m, bands)) for c, s, m in zip(centres, spread, counts)])
    truth = np.repeat(np.arange(k), counts)
    order = rng.permutation(len(pixels))
    pixels, truth = pixels[order].astype(np.float32), truth[order]
    return pixels, truth, np.array([pixels[truth == j].mean(axis=0, dtype=np.float64) for j in range(k)])


def fit(sample: np.ndarray, *, k: int = 10, n_init: int = DEFAULTS.n_init, seed: int = 0):
    return fit_kmeans(sample, seeds_from=sample, k=k, n_init=n_init, max_iter=DEFAULTS.max_iter, tol=DEFAULTS.tol, seed=seed)


def test_default_restarts_find_the_planted_optimum_where_one_start_does_not():
    sample, truth, means = blobs(3)
    planted = sum_squared_errors(sample, means)
    one_start = [fit(sample, n_init=1, seed=seed).inertia / planted for seed in range(4)]
    assert sum(r > 1.01 for r in one_start) >= 2, one_start  # the trap is real
    for seed in range(4):
        found = fit(sample, seed=seed)
        assert found.inertia <= planted  # the blobs overlap a little: the optimum shaves their edges
        assert adjusted_rand_score(truth, nearest(sample.T, found.centroids)[0]) > 0.99


def test_same_seed_same_centroids_on_any_scheduler():
    sample, _, _ = blobs(2, n=20_000)
    with dask.config.set(scheduler="threads"):
        first = fit(sample, k=6, n_init=5, seed=7)
    with dask.config.set(scheduler="synchronous"):
        again = fit(sample, k=6, n_init=5, seed=7)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    assert first.restarts == again.restarts
    assert fit(sample, k=6, n_init=5, seed=8).restarts != first.restarts  # the seed does choose the starts


def test_lloyd_converges_to_the_means_of_its_labels_and_mends_empty_classes():
    sample, _, _ = blobs(1, k=4, n=8_000, bands=3)
    start = np.repeat(sample[:1].astype(np.float64), 4, axis=0)  # four identical centres: three start empty
    centroids, _, inertia = lloyd(np.ascontiguousarray(sample.T), start, max_iter=300, tol=0.0)
    labels = np.argmin(((sample[:, None] - centroids[None]) ** 2).sum(axis=2), axis=1)
    assert np.bincount(labels, minlength=4).min() > 0
    np.testing.assert_allclose(centroids, [sample[labels == j].mean(axis=0, dtype=np.float64) for j in range(4)], rtol=1e-6)
    assert inertia == pytest.approx(sum_squared_errors(sample, centroids), rel=1e-6)


def test_kmeans_plusplus_draws_distinct_pixels_of_the_sample():
    sample, _, _ = blobs(0, k=5, n=5_000)
    centres = kmeans_plusplus(sample, 5, np.random.default_rng(0))
    assert len({tuple(c) for c in centres}) == 5
    assert all((sample == c.astype(np.float32)).all(axis=1).any() for c in centres)


@pytest.mark.parametrize(
    "inertias, reached, unstable",
    [
        ((100.0,), 1, None),  # one restart cannot tell
        ((100.0, 100.05, 100.08), 3, False),  # all within 0.1 %
        ((100.0, 103.0, 104.0), 1, True),  # a lucky start: another seed would likely miss it
        ((100.0,) * 3 + (103.0,) * 17, 3, False),  # 3 of 20: (17/20)^20 = 3.9 % chance of missing
        ((100.0,) * 2 + (103.0,) * 18, 2, True),  # 2 of 20: 12 %
    ],
)
def test_restart_statistics(inertias, reached, unstable):
    restarts = Restarts(inertias, rows=1000)
    assert restarts.reached_best == reached and restarts.unstable is unstable
    assert restarts.to_json()["count"] == len(inertias)


def test_restart_statistics_are_recorded_in_the_model(tmp_path, make_config, caplog):
    truth = planted_classes(400, 500, 4, seed=1)
    image = planted_image(truth, class_centres(4, 4, low=10, high=250, seed=1), noise=3.0, dtype="uint8", seed=1)
    path = write_raster(tmp_path / "scene.tif", image)
    with caplog.at_level(logging.INFO, logger="pipeline.kmeans"):
        result = run(load_config(make_config([path], model={"k": 4, "n_init": 6})))
    record = json.loads(result.model_path.read_text())["fit"]
    assert record["restarts"]["count"] == 6 and len(record["restarts"]["inertias"]) == 6
    assert record["restarts"]["reached_best"] == Restarts(tuple(record["restarts"]["inertias"]), rows=1).reached_best
    assert record["unstable"] is False  # four separated classes: every start finds them
    assert "6 restart(s) on 100000 pixels, 6 within 0.1 %" in caplog.text
    page = result.html_path.read_text()
    assert "6 of 6 reached the best inertia; " in page and "Unstable fit" not in page
    model = json.loads(result.model_path.read_text())
    model["fit"]["unstable"] = True  # as an unstable fit records it
    result.model_path.write_text(json.dumps(model))
    assert "Unstable fit" in report_for(result.output).read_text()


def test_an_unstable_fit_is_logged(caplog):
    sample, _, _ = blobs(3)  # where one start in ten finds the best optimum
    with caplog.at_level(logging.WARNING, logger="pipeline.kmeans"):
        found = fit(sample, n_init=3, seed=0)
    assert found.restarts.unstable and found.restarts.reached_best == 1
    assert "only 1 of 3 restarts reached the best inertia" in caplog.text


def test_same_map_ignores_class_numbers_but_not_moved_pixels():
    labels = np.random.default_rng(0).integers(1, 6, 10_000).astype(np.uint8)
    renumbered = np.array([0, 3, 5, 1, 2, 4], np.uint8)[labels]
    assert same_map(labels, renumbered, 5)
    moved = renumbered.copy()
    moved[:200] = np.where(moved[:200] == 1, 2, 1)  # about 2 % of the pixels change class
    assert not same_map(labels, moved, 5)


def test_two_equally_good_maps_are_a_tie():
    rng = np.random.default_rng(0)
    corners = np.array([[0.0, 0.0], [100.0, 0.0], [50.0, 50.0 * np.sqrt(3)]])  # equilateral: k = 2 has three answers
    sample = (np.repeat(corners, 20_000, axis=0) + rng.standard_normal((60_000, 2))).astype(np.float32)
    found = fit(sample[rng.permutation(len(sample))], k=2)
    assert found.restarts.tied and found.restarts.unstable
