"""Native libraries log straight to file descriptor 2, where Python's logging cannot filter them:
LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." each time a BlazePose
model is loaded. These helpers point fd 2 at /dev/null for those moments only, so users see the
app's lines."""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (a detached process): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
