"""Freed memory given back to the operating system (runtime/memory.py), measured in a fresh
interpreter so that the heap holds only what the test put there."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from pipeline.runtime.memory import _malloc_trim, give_back_freed

# Arrays of 4 MB, freed between smaller ones that stay (so the heap cannot shrink from its top),
# after one of 16 MB was freed: glibc then keeps them in its heap. Prints the resident bytes
# that freeing 25 of them gave back, then what ``give_back_freed`` gave back; then, for 2 more
# (less than the slack above the most it held) and 40 more, what it gave back.
FREED = """
import numpy as np
from pathlib import Path
from pipeline.runtime.memory import give_back_freed
def resident():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096
def given_back(arrays):
    freed, kept = [], []
    for _ in range(arrays):
        freed.append(np.ones(4 << 20, np.uint8))
        kept.append(np.ones(300_000, np.uint8))
    before = resident()
    del freed
    after_free = resident()
    give_back_freed()
    return before - after_free, after_free - resident(), kept
big = np.ones(16 << 20, np.uint8)
del big
by_free, by_trim, kept = given_back(25)
_, few, kept_too = given_back(2)
_, many, kept_more = given_back(40)
print(by_free, by_trim, few, many)
"""


def test_freed_arrays_go_back_to_the_system():
    if platform.libc_ver()[0] != "glibc":  # elsewhere there is no malloc_trim, and nothing to do
        assert _malloc_trim() is None and give_back_freed() is None
        return
    # glibc's tunables from the environment fix its thresholds (a LocalCluster started earlier in
    # this process sets MALLOC_TRIM_THRESHOLD_ for its workers in os.environ): the heap as it is by default.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", FREED], capture_output=True, text=True, check=True, env=env)
    by_free, by_trim, few, many = map(int, done.stdout.split())
    assert by_free < 20 << 20  # glibc kept the 100 MB freed...
    assert by_trim > 80 << 20  # ...and gives them back when asked
    assert few < 1 << 20  # 8 MB freed: within the slack, kept for the next window
    assert many > 120 << 20  # 160 MB more: a new peak, given back
