"""The ``landcover`` command as a user runs it, in a subprocess."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from rasters import read_labels, write_raster

LANDCOVER = Path(sys.executable).with_name("landcover")


def landcover(*args, cwd=None):
    return subprocess.run([str(LANDCOVER), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def scene(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    # Three groups for the k = 3 of config(): with two, the third class splits noise differently
    # for every seed, and the run rightly warns that the fit is unstable.
    image = rng.choice(np.array([40, 120, 200]), (1, 300, 400)) + rng.integers(0, 5, (4, 300, 400))
    return write_raster(tmp_path / "scene.tif", image.astype(np.uint8))


def config(tmp_path: Path, **extra) -> Path:
    doc = {"input": {"paths": ["scene.tif"]}, "model": {"k": 3}, "output": {"path": "out/labels.tif"}, **extra}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_run_with_set_writes_cog_and_sidecars(tmp_path):
    scene(tmp_path)
    done = landcover("run", config(tmp_path), "--set", "model.k=2", "--set", "output.path=k2/labels.tif", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    output = tmp_path / "k2" / "labels.tif"  # --set paths are relative to the current directory
    assert set(np.unique(read_labels(output))) == {1, 2}
    for suffix in (".model.json", ".report.json", ".png"):
        assert (tmp_path / "k2" / f"labels{suffix}").exists()
    assert "fit:" in done.stderr and str(output) in done.stdout


def test_quiet_prints_nothing(tmp_path):
    scene(tmp_path)
    done = landcover("run", config(tmp_path), "--quiet")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


def test_show_config_prints_resolved_yaml_and_runs_nothing(tmp_path):
    done = landcover("run", config(tmp_path), "--set", "model.k=5", "--show-config")
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert shown["model"]["k"] == 5 and shown["input"]["paths"] == [str(tmp_path / "scene.tif")]
    assert shown["dask"]["chunk"] == 2048 and not (tmp_path / "out").exists()


def test_existing_output_refused_then_overwritten(tmp_path):
    scene(tmp_path)
    assert landcover("run", config(tmp_path), "-q").returncode == 0
    output = tmp_path / "out" / "labels.tif"
    before = output.read_bytes()
    refused = landcover("run", config(tmp_path), "--set", "model.k=2")
    assert refused.returncode == 2 and "already exists; set output.overwrite: true" in refused.stderr
    assert output.read_bytes() == before
    assert landcover("run", config(tmp_path), "-q", "--set", "model.k=2", "--set", "output.overwrite=true").returncode == 0
    assert set(np.unique(read_labels(output))) == {1, 2}


def test_python_dash_m_is_the_same_command(tmp_path):
    scene(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(config(tmp_path)), "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "labels.tif").exists()
