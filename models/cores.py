"""How many CPU cores this process may use: its affinity mask (a container's or `taskset`'s
share), where the OS has one, else every core."""
from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1
