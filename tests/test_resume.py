"""``landcover run --resume`` as a user runs it: stopped by Ctrl-C, then by SIGKILL, then finished,
with the bytes of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rasters import class_centres, planted_classes, planted_image, write_raster

from pipeline import load_config, run

LANDCOVER = Path(sys.executable).with_name("landcover")
SHAPE = (3072, 3072)  # 36 chunks of 512, labelled one at a time (dask.workers: 1)
CHUNKS = 36


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    truth = planted_classes(*SHAPE, 4, seed=3)
    image = planted_image(truth, class_centres(4, 4, low=10, high=250, seed=3), noise=6.0, dtype="uint8", seed=3)
    return write_raster(tmp_path_factory.mktemp("resume") / "scene.tif", image)


def config(folder: Path, scene: Path) -> Path:
    doc = {
        "input": {"paths": [str(scene)]},
        "model": {"k": 4, "n_init": 1},
        "sample": {"size": 50_000},
        "output": {"path": str(folder / "labels.tif"), "confidence": True},
        "dask": {"chunk": 512, "workers": 1},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def landcover(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(LANDCOVER), *map(str, args)], capture_output=True, text=True, timeout=300)


def stop_once_labelling(config_path: Path, parts: Path, sig: int, *, after: int, args=()) -> subprocess.CompletedProcess:
    """Start ``landcover run`` and send ``sig`` once more than ``after`` chunks are finished."""
    command = [str(LANDCOVER), "run", str(config_path), *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(list(parts.glob("chunk-*.npz"))) <= after:
        assert proc.poll() is None, f"the run ended before it could be stopped:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_stopped_twice_then_resumed_gives_the_uninterrupted_bytes(scene, tmp_path):
    (tmp_path / "whole").mkdir()
    whole = run(load_config(config(tmp_path / "whole", scene)))
    (tmp_path / "stopped").mkdir()
    config_path = config(tmp_path / "stopped", scene)
    output = tmp_path / "stopped" / "labels.tif"
    parts = tmp_path / "stopped" / ".labels.tif.parts"

    interrupted = stop_once_labelling(config_path, parts, signal.SIGINT, after=0)
    assert interrupted.returncode == 130 and "interrupted: nothing was written" in interrupted.stderr
    assert not output.exists()
    first = len(list(parts.glob("chunk-*.npz")))
    assert 1 <= first < CHUNKS

    killed = stop_once_labelling(config_path, parts, signal.SIGKILL, after=first, args=["--resume"])
    assert killed.returncode == -signal.SIGKILL
    assert f"({first} finished chunk(s))" in killed.stderr and not output.exists()
    second = len(list(parts.glob("chunk-*.npz")))
    assert first < second < CHUNKS

    refused = landcover("run", config_path, "-q")  # without --resume the parts are not silently dropped
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"error: {parts}: an interrupted run left its finished parts here; run again with --resume")
    other = landcover("run", config_path, "-q", "--resume", "--set", "model.k=3")
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert other.stderr.startswith(f"error: {parts}: its parts were written for a different config;")
    assert len(list(parts.glob("chunk-*.npz"))) == second  # refusals leave the parts alone

    resumed = landcover("run", config_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({second} finished chunk(s))" in resumed.stderr
    assert output.read_bytes() == whole.output.read_bytes()
    assert (tmp_path / "stopped" / "labels.confidence.tif").read_bytes() == whole.confidence_path.read_bytes()
    assert sorted(p.name for p in output.parent.iterdir() if p.name.startswith(".")) == []
