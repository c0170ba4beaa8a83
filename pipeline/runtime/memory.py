"""Freed memory given back to the operating system, where the C library can.

glibc keeps the memory of freed arrays of a few MB in its heaps for later use (the size above
which it maps arrays on their own rises to that of the largest it has unmapped, up to 32 MB), so
a thread's heap stays as large as the most it ever held at once. The cleanup's windows free
~25 MB of temporaries a thread each time: given back, the 600 MP run's peak RSS with the cleanup
fell from 1.12x to 1.05x that of the run without (docs/performance.md). Dask's distributed nanny
sets MALLOC_TRIM_THRESHOLD_ for its workers for the same reason.

Giving back costs: the pages come back as page faults when the heaps grow again, and a trim walks
every heap, the client's too. At 10.67 GP a trim after each of 2,583 windows made the run 639 s
against 611 s with none (34 s more system CPU; the trims themselves took 7 s). The trims are for
the peak, so memory is given back only when the process holds ``SLACK`` more than when it last
gave memory back, on the way to a new peak: 7 times in that run (608 s), 2 to 4 times at 600 MP
(peak 1.08x the run's without the cleanup, against 1.06x with a trim after each window)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from functools import cache

SLACK = 16 << 20  # resident bytes above the high-water mark before memory is given back again
_high_water = {"bytes": 0}  # the most the process held when it last gave memory back
_trimming = threading.Lock()


@cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _resident() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def give_back_freed() -> None:
    """Return the heaps' free memory to the operating system (glibc's ``malloc_trim``, which is
    thread-safe) if the process holds ``SLACK`` more than when it last did; nothing elsewhere."""
    trim = _malloc_trim()
    if trim is None:
        return
    with _trimming:
        resident = _resident()
        if resident < _high_water["bytes"] + SLACK:
            return
        _high_water["bytes"] = resident
        trim(0)
