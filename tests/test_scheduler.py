"""The same config and seed give the same bytes on every scheduler, even when a worker dies."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from dask.utils import key_split
from distributed import LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from rasters import (
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)

from pipeline import load_config, run
from pipeline.products.chunks import CHUNK_TASK

SHAPE = (1536, 1280)  # 7.9 MB of uint8 imagery, 3 x 3 chunks of 512


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scheduler")
    truth = planted_classes(*SHAPE, 5, seed=2)
    image = planted_image(truth, class_centres(5, 4, low=10, high=250, seed=2), noise=6.0, dtype="uint8", seed=2)
    return write_raster(folder / "scene.tif", image)


def run_with(scene: Path, folder: Path, **dask_options):
    doc = {
        "input": {"paths": [str(scene)]},
        "model": {"k": 5, "n_init": 1},
        "sample": {"size": 200_000},
        "output": {"path": str(folder / "labels.tif"), "confidence": True},
        "dask": {"chunk": 512, **dask_options},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(doc))
    return run(load_config(folder / "run.yaml"))


@pytest.fixture(scope="module")
def threaded(scene, tmp_path_factory):
    return run_with(scene, tmp_path_factory.mktemp("threaded"))


def test_local_cluster_gives_the_threaded_bytes(scene, threaded, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    cluster = run_with(scene, tmp_path, scheduler="local-cluster", workers=2, threads_per_worker=1)
    assert "2 worker(s), 2 thread(s)" in caplog.text
    np.testing.assert_array_equal(read_labels(cluster.output), read_labels(threaded.output))
    # The COG holds no timestamp and the model sidecar holds no timing, so the whole
    # files can be compared; the report's timings differ and its class table must not.
    assert cluster.output.read_bytes() == threaded.output.read_bytes()
    assert cluster.confidence_path.read_bytes() == threaded.confidence_path.read_bytes()
    assert cluster.model_path.read_bytes() == threaded.model_path.read_bytes()
    assert cluster.report.classes == threaded.report.classes


def test_processes_give_the_threaded_bytes(scene, threaded, tmp_path):
    processes = run_with(scene, tmp_path, scheduler="processes", workers=2)
    assert processes.output.read_bytes() == threaded.output.read_bytes()
    assert processes.confidence_path.read_bytes() == threaded.confidence_path.read_bytes()


class KillOneWorkerWhileLabelling(SchedulerPlugin):
    """Once the first label chunk is written, SIGKILL a worker process that is busy with a task."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.killed: int | None = None

    def transition(self, key, start, finish, *args, **kwargs):
        # The first labelled chunk in memory (key_split drops the leading "_" of the name).
        if self.killed is None and finish == "memory" and key_split(key) == CHUNK_TASK:
            busy = [w for w in self.scheduler.workers.values() if w.processing] or list(self.scheduler.workers.values())
            self.killed = busy[0].pid
            os.kill(self.killed, signal.SIGKILL)


def test_a_worker_killed_while_labelling_changes_nothing(scene, threaded, tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        plugin = KillOneWorkerWhileLabelling(cluster.scheduler)
        cluster.scheduler.add_plugin(plugin, name="kill-one-worker")
        result = run_with(scene, tmp_path, scheduler=cluster.scheduler_address)
        assert plugin.killed is not None
        assert plugin.killed not in {w.pid for w in cluster.scheduler.workers.values()}
    np.testing.assert_array_equal(read_labels(result.output), read_labels(threaded.output))
    assert result.output.read_bytes() == threaded.output.read_bytes()
    assert result.confidence_path.read_bytes() == threaded.confidence_path.read_bytes()


def test_a_state_is_written_in_batches_sized_on_the_scheduler(tmp_path):
    # One graph of Texas would hold ~8 GB of dask state on the client: batches hold 64 chunks a
    # thread (256 at least, 16,384 at most; 4,096 at least with the cleanup's halo).
    from pipeline.products.chunks import batch_depth
    from pipeline.runtime.scheduler import Scheduler, computing, task_slots

    with computing(Scheduler("threads", workers=3)):
        assert task_slots() == 3
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, cluster.get_client():
        assert task_slots() == 4
    assert [4**batch_depth(threads) for threads in (1, 2, 4, 16, 64, 400, 10_000)] == [256, 256, 256, 1024, 4096, 16384, 16384]
    assert [4**batch_depth(threads, halo=True) for threads in (2, 400)] == [4096, 16384]
