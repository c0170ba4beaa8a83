"""``model.method: isodata``: split and merge until the data has chosen k, then the restarts at it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from rasters import write_raster
from sklearn.metrics import adjusted_rand_score

import pipeline
from pipeline import ConfigError
from pipeline.algo.isodata import IsodataParams, diagonal_start, fit_isodata
from pipeline.algo.kernel import nearest
from pipeline.config import load_config

LANDCOVER = Path(sys.executable).with_name("landcover")
SIGMA, GAP = 4.0, 60.0  # planted blobs: per-band noise and the least distance between two centres
PLANTED = {"split_sd": 1.5 * SIGMA, "merge_distance": 5 * SIGMA, "k_max": 24}  # in DN, the features' units


def landcover(*args, cwd=None):
    return subprocess.run([str(LANDCOVER), *map(str, args)], check=False, capture_output=True, text=True, cwd=cwd, timeout=300)


def planted_blobs(classes: int, *, seed: int = 0, height: int = 400, width: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """A (4, y, x) uint8 image of ``classes`` Gaussian blobs (sd ``SIGMA``, centres at least
    ``GAP`` apart) whose sizes run from 1 to 10 parts, and the (y, x) class of each pixel."""
    rng = np.random.default_rng([classes, seed])
    centres: list[np.ndarray] = []
    while len(centres) < classes:
        candidate = rng.uniform(25, 230, 4)
        if all(np.linalg.norm(candidate - c) >= GAP for c in centres):
            centres.append(candidate)
    weights = np.geomspace(1, 10, classes)
    truth = rng.choice(classes, size=(height, width), p=weights / weights.sum())
    image = np.array(centres)[truth].transpose(2, 0, 1) + rng.normal(0, SIGMA, (4, height, width))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), truth


def as_array(image: np.ndarray) -> xr.DataArray:
    return xr.DataArray(image, dims=("band", "y", "x"), coords={"band": [1, 2, 3, 4]})


def accounted(record: dict) -> bool:
    """Every iteration's k is the previous one plus its splits minus its merges and drops."""
    k = record["k_start"]
    for step in record["history"]:
        k += len(step["split"]) - len(step["merged"]) - len(step["dropped"])
        if step["k"] != k or not record["k_min"] <= k <= record["k_max"]:
            return False
    return k == record["k"]


@pytest.mark.parametrize("classes", [3, 6, 11])
def test_isodata_finds_the_planted_number_of_classes_from_any_start(classes):
    image, truth = planted_blobs(classes)
    for start in (2, 8, 20):
        model = pipeline.fit(as_array(image), k=start, method="isodata", isodata=PLANTED, sample_size=100_000, n_init=5)
        record = model.fit.isodata
        assert model.k == record["k"] == classes, (start, record["history"])
        assert record["converged"] and accounted(record)
        assert model.fit.method == "isodata" and record["k_start"] == start
        labels, _ = nearest(image.reshape(4, -1).astype(np.float32), model.centroids)
        assert adjusted_rand_score(truth.ravel(), labels) > 0.99


def test_defaults_are_measured_on_the_sample_and_recorded():
    image, _ = planted_blobs(6, seed=3)
    model = pipeline.fit(as_array(image), k=7, method="isodata", sample_size=50_000, n_init=3)
    record = model.fit.isodata
    sample_sd = image.reshape(4, -1).std(axis=1)
    split = np.array(list(record["split_sd"].values()))
    assert np.allclose(split, 0.6 * sample_sd, rtol=0.05)  # 0.6 sd of each feature, on the sample
    assert record["merge_distance"] == pytest.approx(np.sqrt((sample_sd**2).mean()), rel=0.05)
    assert (record["k_min"], record["k_max"]) == (2, 14) and record["min_size_pixels"] == 50
    assert accounted(record)


def test_the_same_sample_gives_the_same_history_and_k_means_keeps_its_record():
    image, _ = planted_blobs(6, seed=1)
    first, again = (pipeline.fit(as_array(image), k=2, method="isodata", isodata=PLANTED, sample_size=30_000, n_init=3) for _ in range(2))
    assert first.fit.isodata == again.fit.isodata and np.array_equal(first.centroids, again.centroids)
    kmeans = pipeline.fit(as_array(image), k=6, sample_size=30_000, n_init=3)
    assert kmeans.fit.method == "kmeans" and kmeans.fit.isodata is None and "isodata" not in kmeans.to_json()["fit"]


def params(**changes) -> IsodataParams:
    base = {
        "k_start": 2, "k_min": 2, "k_max": 10, "min_size": 50, "split_sd": (5.0, 5.0), "merge_distance": 10.0, "max_merges": 2,
        "iterations": 30, "convergence": 0.98,
    }
    return IsodataParams(**{**base, **changes})


def test_a_split_that_the_merge_would_undo_is_not_made():
    # One uniform bar 0..40 along x: its sd (11.5) exceeds split_sd, but its 2-means halves end
    # 20 apart, under a merge distance of 25: splitting it would only be merged back.
    rng = np.random.default_rng(0)
    bar = np.vstack([rng.uniform(0, 40, 20_000), rng.normal(0, 1, 20_000)]).astype(np.float32)
    kept = fit_isodata(bar, params(k_start=1, k_min=1, merge_distance=25.0))
    assert kept.k == 1 and kept.converged and all(not step.split for step in kept.history)
    halved = fit_isodata(bar, params(k_start=1, k_min=1, merge_distance=15.0))
    assert halved.k >= 2 and halved.history[0].split[0][1] == "0"  # split along the wide feature


