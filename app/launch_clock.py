"""Seconds since this process was launched: what start-up time is measured from.

Read from the kernel (Linux: the process's start time in /proc/self/stat against the uptime in
/proc/uptime), so the interpreter's own start and every import count. Elsewhere it counts from
the moment this module was first imported (run_demo.py imports it before anything heavy)."""
from __future__ import annotations

import os
import time

_IMPORTED = time.monotonic()


def _kernel_seconds_since_launch() -> float | None:
    try:
        with open("/proc/self/stat") as stat:
            # the command name (field 2) may hold spaces: split after its closing parenthesis
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as uptime:
            now = float(uptime.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")   # field 22: start time in ticks since boot
        return max(0.0, now - started)
    except (OSError, ValueError, IndexError):
        return None


_OFFSET = _kernel_seconds_since_launch() or 0.0   # time already spent when this was imported


def seconds_since_launch() -> float:
    return _OFFSET + (time.monotonic() - _IMPORTED)
