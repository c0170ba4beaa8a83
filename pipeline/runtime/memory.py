"""Freed memory given back to the operating system, where the C library can.

glibc keeps the memory of freed arrays of a few MB in its heaps for later use (the size above
which it maps arrays on their own rises to that of the largest it has unmapped, up to 32 MB), so
a thread's heap stays as large as the most it ever held at once. The cleanup's windows free
~25 MB of temporaries a thread each time: given back, the 600 MP run's peak RSS with the cleanup
fell from 1.12x to 1.05x that of the run without (docs/performance.md). Dask's distributed nanny
sets MALLOC_TRIM_THRESHOLD_ for its workers for the same reason."""

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
