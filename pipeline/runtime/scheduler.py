"""Where the dask graphs of a run execute: the scheduler named by ``dask.scheduler``.

``threads`` (the default) and ``processes`` are dask's local schedulers; ``local-cluster`` starts
a distributed ``LocalCluster`` of worker processes on this machine; an address such as
``tcp://10.0.0.5:8786`` connects to a cluster that is already running. Every task is seeded by its
block index and every reduction has a fixed shape, so the labels do not depend on the choice.
When ``dask.scheduler`` is not set and the caller has an active distributed ``Client`` (a
notebook's), the run uses that client, and leaves it running.
Under distributed, workers write the COG's parts into the parts folder beside the output, so
every worker must see that folder at the same path (a shared filesystem).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import dask

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = "10s"  # an unreachable address fails fast instead of hanging the run


@dataclass(frozen=True)
class Scheduler:
    """Where a run's graphs execute (the ``dask`` keys)."""

    name: str = "threads"
    """threads, processes, local-cluster, or a running scheduler's address."""
    chosen: bool = False
    """Whether the user named it; if not, a caller's active distributed Client is used."""
    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None


@contextmanager
def computing(config: Scheduler) -> Iterator[None]:
    """Run the enclosed dask computations on the configured scheduler; shut down what it started.
    (GDAL's settings, its block cache among them, are set where files are read: on the workers.)"""
    client = None if config.chosen else active_client()
    if client is not None:
        _log_cluster(client)
        yield
        return
    if config.name in ("threads", "processes"):
        with dask.config.set(scheduler=_local_get(config.name), num_workers=config.workers):
            yield
        return

    from distributed import Client, LocalCluster

    if config.name == "local-cluster":
        cluster = LocalCluster(
            n_workers=config.workers,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.memory_limit or "auto",
            processes=True,
            # The workers' own log would print a failed task's traceback ("Compute Failed") before
            # the run's one error line: the error reaches the client, which says it once.
            silence_logs=logging.CRITICAL,
        )
        with cluster, Client(cluster) as client:
            _log_cluster(client)
            yield
        return

    try:
        client = Client(config.name, timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ConfigError(
            f"dask.scheduler: cannot reach {config.name} ({exc}); start it with `dask scheduler` "
            "and `dask worker <address>`, or fix the address"
        ) from None
    with client:
        _log_cluster(client)
        yield


def summed_over_processes(counts: Callable[[], dict[str, float]]) -> Counter:
    """``counts()`` of this process, plus that of every worker when a distributed client is active
    (the local schedulers run their tasks here; dask's process pool lives one compute only)."""
    total = Counter(counts())
    client = active_client()
    if client is not None:
        for worker in client.run(counts).values():
            total.update(worker)
    return total


def task_slots() -> int:
    """How many tasks the scheduler in effect runs at once: dask's local ``num_workers`` (the
    machine's cores by default), or the threads of an active distributed client's workers."""
    client = None if callable(dask.config.get("scheduler", None)) else active_client()  # callable: ``computing``'s local get
    return local_threads() if client is None else sum(_worker_threads(client)) or 1


def active_client():
    """The caller's distributed ``Client``, if one is active (without importing distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


@contextmanager
def for_in_memory_data() -> Iterator[None]:
    """The scheduler for computations on in-memory arrays (the fit on the sample).

    dask's process pool pickles the inputs of every task, and the fit runs small graphs (one per
    Lloyd iteration with ``sample.size: all``; dask-ml's fit, which that replaced, took over 6
    minutes a restart on the NAIP fit there against seconds on threads). numpy and the kernel
    release the GIL, so threads lose nothing. Distributed keeps the data on its workers.
    """
    chosen = dask.config.get("scheduler", None)
    if chosen == "processes" or getattr(chosen, "__module__", None) == "dask.multiprocessing":
        with dask.config.set(scheduler=_local_get("threads")):
            yield
    else:
        yield


def _local_get(name: str):
    """dask's local scheduler function for "threads" or "processes". Given by name, dask imports
    distributed at the first compute to look for a client (0.5 s of start-up); given as the
    function, it does not."""
    if name == "threads":
        return _threads_get
    import dask.multiprocessing

    return dask.multiprocessing.get


def _threads_get(dsk, keys, num_workers=None, **kwargs):
    """dask's threaded get on threads of its own, all stopped before it returns or raises: dask's
    shared pool would let the tasks already running when one fails (or on Ctrl-C) go on writing
    parts after the error has counted them."""
    import dask.threaded

    pool = ThreadPoolExecutor(num_workers or local_threads())
    try:
        return dask.threaded.get(dsk, keys, pool=pool, **kwargs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def local_threads() -> int:
    """The threads of dask's local schedulers, and of the fit's restarts on the client:
    ``num_workers`` (``dask.workers``), else the cores."""
    from dask.system import CPU_COUNT

    return dask.config.get("num_workers", None) or CPU_COUNT


def _worker_threads(client) -> list[int]:
    """The threads of each of the client's workers."""
    return [w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]


def _log_cluster(client) -> None:
    threads = _worker_threads(client)
    log.info("dask: %s, %d worker(s), %d thread(s)", client.scheduler.address, len(threads), sum(threads))
    # The dashboard exists only where bokeh is installed.
    if "dashboard" in client.scheduler_info(n_workers=0).get("services", {}):
        log.info("dask dashboard: %s", client.dashboard_link)
