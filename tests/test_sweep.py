"""``landcover sweep``: every k on one sample, scored, with a suggested k."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rasters import class_centres, planted_classes, planted_image, write_raster

from pipeline import ConfigError
from pipeline.stages.sweep import knee, parse_k

LANDCOVER = Path(sys.executable).with_name("landcover")


def landcover(*args, cwd=None):
    return subprocess.run([str(LANDCOVER), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def planted_config(tmp_path: Path, k: int, **extra) -> Path:
    truth = planted_classes(600, 700, k, seed=k)
    image = planted_image(truth, class_centres(k, 4, low=10, high=250, seed=k), noise=4.0, dtype="uint8", seed=k)
    write_raster(tmp_path / "scene.tif", image)
    doc = {
        "input": {"paths": ["scene.tif"]},
        "sample": {"size": 20_000, "seed": 1},
        "model": {"k": 3, "n_init": 1},
        "output": {"path": "out/labels.tif"},
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sweep_suggests_the_planted_k(tmp_path):
    k = 5
    done = landcover("sweep", planted_config(tmp_path, k), "--k", "2..7", "--out", "sweeps", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "sweeps" / "sweep.json").read_text())
    assert result["suggested"]["k"] == k and result["suggested"]["knee"] == k
    assert [s["k"] for s in result["scores"]] == list(range(2, 8))
    assert result["sample"]["size"] == 20_000 and result["silhouette_sample"] == 10_000
    scores = {s["k"]: s for s in result["scores"]}
    assert scores[k]["inertia"] < 0.1 * scores[k - 1]["inertia"]  # the planted classes are well separated
    assert scores[k]["unstable"] is None  # n_init: 1, and one restart cannot tell
    assert max(scores.values(), key=lambda s: s["silhouette"])["k"] == result["suggested"]["best_silhouette"]
    assert (tmp_path / "sweeps" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"suggested k = {k} " in done.stdout and not (tmp_path / "out").exists()


def test_existing_sweep_files_are_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    existing = tmp_path / "out" / "sweep.json"
    existing.write_text("an earlier sweep")
    done = landcover("sweep", planted_config(tmp_path, 3), "--k", "2..4", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "sweep.json: already exists; set output.overwrite: true" in done.stderr
    assert existing.read_text() == "an earlier sweep" and not (tmp_path / "out" / "sweep.png").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3..6", (3, 4, 5, 6)), ("5,3,8", (3, 5, 8)), ("2..4, 6", (2, 3, 4, 6)), ("2..254", tuple(range(2, 255)))],
)
def test_parse_k(text, expected):
    assert parse_k(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3-15", "write a range like 3..15"),
        ("1..5", "k = 1 is outside 2..254"),
        ("3..255", "k = 255 is outside 2..254"),
        ("9..4", "the range 9..4 is empty"),
        ("7", "at least two values"),
        ("4,4", "at least two values"),
        ("", "write a range"),
    ],
)
def test_bad_k_is_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_k(text)
    assert "\n" not in str(info.value)


def test_bad_k_through_the_cli(tmp_path):
    done = landcover("sweep", planted_config(tmp_path, 3), "--k", "3..1", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: --k '3..1'")
    assert not (tmp_path / "out").exists()


def test_knee_is_the_farthest_point_below_the_chord():
    assert knee([2, 3, 4, 5, 6, 7], [100.0, 60.0, 12.0, 10.0, 9.0, 8.5]) == 4
    assert knee([3, 5, 9, 10], [50.0, 20.0, 10.0, 9.5]) == 5  # uneven k steps are placed on the k axis
    assert knee([2, 3, 4, 5], [40.0, 30.0, 20.0, 10.0]) is None  # a straight line has no knee
    assert knee([2, 3], [10.0, 5.0]) is None
    assert knee(list(range(2, 12)), [1.0 / k for k in range(2, 12)]) == 5  # by hand: 1 - x - y peaks at k = 5


def test_sweep_computes_on_the_configured_scheduler(tmp_path):
    config = planted_config(tmp_path, 3)
    threads = landcover("sweep", config, "--k", "2..4", "--out", "threads", cwd=tmp_path)
    cluster = landcover(
        "sweep", config, "--k", "2..4", "--out", "cluster", "--set", "dask.scheduler=local-cluster", "--set", "dask.workers=1", cwd=tmp_path
    )
    assert threads.returncode == 0 and cluster.returncode == 0, cluster.stderr
    assert "dask: tcp://" in cluster.stderr and "1 worker(s)" in cluster.stderr and "dask: tcp://" not in threads.stderr
    scores = [json.loads((tmp_path / name / "sweep.json").read_text())["scores"] for name in ("threads", "cluster")]
    assert [s["inertia"] for s in scores[0]] == [s["inertia"] for s in scores[1]]
