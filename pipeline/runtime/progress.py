"""One progress bar per stage on a terminal, however many dask computations the stage makes.

dask's own ``ProgressBar`` draws a bar per computation: the label pass of a state, written in
hundreds of batches of one computation each, drew hundreds of bars from 0 %, and no time left.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from dask.callbacks import Callback
from dask.utils import format_time


class StageBar(Callback):
    """A bar for one stage, drawn from dask's local schedulers' callbacks (a distributed client's
    dashboard shows its own). A stage run in equal parts, one computation each (the label pass's
    batches), calls the bar with (parts done, parts) before each: one bar then crosses the whole
    stage and shows the time left. Otherwise each computation that lasts ``minimum`` seconds
    draws a bar of its own, as dask's ``ProgressBar`` does, and the client's work between them
    (the fit) draws nothing."""

    def __init__(self, out: TextIO, *, minimum: float = 0.5, width: int = 40, every: float = 0.1) -> None:
        super().__init__()
        self._out, self._minimum, self._width, self._every = out, minimum, width, every
        self._parts: tuple[int, int] | None = None
        self._state: dict[str, Any] | None = None
        self._computed = 0.0  # the current computation's share once it has finished
        self._began = self._computation_began = 0.0
        self._drawn = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, daemon=True)

    def __call__(self, done: int, total: int) -> None:
        """``done`` of the stage's ``total`` parts are finished; the next computation is the next part."""
        self._parts = (done, max(total, 1))
        self._state, self._computed = None, 0.0

    def __enter__(self) -> StageBar:
        self._began = time.perf_counter()
        self._timer.start()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._stop.set()
        self._timer.join()
        if self._parts is not None:
            self._close(self._began, complete=exc[0] is None)

    def _fraction(self) -> float:
        """The share done: of the stage in parts (whole parts, plus the running computation's
        finished tasks), else of the current computation."""
        state, share = self._state, self._computed
        if state is not None:
            finished = len(state["finished"])
            tasks = finished + sum(len(state[key]) for key in ("ready", "waiting", "running"))
            share = finished / tasks if tasks else 0.0
        done, total = self._parts or (0, 1)
        return min(1.0, (done + share) / total)

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        self._computation_began = time.perf_counter()
        self._state, self._computed = state, 0.0

    def _finish(self, dsk: Any, state: dict[str, Any], errored: bool) -> None:
        with self._lock:  # the timer, which draws under the lock, sees the computation ended
            self._state, self._computed = None, 1.0
        if self._parts is None:
            self._close(self._computation_began, complete=not errored)

    def _tick(self) -> None:
        while not self._stop.wait(self._every):
            began = self._began if self._parts is not None else self._computation_began
            with self._lock:
                if (self._parts is not None or self._state is not None) and time.perf_counter() - began >= self._minimum:
                    self._draw(began, self._fraction())

    def _close(self, began: float, *, complete: bool) -> None:
        """End a drawn bar's line (full, unless its work failed)."""
        with self._lock:
            if self._drawn or time.perf_counter() - began >= self._minimum:
                if complete:
                    self._draw(began, 1.0)
                self._out.write("\n")
                self._out.flush()
                self._drawn = False

    def _draw(self, began: float, fraction: float) -> None:
        """Redraw the line; the caller holds the lock."""
        elapsed = time.perf_counter() - began
        line = f"\r[{'#' * int(self._width * fraction):<{self._width}}] | {int(100 * fraction):3d}% | {format_time(elapsed)}"
        if self._parts is not None and 0 < fraction < 1:  # parts are alike: the rate so far tells the rest
            line += f", ~{format_time(elapsed * (1 - fraction) / fraction)} left"
        self._out.write(f"{line:<80}")  # padded: a shorter line covers the longer one before
        self._out.flush()
        self._drawn = True
