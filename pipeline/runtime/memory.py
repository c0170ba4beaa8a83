"""Freed memory given back to the operating system, where the C library can.

glibc keeps the memory of freed arrays of a few MB in its heaps for later use (the threshold above
which it maps them separately rises with the arrays a process frees), so the peak RSS grows by
whatever each thread ever freed. The cleanup's windows free ~25 MB of temporaries a thread each
time: given back, the 600 MP run's peak RSS with the cleanup fell from ~1.12x to ~1.03x that of
the run without (docs/performance.md). Dask's distributed workers trim for the same reason."""

from __future__ import annotations

import ctypes
import sys
from functools import cache


@cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def give_back_freed() -> None:
    """Return the heaps' free memory to the operating system (glibc's ``malloc_trim``, which is
    thread-safe); nothing elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
