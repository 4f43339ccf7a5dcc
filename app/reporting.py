"""The one way the program reports to its user: the `app` and `models` loggers, written to
stderr one line per message, "warning: ..." and "error: ..." for those levels. The command line
sets it up for the length of a command (`reporting()`); everything else only logs.

A logged exception shows as its message, never as a traceback: the user gets one sentence."""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

LOGGERS = ("app", "models")
_PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = _PREFIX.get(record.levelno, "") + record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f": {error}" if str(error) else f": {type(error).__name__}"
        return text


class _StderrHandler(logging.Handler):
    """Writes to sys.stderr as it is at the moment (tests capture it), through tqdm when a bar
    is on screen so that the line does not tear the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None:
                tqdm.tqdm.write(line, file=sys.stderr)
            else:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:   # a closed stderr must not end the run
            self.handleError(record)


@contextlib.contextmanager
def reporting(level: int = logging.INFO) -> Iterator[None]:
    """Route the program's loggers to stderr for the length of the block, then restore them."""
    handler = _StderrHandler()
    handler.setFormatter(_LineFormatter())
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False   # not twice through a handler the host program set up
    try:
        yield
    finally:
        for lg, (lvl, propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(lvl)
            lg.propagate = propagate
