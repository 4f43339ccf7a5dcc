"""What a command changes for its whole process, in one place: applied when the command starts,
undone when it ends (run_demo.py's single run and the batch driver use it; a batch worker
process silences its own native lines, app/batch_worker.py).

- fd 2 goes to /dev/null and Python's sys.stderr to the terminal: the native libraries' own
  lines (FFmpeg, OpenCV, libjpeg, libpng, LiteRT) stay off the user's screen, Python's show
  (app/native_logs.py);
- the program's loggers write to stderr, one line per message (app/reporting.py);
- Ctrl-C, SIGTERM and SIGHUP end the command the same way (app/signals.py).

Library code changes none of these: it logs, raises, and leaves the process as it found it."""
from __future__ import annotations

import contextlib
from typing import Iterator

from . import signals
from .native_logs import python_owns_stderr
from .reporting import reporting


@contextlib.contextmanager
def command_scope(process_exits_after: bool = False) -> Iterator[None]:
    """process_exits_after: the process ends with the command (see signals.handled)."""
    with python_owns_stderr(), reporting(), signals.handled(process_exits_after):
        yield
