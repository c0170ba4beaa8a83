"""``postprocess`` as a user runs it: the majority filter and sieve inside the write pass, exactly the
whole-array rules (``algo/cleanup.py``) whatever the chunks, the scheduler or an interruption;
the report, legend and raw COG describe what was cleaned; ``predict`` and the Python API agree."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rioxarray
import yaml
from dask.callbacks import Callback
from rasters import class_centres, planted_classes, planted_image, read_labels, write_raster
from rio_cogeo.cogeo import cog_validate

import pipeline
from pipeline.algo.cleanup import Cleanup, clean
from pipeline.cog.encode import halve

LANDCOVER = Path(sys.executable).with_name("landcover")
SHAPE = (1100, 1300)  # 3 x 3 chunks of 512 with ragged edges; 2 x 2 of 1024
POSTPROCESS = {"majority": 3, "sieve": 12, "connectivity": 8}
CLEANUP = Cleanup(**POSTPROCESS)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """Planted classes under heavy noise (speckle for the cleanup to remove), with a nodata corner."""
    truth = planted_classes(*SHAPE, 5, seed=11, patch=45)
    image = planted_image(truth, class_centres(5, 4, low=20, high=235, seed=11), noise=45.0, dtype="uint8", seed=11)
    image[:, :200, :260] = 0
    return write_raster(tmp_path_factory.mktemp("postprocess") / "scene.tif", image, nodata=0)


def run_config(folder: Path, scene: Path, *, chunk: int = 512, **output) -> Path:
    doc = {
        "input": {"paths": [str(scene)]},
        "model": {"k": 5, "n_init": 2},
        "sample": {"size": 100_000},
        "postprocess": POSTPROCESS,
        "output": {"path": str(folder / "labels.tif"), **output},
        "dask": {"chunk": chunk},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def landcover(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(LANDCOVER), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cleaned_run(scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run512")
    return pipeline.run(pipeline.load_config(run_config(folder, scene, raw=True)))


def test_the_pass_gives_the_whole_array_rules_whatever_the_chunk(scene, cleaned_run, tmp_path):
    raw, labels = read_labels(cleaned_run.raw_path), read_labels(cleaned_run.output)
    expected = clean(raw, CLEANUP)
    assert np.array_equal(labels, expected.labels)
    assert (labels != raw).mean() > 0.01  # the speckle was there, and cleaned
    other = pipeline.run(pipeline.load_config(run_config(tmp_path / "run1024", scene, chunk=1024, raw=True)))
    assert other.output.read_bytes() == cleaned_run.output.read_bytes()
    for path in (cleaned_run.output, cleaned_run.raw_path):
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors


def test_a_process_cluster_writes_the_same_bytes(scene, cleaned_run, tmp_path):
    config_path = run_config(tmp_path, scene, raw=True)
    doc = yaml.safe_load(config_path.read_text())
    doc["dask"].update({"scheduler": "local-cluster", "workers": 2, "threads_per_worker": 1})
    config_path.write_text(yaml.safe_dump(doc))
    done = landcover("run", config_path, "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "labels.tif").read_bytes() == cleaned_run.output.read_bytes()


def test_waiting_labels_are_on_disk_and_released_as_the_pass_goes(tmp_path):
    # A chunk's labels wait for its neighbours' windows in the parts folder, not in memory.
    shape = (2600, 3100)  # 6 x 7 chunks of 512
    truth = planted_classes(*shape, 5, seed=5, patch=45)
    image = planted_image(truth, class_centres(5, 4, low=20, high=235, seed=5), noise=45.0, dtype="uint8", seed=5)
    folder, seen = tmp_path / "run", []
    spilled = folder / ".labels.tif.parts" / "halo"

    class Watch(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if str(key[0] if isinstance(key, tuple) else key).startswith("label-"):
                assert isinstance(result["labels"], Path), "labels kept in memory"
            seen.append(len(list(spilled.glob("*.npy"))))

    with Watch():
        result = pipeline.run(pipeline.load_config(run_config(folder, write_raster(tmp_path / "big.tif", image, nodata=0), raw=True)))
    assert 0 < max(seen) < 6 * 7  # spilled, and deleted once every window over them is done
    assert not spilled.parent.exists()
    assert np.array_equal(read_labels(result.output), clean(read_labels(result.raw_path), CLEANUP).labels)


@pytest.fixture
def batches_of_depth_1(monkeypatch):
    """Batches of 2 x 2 chunks: 3 x 3 chunks are written as subtrees of 2 x 2, 2 x 1, 1 x 2 and 1 x 1, then the root."""
    from pipeline.products import chunks

    monkeypatch.setattr(chunks, "BATCH_DEPTHS", range(1, 2))
    monkeypatch.setattr(chunks, "HALO_BATCH_DEPTH", 1)


@pytest.mark.parametrize("scheduler", ["threads", "local-cluster"])
def test_a_mosaic_written_a_subtree_at_a_time_gives_the_same_bytes(scene, cleaned_run, tmp_path, batches_of_depth_1, scheduler):
    # A state is written a subtree of chunks per graph (dask's state for one graph of Texas
    # would not fit a laptop); the halo's neighbours across a batch's edge are labelled again.
    # On a cluster, each batch's keys are its own (the last batch's results may still be held).
    from pipeline.products import chunks

    stores = []

    class Graphs(Callback):
        def _start_state(self, dsk, state):
            stores.append(sum(isinstance(key, tuple) and str(key[0]).startswith(chunks.CHUNK_TASK) for key in dsk))

    config_path = run_config(tmp_path, scene, raw=True)
    doc = yaml.safe_load(config_path.read_text())
    doc["dask"].update({"scheduler": scheduler} if scheduler == "threads" else {"scheduler": scheduler, "workers": 2, "threads_per_worker": 1})
    config_path.write_text(yaml.safe_dump(doc))
    with Graphs():
        batched = pipeline.run(pipeline.load_config(config_path))
    if scheduler == "threads":  # a distributed client's graphs are not seen by local callbacks
        assert sorted(n for n in stores if n) == [1, 2, 2, 4]
    assert batched.output.read_bytes() == cleaned_run.output.read_bytes()
    assert batched.raw_path.read_bytes() == cleaned_run.raw_path.read_bytes()
    report, expected = (json.loads(r.report_path.read_text()) for r in (batched, cleaned_run))
    assert report["cleanup"] == expected["cleanup"]
    for got, want in zip(report["classes"], expected["classes"]):
        assert got["pixels"] == want["pixels"]
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-9)  # summed batch by batch


def test_a_batched_run_draws_one_bar_for_its_label_pass(scene, tmp_path, batches_of_depth_1):
    # A state's label pass is hundreds of batches: one bar crosses them (not a bar per batch).
    import io

    from pipeline.runtime.progress import StageBar

    outputs: dict[str, io.StringIO] = {}

    def progress(stage):
        outputs[stage] = io.StringIO()
        return StageBar(outputs[stage], minimum=0.0, every=0.002)

    pipeline.run(pipeline.load_config(run_config(tmp_path, scene)), progress=progress)
    drawn = outputs["label and write"].getvalue()
    assert drawn.count("\n") == 1 and drawn.endswith("\n")
    percents = [int(p) for p in re.findall(r"\| +(\d+)% \|", drawn)]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) > 2


def test_a_batched_run_stopped_in_its_second_batch_resumes_to_the_same_bytes(scene, cleaned_run, tmp_path, batches_of_depth_1):
    # The first batch's chunks (4) come back from their records; the top levels from their roots' arrays.
    from pipeline.products import chunks

    stored = []

    class StopInSecondBatch(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(key, tuple) and len(key) == 3 and str(key[0]).startswith(chunks.CHUNK_TASK):
                stored.append(key)
                if len(stored) == 5:
                    raise KeyboardInterrupt

    config = pipeline.load_config(run_config(tmp_path, scene, raw=True))
    with StopInSecondBatch(), pytest.raises(KeyboardInterrupt):
        pipeline.run(config)
    parts = tmp_path / ".labels.tif.parts"
    assert 5 <= len(list(parts.glob("chunk-*.npz"))) <= 6 and not (tmp_path / "labels.tif").exists()  # the other thread's store may finish
    resumed = pipeline.run(config, resume=True)
    assert resumed.output.read_bytes() == cleaned_run.output.read_bytes()
    assert resumed.raw_path.read_bytes() == cleaned_run.raw_path.read_bytes()
    assert not parts.exists()


def test_the_confidence_beside_a_cleaned_map_is_the_one_without_cleanup(scene, tmp_path):
    # The margin waits on disk with the labels (the cleanup does not change it).
    cleaned = pipeline.run(pipeline.load_config(run_config(tmp_path / "cleaned", scene, confidence=True)))
    config = run_config(tmp_path / "plain", scene, confidence=True)
    doc = yaml.safe_load(config.read_text())
    del doc["postprocess"]
    config.write_text(yaml.safe_dump(doc))
    plain = pipeline.run(pipeline.load_config(config))
    margins = [rioxarray.open_rasterio(r.output.with_name("labels.confidence.tif")).values for r in (cleaned, plain)]
    assert np.isfinite(margins[0]).any() and np.array_equal(margins[0], margins[1], equal_nan=True)


def test_the_raw_labels_are_the_classified_ones(scene, cleaned_run):
    data = rioxarray.open_rasterio(scene, chunks={"band": -1, "y": 512, "x": 512}, lock=False)
    model = pipeline.load_model(cleaned_run.model_path)
    assert model.postprocess == CLEANUP
    assert np.array_equal(read_labels(cleaned_run.raw_path), pipeline.classify(data, model).values)


def test_the_report_describes_the_cleaned_map(cleaned_run):
    raw, labels = read_labels(cleaned_run.raw_path), read_labels(cleaned_run.output)
    report = json.loads(cleaned_run.report_path.read_text())
    counts = np.bincount(labels.ravel(), minlength=6)
    assert [c["pixels"] for c in report["classes"]] == counts[1:].tolist()
    assert report["totals"]["valid_pixels"] == int(counts[1:].sum()) == int((raw > 0).sum())
    expected = clean(raw, CLEANUP, k=5)
    record = report["cleanup"]
    assert list(record["majority_changed"].values()) == expected.majority_changed[1:].tolist()
    assert list(record["sieve_changed"].values()) == expected.sieve_changed[1:].tolist()
    assert record["patches_removed"] == expected.patches_removed > 0
    assert (record["majority"], record["sieve"], record["connectivity"]) == (3, 12, 8)
    legend = json.loads(cleaned_run.report_path.with_name("labels.legend.json").read_text())
    assert [c["pixels"] for c in legend["classes"]] == counts[1:].tolist()


def test_mode_overviews_are_the_mode_of_the_level_below(cleaned_run):
    import rasterio

    labels = read_labels(cleaned_run.output)
    with rasterio.open(cleaned_run.output) as src:
        assert src.overviews(1)[0] == 2
        level1 = src.read(1, out_shape=(-(-src.height // 2), -(-src.width // 2)))
    assert np.array_equal(level1, halve(labels, "mode"))
    assert not np.array_equal(level1, labels[::2, ::2])


def test_the_python_api_gives_the_same_labels_in_any_chunks(scene, cleaned_run):
    data = rioxarray.open_rasterio(scene, chunks={"band": -1, "y": 512, "x": 512}, lock=False)
    model = pipeline.load_model(cleaned_run.model_path)
    expected = read_labels(cleaned_run.output)
    for chunks in (256, 333, 700):
        labels = pipeline.classify(data.chunk({"y": chunks, "x": chunks}), model)
        cleaned = pipeline.sieve(pipeline.majority(labels, 3), 12, 8)
        assert cleaned.chunks == labels.chunks  # lazy, in the caller's chunks
        assert np.array_equal(cleaned.values, expected), chunks


def test_predict_applies_the_recorded_postprocess_unless_set(scene, cleaned_run, tmp_path):
    out = tmp_path / "predicted.tif"
    done = landcover("predict", cleaned_run.model_path, scene, "--out", out, "-q", "--set", "dask.chunk=1024")
    assert done.returncode == 0, done.stderr
    assert np.array_equal(read_labels(out), read_labels(cleaned_run.output))
    off = tmp_path / "unclean.tif"
    done = landcover("predict", cleaned_run.model_path, scene, "--out", off, "-q", "--set", "postprocess.sieve=0", "--set", "postprocess.majority=0")
    assert done.returncode == 0, done.stderr
    assert np.array_equal(read_labels(off), read_labels(cleaned_run.raw_path))
    assert "postprocess" not in json.loads(off.with_name("unclean.model.json").read_text())


def test_resumed_after_ctrl_c_gives_the_uninterrupted_bytes(scene, cleaned_run, tmp_path):
    config_path = run_config(tmp_path, scene, raw=True)
    doc = yaml.safe_load(config_path.read_text())
    doc["dask"]["workers"] = 1
    config_path.write_text(yaml.safe_dump(doc))
    parts = tmp_path / ".labels.tif.parts"
    proc = subprocess.Popen([str(LANDCOVER), "run", str(config_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(list(parts.glob("chunk-*.npz"))) < 2:
        assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 2 <= len(list(parts.glob("chunk-*.npz"))) < 9
    resumed = landcover("run", config_path, "-q", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "labels.tif").read_bytes() == cleaned_run.output.read_bytes()
    assert (tmp_path / "labels.raw.tif").read_bytes() == cleaned_run.raw_path.read_bytes()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("majority", 4, "'postprocess.majority': a window must have a centre pixel (got 4); use an odd window size such as 3 or 5"),
        ("sieve", -1, "'postprocess.sieve': a minimum mapping unit cannot be negative (got -1)"),
        ("connectivity", 6, "'postprocess.connectivity': Input should be 4 or 8 (got 6)"),
        ("sieve", "2 furlongs", "'postprocess.sieve': not a number of pixels or an area with a unit we know (got '2 furlongs')"),
        ("sieve", "2 ha", "postprocess.sieve: an exact cleanup needs"),
    ],
)
def test_bad_values_name_the_key(scene, tmp_path, key, value, message):
    config_path = run_config(tmp_path, scene)
    doc = yaml.safe_load(config_path.read_text())
    doc["postprocess"] = {key: value}
    config_path.write_text(yaml.safe_dump(doc))
    done = landcover("run", config_path, "-q")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "labels.tif").exists() and not (tmp_path / ".labels.tif.parts").exists()
