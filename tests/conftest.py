from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# A suite started as a background job (``cmd &`` in a script, as some CI runners do) inherits
# SIGINT ignored, and so would every `landcover` the tests start: the Ctrl-C tests would then see
# runs that cannot be interrupted. Their Ctrl-C is the terminal's, so restore it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

NAIP = REPO.parent / "shared" / "data" / "naip"


@pytest.fixture
def make_config(tmp_path: Path):
    """Write a YAML run file into tmp_path from nested dicts and return its path."""

    def make(paths, *, name: str = "run.yaml", **sections) -> Path:
        doc = {
            "input": {"paths": [str(p) for p in paths]},
            "model": {"n_init": 1},  # restarts only cost time here; the CLI tests keep the default
            "output": {"path": str(tmp_path / "out" / "labels.tif")},
        }
        for section, values in sections.items():
            doc.setdefault(section, {}).update(values)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        return path

    return make


@pytest.fixture(scope="session")
def naip_scenes() -> list[Path]:
    scenes = sorted(NAIP.glob("*.tif"))
    if not scenes:
        pytest.skip(f"real NAIP scenes not found at {NAIP} (see shared/data/README.md)")
    return scenes


class PartsWatcher:
    """What a run writes into its parts folder (``<output>.parts/``), seen by a thread that polls it.

    A run removes the folder once the products are published, so what it held can only be seen
    while it runs. Every poll adds each file's name to ``names``; for the names ``stat`` selects,
    ``history[name]`` lists every distinct (st_ino, st_mtime_ns) seen, oldest first: a file
    rewritten (renamed over, as the parts and records are) shows a second entry.
    """

    def __init__(self, folder: Path, *, stat: Callable[[str], bool] = lambda name: False, interval: float = 0.005) -> None:
        self.folder, self.stat, self.interval = Path(folder), stat, interval
        self.names: set[str] = set()
        self.history: dict[str, list[tuple[int, int]]] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def records(self) -> set[str]:
        """The chunk records (``chunk-RRRRR-CCCCC.npz``) seen: one per chunk finished."""
        return {n for n in self.names if n.startswith("chunk-") and n.endswith(".npz")}

    def poll(self) -> None:
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:  # not created yet, or removed by the finished run
            return
        self.polls += 1
        for entry in entries:
            if entry.name.endswith(".tmp"):  # a part being written, not yet renamed into place
                continue
            self.names.add(entry.name)
            if self.stat(entry.name):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                seen = self.history.setdefault(entry.name, [])
                if not seen or seen[-1] != (st.st_ino, st.st_mtime_ns):
                    seen.append((st.st_ino, st.st_mtime_ns))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(self.interval)

    def __enter__(self) -> PartsWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what is left (a refused or interrupted run keeps its parts)


@pytest.fixture(scope="session")
def watch_parts() -> type[PartsWatcher]:
    """``with watch_parts(folder) as seen: run(...)``, then ``seen.records()``: the chunks written."""
    return PartsWatcher
