"""The terminal's progress bar: one per stage, however many dask computations the stage makes."""

from __future__ import annotations

import io
import re
import time

import dask
import dask.array as da
import numpy as np

from pipeline.runtime.progress import StageBar

BAR = re.compile(r"\r\[[# ]*\] \| +(\d+)% \| ([^\r\n]*)")


def slow(block: np.ndarray, seconds: float) -> np.ndarray:
    time.sleep(seconds)
    return block


def computation(seconds: float, tasks: int = 4) -> None:
    array = da.ones(tasks, chunks=1).map_blocks(slow, seconds / tasks, dtype=float)
    with dask.config.set(scheduler="threads", num_workers=1):
        array.sum().compute()


def bars(text: str) -> list[list[tuple[int, str]]]:
    """Per line of output, the (percent, rest) of each redraw on it."""
    return [[(int(p), rest) for p, rest in BAR.findall(line)] for line in text.split("\n")[:-1]]


def test_a_stage_in_parts_draws_one_bar_across_them_with_the_time_left():
    out = io.StringIO()
    with StageBar(out, minimum=0.0, every=0.01) as bar:
        for part in range(3):
            bar(part, 3)
            computation(0.2)
    lines = bars(out.getvalue())
    assert len(lines) == 1 and out.getvalue().endswith("\n")  # one line, ended once
    percents = [p for p, _ in lines[0]]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < p < 100 for p in percents)
    assert all("left" in rest for p, rest in lines[0] if 0 < p < 100) and "left" not in lines[0][-1][1]


def test_a_stage_not_in_parts_draws_a_bar_per_long_computation_and_none_for_short_ones():
    out = io.StringIO()
    with StageBar(out, minimum=0.15, every=0.01):
        computation(0.4)
        computation(0.02)  # within the minimum: nothing drawn
        time.sleep(0.3)  # the client's work between computations draws nothing either
        computation(0.4)
    lines = bars(out.getvalue())
    assert len(lines) == 2
    for line in lines:
        percents = [p for p, _ in line]
        assert percents == sorted(percents) and percents[-1] == 100 and not any("left" in rest for _, rest in line)


def test_a_short_stage_draws_nothing():
    out = io.StringIO()
    with StageBar(out, minimum=5.0, every=0.01) as bar:
        bar(0, 2)
        computation(0.05)
    assert out.getvalue() == ""
