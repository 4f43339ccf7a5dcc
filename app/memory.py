"""This process's memory: how much is resident, keeping freed memory for the length of a run,
and handing back what is free but kept."""
from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator

# glibc's mallopt parameters, and its documented defaults for the two (128 KiB each)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
_KEPT = 1 << 30


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

    A run keeps freed memory (keep_freed_memory): that saves page faults on every pass, but then
    each transient peak (a queue briefly full, a burst on another thread) stays resident for good
    and a long run creeps up in steps. The frame loop trims every few hundred frames; it takes
    ~0.1 ms, ~10 ms when there is much to return."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """For the block, glibc keeps freed memory instead of handing it back to the OS at once; at
    its end glibc's defaults are set back. Yields whether it applies (glibc only).

    A ConvNeXtPose-L pass allocates ~40 MB of activations per crop; with glibc's defaults they
    are mmap'ed and unmapped on every call, and the page faults of touching fresh pages cost a
    measurable part of a pass on 2-core machines (benchmarks/bench_pose.py). Process-wide, so
    the frame loop applies it for its run only (and trims the heap as it goes, trim_heap)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = (libc.mallopt(_M_MMAP_THRESHOLD, _KEPT) == 1
                   and libc.mallopt(_M_TRIM_THRESHOLD, _KEPT) == 1)
    except (OSError, AttributeError):
        yield False
        return
    try:
        yield applied
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
