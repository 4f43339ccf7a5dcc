"""Stop signals: Ctrl-C (SIGINT), SIGTERM (docker stop, systemd, `timeout`) and SIGHUP (a closed
terminal) all end a run the same way: the first one raises `Interrupted` on the main thread, the
frame loop's `finally` completes every output, and the exit code is 128 + the signal's number.

Once a stop has been asked for, further signals are ignored: pressing Ctrl-C three times in a
row must not cut short the finishing of the files the first one started (the video encoder has
its own time limit, so finishing cannot hang). Only kill -9 ends a run without finishing.

`deferred()` marks a block that must not be cut in half (one frame into every output, a file
being finalized): a signal arriving inside it is delivered when the block ends.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
# the stop signals other than a terminal's Ctrl-C: what `timeout`, systemd or a closed terminal send
TERMINATION_SIGNALS = tuple(sig for sig in STOP_SIGNALS if sig != signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `exit_code` is the shell's convention for it (130 for Ctrl-C)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    installed = False
    signum: int | None = None     # the first stop signal of this run
    raised = False                # Interrupted has been raised for it
    depth = 0                     # nesting of deferred() blocks on the main thread


_state = _State()


def exit_code_for(error: BaseException) -> int:
    """128 + the stop signal's number. A KeyboardInterrupt that a library raised in place of
    ours (Ray's ray.wait turns Interrupted into a plain one) gets the signal this run received."""
    if isinstance(error, Interrupted):
        return error.exit_code
    return stop_exit_code()


def stop_exit_code() -> int:
    """128 + the number of the first stop signal this command received (130 where none was
    recorded: a KeyboardInterrupt raised outside handled())."""
    return 128 + (_state.signum or signal.SIGINT)


def stop_requested() -> bool:
    return _state.signum is not None


def _handle(signum, frame) -> None:
    if _state.signum is not None:
        return   # already stopping: let the files be finished
    _state.signum = signum
    if _state.depth == 0:
        _state.raised = True
        raise Interrupted(signum)


@contextlib.contextmanager
def handled(process_exits_after: bool = False, which: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Install the handlers for the length of a command (main thread only), then restore them.

    process_exits_after: the block is the whole life of the process (the command line's entry
    point). After a stop the process is exiting with its code, and a late signal of a burst
    must not kill it by the default handler (exit -2 instead of 130): the stop signals are then
    left ignored. In-process callers (tests, notebooks) get their own handlers back, so that
    nothing they start later inherits ignored signals. which: the signals to handle. Inside
    another handled() block (a frame loop run by the command line) this does nothing."""
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in which}
    _state.installed, _state.signum, _state.raised, _state.depth = True, None, False, 0
    for sig in which:
        # nohup's ignored SIGHUP is what the user asked for. An ignored SIGINT is not: a shell
        # script's `cmd &` starts it so, and `kill -INT` must still stop the run.
        if sig != signal.SIGINT and previous[sig] == signal.SIG_IGN:
            continue
        signal.signal(sig, _handle)
    try:
        yield
    finally:
        stopping = _state.signum is not None
        for sig, handler in previous.items():
            if stopping and process_exits_after:
                handler = signal.SIG_IGN
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        _state.installed, _state.signum, _state.raised, _state.depth = False, None, False, 0


def for_a_run():
    """A frame loop's scope. Under the command line (handled() is on) it adds nothing. In a
    library or a notebook, where Python's own Ctrl-C handler is in place, Ctrl-C is handled
    for the whole run as the command line does, so that deferred() holds it without swapping
    handlers for every frame; a host's own handlers, or an ignored SIGINT, are left alone."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return contextlib.nullcontext()
    return handled(which=(signal.SIGINT,))   # itself a no-op off the main thread


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal until the block ends, then raise `Interrupted` (once per run).
    Outside `handled()` (library use, tests) only Ctrl-C is held, then raised as
    KeyboardInterrupt. Signals are only handled on the main thread; elsewhere this does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _state.installed:
        with _sigint_deferred():
            yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _state.depth == 0 and _state.signum is not None and not _state.raised:
        _state.raised = True
        raise Interrupted(_state.signum)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous == signal.SIG_IGN:   # from C (cannot be restored), or ignored
        yield
        return
    received: list = []

    def hold(signum, frame):
        received.append((signum, frame))

    try:
        signal.signal(signal.SIGINT, hold)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(*received[0])
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt
