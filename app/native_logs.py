"""Native libraries log straight to file descriptor 2, where Python's logging cannot filter them:
LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." each time a BlazePose
model is loaded, libjpeg "Corrupt JPEG data: ..." and libpng "libpng error: ..." for a damaged
picture, FFmpeg its decoder's complaints. Users should see the app's lines only.

`python_owns_stderr()` is for the command line: for the whole run, fd 2 goes to /dev/null and
Python's sys.stderr to the real terminal (a copy of the old fd 2), so everything Python writes
(logging, the progress bar, the summary, tracebacks) still shows, from every thread, while
nothing native does. `native_stderr_silenced()` points fd 2 at /dev/null for a moment only; it
is for code that runs outside the command line (batch workers) and while no other thread
writes, since Python's own writes to fd 2 go to /dev/null with the native ones meanwhile.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys

# Set to 1 to see the native libraries' own lines again (debugging a crash inside one of them).
KEEP_NATIVE_LOGS_ENV = "CONVNEXTPOSE_NATIVE_LOGS"


@contextlib.contextmanager
def native_stderr_silenced():
    if sys.stderr is not None:   # None: the process started with fd 2 closed
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


@contextlib.contextmanager
def python_owns_stderr():
    """For the block: native writes to fd 2 vanish, Python's sys.stderr writes to the terminal.
    Everything is put back afterwards (in-process callers such as tests get their stderr back)."""
    previous = sys.stderr
    if previous is None:
        # Started with fd 2 closed (`2>&-`, some service managers): Python has no stderr, and
        # every write to it (the progress bar, a warning) would fail and end the run, losing its
        # outputs. Nobody can read the lines: send them nowhere.
        with open(os.devnull, "w") as nowhere:
            sys.stderr = nowhere
            try:
                yield
            finally:
                sys.stderr = previous
        return
    # Only the process's own stderr: a caller that replaced sys.stderr (a test capturing it)
    # keeps what it set up.
    if os.environ.get(KEEP_NATIVE_LOGS_ENV, "") not in ("", "0") or previous is not sys.__stderr__:
        yield
        return
    try:
        previous.flush()
        real = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no fd 2 (a detached process): nothing to do
        yield
        return
    # Unbuffered underneath and written through, as Python's own stderr: a line shows at once,
    # and a \r progress redraw too.
    stream = io.TextIOWrapper(io.FileIO(real, "w", closefd=True),
                              encoding=getattr(previous, "encoding", None) or "utf-8",
                              errors="backslashreplace", line_buffering=True, write_through=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = stream
    try:
        yield
    finally:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)
        sys.stderr = previous
        stream.close()
