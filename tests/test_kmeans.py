"""The fit: the same optimum whatever the seed, the same centroids on any scheduler, and a record
of how many restarts agreed."""

import json
import logging
from typing import get_args

import dask
import dask.array as da
import numpy as np
import pytest
from rasters import class_centres, planted_classes, planted_image, write_raster
from sklearn.metrics import adjusted_rand_score

from pipeline import load_config, run
from pipeline.algo.kernel import nearest
from pipeline.algo.kmeans import RESTART_ROWS, fit_kmeans
from pipeline.algo.lloyd import chunked_lloyd, lloyd, same_map, sum_squared_errors
from pipeline.algo.restarts import Restarts
from pipeline.algo.seeding import (
    KERNEL_CENTRES,
    SEEDINGS,
    kmeans_parallel,
    kmeans_plusplus,
    oversample,
)
from pipeline.algo.swaps import improve
from pipeline.config import ModelConfig
from pipeline.errors import DataError
from pipeline.products.html import report_for

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


def separated(seed: int, *, k: int = 8, n: int = 20_000, bands: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shuffled (n, band) sample of k tight blobs of very unequal sizes, far apart (their
    centres are corners of a cube 100 wide, the spread 1), the blob of each pixel and the centres."""
    rng = np.random.default_rng(seed)
    corners = 100.0 * np.array([[(j >> b) & 1 for b in range(bands)] for j in range(k)])
    truth = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 0.5)) * 0.9 + 0.1 / k)
    return (corners[truth] + rng.standard_normal((n, bands))).astype(np.float32), truth, corners


def fit(sample: np.ndarray, *, k: int = 10, n_init: int = DEFAULTS.n_init, seed: int = 0, init: str = "k-means++"):
    return fit_kmeans(
        sample, seeds_from=sample, k=k, n_init=n_init, max_iter=DEFAULTS.max_iter, tol=DEFAULTS.tol, seed=seed, init=init
    )


def test_default_restarts_find_the_planted_optimum_where_one_start_does_not():
    sample, truth, means = blobs(3)
    planted = sum_squared_errors(sample, means)
    pixels = np.ascontiguousarray(sample.T)

    def one_start(seed: int) -> float:
        start = kmeans_plusplus(sample, 10, np.random.default_rng([seed, 0]))
        return lloyd(pixels, start, max_iter=300, tol=0.0)[2] / planted

    assert sum(one_start(seed) > 1.01 for seed in range(4)) >= 2  # the trap is real
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


@pytest.mark.parametrize("distinct_in_reference", [None, 3])
def test_threads_run_the_restarts_side_by_side_and_change_no_bit(distinct_in_reference):
    # Restarts, the first look's starts and the probes on the whole sample in threads; a
    # reference of 3 distinct pixels for 6 classes makes the look's starts fail (none are kept).
    sample, _, _ = blobs(4, n=RESTART_ROWS + 30_000)
    reference = sample[::20] if distinct_in_reference is None else np.repeat(sample[:distinct_in_reference], 300, axis=0)
    fits = [
        fit_kmeans(
            sample, seeds_from=sample, k=6, n_init=9, max_iter=DEFAULTS.max_iter, tol=DEFAULTS.tol, seed=3,
            reference=reference, threads=threads,
        )
        for threads in (1, 4)
    ]
    np.testing.assert_array_equal(fits[0].centroids, fits[1].centroids)
    assert fits[0].restarts == fits[1].restarts and len(fits[0].restarts.inertias) == 9
    assert (fits[0].n_iter, fits[0].inertia) == (fits[1].n_iter, fits[1].inertia)


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
    with caplog.at_level(logging.INFO, logger="pipeline.algo"):
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
    with caplog.at_level(logging.WARNING, logger="pipeline.algo"):
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


def test_the_seedings_are_the_configs_choices_and_k_means_plusplus_is_the_default():
    assert set(get_args(ModelConfig.model_fields["init"].annotation)) == set(SEEDINGS)
    sample, _, _ = separated(0, n=2_000)
    unset = fit_kmeans(sample, seeds_from=sample, k=8, n_init=2, max_iter=DEFAULTS.max_iter, tol=DEFAULTS.tol, seed=0)
    assert unset.seeding == DEFAULTS.init == "k-means++"
    with pytest.raises(ValueError, match="k-means"):
        fit(sample, k=8, init="random")


@pytest.mark.parametrize("seed", range(5))
def test_k_means_parallel_puts_one_start_in_each_separated_class_and_recovers_them(seed):
    sample, truth, corners = separated(seed)
    start = kmeans_parallel(sample, 8, np.random.default_rng([seed, 0]))
    assert sorted(nearest(start.T, corners)[0]) == list(range(1, 9))  # one start in each class
    found = fit(sample, k=8, n_init=1, seed=seed, init="k-means||")
    assert found.seeding == "k-means||"
    assert adjusted_rand_score(truth, nearest(sample.T, found.centroids)[0]) == 1.0


def test_k_means_parallel_is_deterministic_per_seed_and_not_k_means_plusplus():
    sample, _, _ = blobs(3)
    head = sample[:RESTART_ROWS]
    first = kmeans_parallel(head, 10, np.random.default_rng([4, 0]))
    np.testing.assert_array_equal(first, kmeans_parallel(head, 10, np.random.default_rng([4, 0])))
    assert not np.array_equal(first, kmeans_parallel(head, 10, np.random.default_rng([5, 0])))
    assert not np.array_equal(first, kmeans_plusplus(head, 10, np.random.default_rng([4, 0])))
    # Through the fit: the same seed gives the same restarts, and init does choose them (where
    # starts end in different optima, as here, other starts reach other inertias).
    parallel = fit(sample, n_init=5, seed=4, init="k-means||")
    again = fit(sample, n_init=5, seed=4, init="k-means||")
    np.testing.assert_array_equal(parallel.centroids, again.centroids)
    assert parallel.restarts == again.restarts
    assert parallel.restarts.inertias != fit(sample, n_init=5, seed=4, init="k-means++").restarts.inertias


@pytest.mark.parametrize("init", sorted(SEEDINGS))
def test_duplicate_pixels_and_k_as_large_as_the_distinct_pixels(init):
    rng = np.random.default_rng(0)
    distinct = rng.uniform(0, 255, (6, 3)).astype(np.float32)
    sample = np.repeat(distinct, [5_000, 2_000, 500, 50, 5, 1], axis=0)[rng.permutation(7_556)]
    found = fit(sample, k=6, n_init=3, init=init)
    np.testing.assert_allclose(np.sort(found.centroids, axis=0), np.sort(distinct, axis=0), rtol=1e-6)
    assert found.inertia == 0
    with pytest.raises(DataError, match="only 6 distinct spectral group"):
        fit(sample, k=7, n_init=3, init=init)


def test_weighted_k_means_plusplus_counts_each_candidate_weight_times():
    points = np.array([[0.0, 0.0], [10.0, 0.0], [1000.0, 1000.0]])
    for seed in range(20):
        # Unweighted, the far point is all but certain to be a centre; with weight 0 it is never one.
        centres = kmeans_plusplus(points, 2, np.random.default_rng(seed), weights=np.array([5, 5, 0]))
        assert sorted(map(tuple, centres)) == [(0.0, 0.0), (10.0, 0.0)]
    firsts = [kmeans_plusplus(points[:2], 2, np.random.default_rng(seed), weights=np.array([1, 999]))[0, 0] for seed in range(20)]
    assert firsts.count(10.0) >= 19  # the first centre is drawn by weight (unweighted: half the time)
    # After 0 (weight 1e9: first), 3 and 5 are drawn equally often (d^2 w = 900 each) for the 2
    # trials; where both are drawn, 3 wins by the inertia it leaves, 4 x 36 against 4 x 100 (a tie
    # unweighted). So 3 is the second centre 3/4 of the time (1/2 with an unweighted inertia).
    line, weights = np.array([[0.0], [3.0], [5.0]]), np.array([1e9, 100, 36])
    seconds = [kmeans_plusplus(line, 2, np.random.default_rng(seed), weights=weights)[1, 0] for seed in range(200)]
    assert seconds.count(3.0) >= 120, seconds.count(3.0)  # 140 here; 84 with an unweighted inertia


def test_oversample_weights_each_candidate_by_the_pixels_nearest_to_it():
    sample, _, _ = blobs(0, k=10, n=3_000, bands=3)
    # k = 150: about 300 draws a round, more than the kernel labels at once (counted in batches).
    chosen, weights = oversample(sample, 150, np.random.default_rng(0))
    assert len(chosen) > 3 * KERNEL_CENTRES
    assert len(np.unique(chosen, axis=0)) == len(chosen)
    assert all((sample == c.astype(np.float32)).all(axis=1).any() for c in chosen[:50])
    pixels = sample.astype(np.float64)
    brute = np.concatenate([np.argmin(((rows[:, None] - chosen[None]) ** 2).sum(axis=2), axis=1) for rows in np.split(pixels, 6)])
    np.testing.assert_array_equal(weights, np.bincount(brute, minlength=len(chosen)))
    assert weights.sum() == len(sample)


def test_k_means_parallel_reduces_by_weight_not_to_the_outliers_it_oversamples():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0, 0], [100, 0, 0], [0, 100, 0]])
    directions = rng.standard_normal((100, 3))
    outliers = 50 + 400 * directions / np.linalg.norm(directions, axis=1)[:, None]  # far, and far apart
    sample = np.concatenate([np.repeat(centres, 10_000, axis=0) + rng.standard_normal((30_000, 3)), outliers]).astype(np.float32)
    for seed in range(10):
        # Drawn by d^2, the outliers are many of the candidates, but each stands for one pixel only.
        # (Reduced unweighted, they fall on outliers for every one of these seeds.)
        start = kmeans_parallel(sample, 3, np.random.default_rng(seed))
        blob, dist = nearest(start.T, centres, dtype=np.float64)
        assert sorted(blob) == [1, 2, 3] and dist.max() < 30**2


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float32 pixels around 5 centres, and a start near (not at) each centre."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 200, (5, 4))
    x = (centres[rng.integers(0, 5, n)] + rng.normal(0, 12, (n, 4))).astype(np.float32)
    return x, centres + rng.normal(0, 8, centres.shape)


def test_the_chunked_lloyd_is_the_in_memory_one_and_independent_of_the_scheduler():
    x, start = _blobs(60_000)
    expected, iterations, _ = lloyd(np.ascontiguousarray(x.T), start, max_iter=100, tol=0.0)
    chunked = da.from_array(x, chunks=(7_001, -1))  # 9 chunks, the last partial
    with dask.config.set(scheduler="threads"):
        threads, n_threads = chunked_lloyd(chunked, start, max_iter=100, tol=0.0)
    with dask.config.set(scheduler="synchronous"):
        synchronous, _ = chunked_lloyd(chunked, start, max_iter=100, tol=0.0)
    np.testing.assert_array_equal(threads, synchronous)  # sums added in chunk order: not a bit moves
    np.testing.assert_allclose(threads, expected, rtol=1e-9)
    assert n_threads == iterations > 1
    other, _ = chunked_lloyd(da.from_array(x, chunks=(20_000, -1)), start, max_iter=100, tol=0.0)
    np.testing.assert_allclose(other, threads, rtol=1e-9)


def test_the_chunked_lloyd_keeps_the_centre_of_a_class_left_empty_and_stops_at_tol():
    x, start = _blobs(20_000, seed=1)
    far = np.vstack([start, [[5_000.0] * 4]])  # nearest to no pixel
    centroids, _ = chunked_lloyd(da.from_array(x, chunks=(5_000, -1)), far, max_iter=100, tol=0.0)
    np.testing.assert_array_equal(centroids[-1], far[-1])
    assert np.isfinite(centroids).all()
    _, once = chunked_lloyd(da.from_array(x, chunks=(5_000, -1)), start, max_iter=100, tol=1e12)
    assert once == 1  # the first shift is below a huge tol


def test_swaps_give_a_small_distinct_surface_its_class_where_the_restarts_left_it_in_another():
    # Six large blobs and one of 0.3 % of the pixels far from them all (a quarry in fields): Lloyd
    # from k-means++ starts puts it in a larger class for most starts; a swap moves a centre onto it.
    rng = np.random.default_rng(21)
    centres = rng.uniform(60, 160, (6, 4))
    big = np.concatenate([c + 6 * rng.standard_normal((6_000, 4)) for c in centres])
    small = np.array([250.0, 10.0, 250.0, 10.0]) + 3 * rng.standard_normal((110, 4))
    sample = np.concatenate([big, small]).astype(np.float32)[rng.permutation(36_110)]
    pixels = np.ascontiguousarray(sample.T)
    inertias = []
    for seed in range(8):
        start = kmeans_plusplus(sample, 7, np.random.default_rng([seed, 0]))
        centroids, _, inertia = lloyd(pixels, start, max_iter=300, tol=0.0)
        if nearest(small.T.astype(np.float32), centroids)[1].max() > 30**2:  # the small surface has no class
            swapped, swapped_inertia, _, kept = improve(pixels, centroids, lloyd=lloyd, max_iter=300, tol=0.0)
            assert kept >= 1 and swapped_inertia < inertia
            assert nearest(small.T.astype(np.float32), swapped)[1].max() < 30**2
            inertias.append(inertia)
    assert len(inertias) >= 2  # the trap is real for these starts
    found = fit(sample, k=7, n_init=3, seed=0)
    assert nearest(small.T.astype(np.float32), found.centroids)[1].max() < 30**2


def test_a_tie_on_the_sample_is_decided_by_the_fixed_sample_the_same_for_every_seed():
    # Three equal blobs at the corners of a triangle: k = 2 has three equally good maps, which the
    # sample cannot rank. A fixed sample with a little more weight on one corner prefers the map
    # that keeps that corner whole, whatever the seed.
    rng = np.random.default_rng(1)
    corners = np.array([[0.0, 0.0], [100.0, 0.0], [50.0, 50.0 * np.sqrt(3)]])
    sample = (np.repeat(corners, 20_000, axis=0) + rng.standard_normal((60_000, 2))).astype(np.float32)
    reference = (np.repeat(corners, [1_000, 1_000, 1_300], axis=0) + rng.standard_normal((3_300, 2))).astype(np.float32)
    chosen = set()
    for seed in range(4):
        found = fit_kmeans(
            sample[np.random.default_rng(seed).permutation(60_000)], seeds_from=sample, k=2, n_init=8, max_iter=300, tol=0.0,
            seed=seed, decide=lambda: reference,
        )
        assert found.restarts.tied and found.restarts.decided_by_fixed_sample and not found.restarts.unstable
        a, b, c = nearest(corners.T.astype(np.float32), found.centroids)[0].tolist()
        chosen.add((a == b, b == c, a == c))
    assert chosen == {(True, False, False)}  # one map for every seed: the heavier corner alone
    # The whole sample is the mosaic: it ranks the maps itself (here exactly tied: the first found stays).
    whole = fit_kmeans(sample, seeds_from=sample, k=2, n_init=8, max_iter=300, tol=0.0, seed=0, decide=lambda: reference, whole=True)
    assert not whole.restarts.tied
