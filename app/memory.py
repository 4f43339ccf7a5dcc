"""This process's memory: how much is resident, and handing back what is free but kept."""
from __future__ import annotations

import ctypes
import os


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def trim_heap() -> bool:
    """Give memory that glibc holds free back to the OS (`malloc_trim`). True when some was
    returned; False when there was none to return, or the C library is not glibc.

    The pose model asks glibc to keep freed memory (models.optimize.tune_cpu_allocator): that
    saves page faults on every pass, but then each transient peak (a queue briefly full, a burst
    on another thread) stays resident for good and a long run creeps up in steps. The frame
    loop trims every few hundred frames; it takes ~0.1 ms, ~10 ms when there is much to return."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
