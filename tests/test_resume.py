"""``landcover run --resume`` as a user runs it: stopped by Ctrl-C, then by SIGKILL, then finished,
with the bytes of an uninterrupted run."""

from __future__ import annotations

import re
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
# A chunk's files in the parts folder: its record and, per layer, its tiles (with 512-pixel chunks
# a chunk task writes level 0 only: one 512 tile, named by the chunk's row and column). The
# levels above are written by the tree's tasks, which every run computes again from the records.
CHUNK_FILE = re.compile(r"(?:chunk|labels-00|confidence-00)-(\d{5})-(\d{5})\.(?:npz|tiles)")


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


Stats = dict[tuple[int, int], dict[str, tuple[int, int]]]


def by_chunk(stats: dict[str, tuple[int, int]]) -> Stats:
    """Per chunk (row, column) that has a record, its files' (st_ino, st_mtime_ns), by name."""
    files: Stats = {}
    for name, stat in stats.items():
        if match := CHUNK_FILE.fullmatch(name):
            files.setdefault((int(match[1]), int(match[2])), {})[name] = stat
    return {chunk: names for chunk, names in files.items() if f"chunk-{chunk[0]:05d}-{chunk[1]:05d}.npz" in names}


def chunk_files(parts: Path) -> Stats:
    """The finished chunks' files in ``parts`` now."""
    return by_chunk({path.name: (st.st_ino, st.st_mtime_ns) for path in parts.iterdir() for st in [path.stat()]})


def assert_reused_and_fresh(before: Stats, after: Stats) -> None:
    """The chunks finished ``before`` kept their files untouched (same inode, same mtime: neither
    rewritten nor renamed over); the chunks finished since were all written after them."""
    assert set(before) < set(after)
    for chunk in before:
        assert after[chunk] == before[chunk], f"chunk {chunk} was written again"
    latest = max(mtime for names in before.values() for _, mtime in names.values())
    for chunk in set(after) - set(before):
        assert len(after[chunk]) == 3, after[chunk]  # the record, the labels' and the confidence's tiles
        assert all(mtime > latest for _, mtime in after[chunk].values()), chunk


def test_stopped_twice_then_resumed_gives_the_uninterrupted_bytes(scene, tmp_path, watch_parts):
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
    stopped = chunk_files(parts)
    assert len(stopped) == first

    killed = stop_once_labelling(config_path, parts, signal.SIGKILL, after=first, args=["--resume"])
    assert killed.returncode == -signal.SIGKILL
    assert f"({first} finished chunk(s))" in killed.stderr and not output.exists()
    second = len(list(parts.glob("chunk-*.npz")))
    assert first < second < CHUNKS
    killed_files = chunk_files(parts)
    assert len(killed_files) == second
    assert_reused_and_fresh(stopped, killed_files)  # the resumed run skipped the chunks the stopped one finished

    refused = landcover("run", config_path, "-q")  # without --resume the parts are not silently dropped
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"error: {parts}: an interrupted run left its finished parts here; run again with --resume")
    other = landcover("run", config_path, "-q", "--resume", "--set", "model.k=3")
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert other.stderr.startswith(f"error: {parts}: its parts were written for a different config;")
    assert chunk_files(parts) == killed_files  # refusals leave the parts alone

    # The run that finishes removes the folder: what it did there is seen while it runs.
    with watch_parts(parts, stat=lambda name: CHUNK_FILE.fullmatch(name) is not None) as seen:
        resumed = landcover("run", config_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({second} finished chunk(s))" in resumed.stderr
    assert len(seen.records()) == CHUNKS and not parts.exists()
    finished = by_chunk({name: history[-1] for name, history in seen.history.items()})  # as last seen
    assert len(finished) == CHUNKS
    for chunk, names in killed_files.items():  # reused: only ever seen as the killed run left them
        assert {name: seen.history[name] for name in names} == {name: [stat] for name, stat in names.items()}, chunk
    assert_reused_and_fresh(killed_files, finished)
    assert output.read_bytes() == whole.output.read_bytes()
    assert (tmp_path / "stopped" / "labels.confidence.tif").read_bytes() == whole.confidence_path.read_bytes()
    assert sorted(p.name for p in output.parent.iterdir() if p.name.startswith(".")) == []