def test_merges_per_iteration_drops_and_bounds_are_respected():
    rng = np.random.default_rng(1)
    blob = rng.normal(0, 1, (2, 30_000))
    outlier = rng.normal(50, 1, (2, 20))  # 20 pixels: under min_size
    pixels = np.hstack([blob, outlier]).astype(np.float32)
    result = fit_isodata(pixels, params(k_start=9, k_min=2, max_merges=1, split_sd=(50.0, 50.0), merge_distance=100.0))
    assert all(len(step.merged) <= 1 for step in result.history)
    assert result.k == 2 and all(step.k >= 2 for step in result.history)  # merges stop at k_min
    record = {"k_start": 9, "k_min": 2, "k_max": 10, "k": result.k, "history": [s.to_json() for s in result.history]}
    assert accounted(record)
    roomy = fit_isodata(pixels, params(k_start=2, k_max=3, split_sd=(0.1, 0.1), merge_distance=0.0))
    assert max(step.k for step in roomy.history) == 3  # splits stop at k_max


def test_the_start_is_the_diagonal_from_mean_minus_to_mean_plus_one_sd():
    pixels = np.random.default_rng(2).normal([[10.0], [100.0]], [[2.0], [8.0]], (2, 50_000)).astype(np.float32)
    start = diagonal_start(pixels, 3)
    mean, sd = pixels.mean(axis=1), pixels.std(axis=1)
    assert np.allclose(start, [mean - sd, mean, mean + sd], rtol=1e-5)


def planted_run(tmp_path: Path, **model) -> Path:
    """A run of a 6-blob scene from k = 3 (``model`` keys replace the run's)."""
    image, _ = planted_blobs(6, seed=2, height=300, width=400)
    write_raster(tmp_path / "scene.tif", image)
    doc = {
        "input": {"paths": ["scene.tif"], "band_names": ["red", "green", "blue", "nir"]},
        "sample": {"size": 40_000},
        "model": {"k": 3, "n_init": 3, "method": "isodata", "isodata": {**PLANTED, **model.pop("isodata", {})}, **model},
        "output": {"path": "out/labels.tif"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_run_records_the_chosen_k_and_draws_its_history(tmp_path):
    done = landcover("run", planted_run(tmp_path), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    model = json.loads((tmp_path / "out" / "labels.model.json").read_text())
    record = model["fit"]["isodata"]
    assert model["k"] == record["k"] == 6 and model["fit"]["method"] == "isodata" and accounted(record)
    assert sum(len(step["split"]) for step in record["history"]) >= 3  # from k = 3 to 6
    legend = json.loads((tmp_path / "out" / "labels.legend.json").read_text())
    assert len([c for c in legend["classes"] if c["value"] > 0]) == 6
    page = (tmp_path / "out" / "labels.report.html").read_text()
    assert "ISODATA: how k was chosen" in page and f"chose k = 6 after {record['iterations']} iteration(s)" in page
    assert 'alt="classes per ISODATA iteration' in page and "split along" in page
    report = json.loads((tmp_path / "out" / "labels.report.json").read_text())
    assert report["timings_s"]["isodata"] < report["timings_s"]["fit"]


def test_sweep_marks_the_k_isodata_chose(tmp_path):
    done = landcover("sweep", planted_run(tmp_path), "--k", "4..8", "--out", "sweeps", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "sweeps" / "sweep.json").read_text())
    assert result["isodata"]["k"] == 6 and result["isodata"]["k_start"] == 3
    low, high = result["suggested"]["range"]
    assert result["isodata"]["in_suggested_range"] == (low <= 6 <= high)
    assert "ISODATA (model.method: isodata) chose k = 6 from k = 3" in done.stdout


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ({"isodata": {"k_min": 9, "k_max": 5}}, "model.isodata.k_min (9) is above model.isodata.k_max (5)"),
        ({"k": 12, "isodata": {"k_max": 10}}, "model.k (12), where ISODATA starts, is outside model.isodata.k_min..k_max (2..10)"),
        ({"isodata": {"split_sd": -1.0}}, "'model.isodata.split_sd': Input should be greater than 0"),
        ({"isodata": {"merge_distance": -2.0}}, "'model.isodata.merge_distance': Input should be greater than or equal to 0"),
        ({"isodata": {"convergence": 1.5}}, "'model.isodata.convergence'"),
        ({"isodata": {"splits": 3}}, "unknown key 'model.isodata.splits'"),
        ({"method": "iso"}, "'model.method'"),
    ],
)
def test_bad_isodata_settings_are_one_line_naming_the_key(tmp_path, model, says):
    config = planted_run(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["model"].update({key: {**doc["model"].get(key, {}), **value} if isinstance(value, dict) else value for key, value in model.items()})
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_bad_isodata_setting_stops_the_run_before_any_work(tmp_path):
    config = planted_run(tmp_path, isodata={"k_min": 4, "k_max": 3})
    done = landcover("run", config, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "model.isodata.k_min (4) is above model.isodata.k_max (3)" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_class_list_is_refused_because_isodata_chooses_k(tmp_path):
    config = planted_run(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["classes"] = [{"name": "water"}, {"name": "trees"}, {"name": "fields"}]
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"model.method: isodata chooses k from the data; use classes: \{names: auto\}"):
        load_config(config)


def test_isodata_k_and_map_are_seed_stable_on_a_real_scene(naip_scenes):
    data = pipeline.open_imagery(str(naip_scenes[0]), band_names=["red", "green", "blue", "nir"])
    models = [pipeline.fit(data, k=7, method="isodata", seed=seed, sample_size=300_000) for seed in range(3)]
    assert len({m.k for m in models}) == 1, [m.fit.isodata["history"] for m in models]
    pixels = data.values.reshape(data.shape[0], -1).astype(np.float32)
    maps = [nearest(pixels, m.centroids)[0] for m in models]
    assert min(adjusted_rand_score(maps[0], other) for other in maps[1:]) >= 0.98
