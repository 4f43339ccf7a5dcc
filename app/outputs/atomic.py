"""Files that are complete or absent: the temporary file beside the target, moved into place
only when complete, and the FileSink base every output is built on.

Every sink has the same two calls:

    sink.write(result: FrameResult, composed: np.ndarray | None)   # once per processed frame
    sink.close()                                                   # once, in a `finally`

The promise, whatever ends the run (end of input, Ctrl-C, an exception): after close() the output
file is complete and readable and holds every frame written so far; or, when no frame was
written, there is no output file at all. How:

* Everything is written to a hidden temporary file beside the target (same folder, so the final
  os.replace is atomic) and moved into place only by close(). A reader never sees a half-written
  target, and a failed sink removes its temporary file.
* Temporary files are created on the first write, so a run that writes nothing leaves nothing.
* Each write and the whole of close() run with stop signals deferred (app/signals.py): Ctrl-C,
  SIGTERM or SIGHUP is delivered right after the frame is fully written or the file is
  finalized, never in the middle (which would leave half a JSON object or half a raw frame in
  the encoder's pipe). Further signals while the files are being finished are ignored.
* A file system error (a full disk, a removed folder) becomes a UserError naming the output;
  the failed output's temporary file is removed and what was at the target stays as it was.
* Temporary names carry the writer's process id, so a later run to the same target removes
  the ones a killed run (kill -9) left behind, and never those of a run still going.
* close() is idempotent, and sinks not closed by the program are closed at interpreter exit.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import secrets
import weakref
from pathlib import Path

import numpy as np

from app.errors import UserError
from app.signals import deferred
from app.types import FrameResult

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Temporary names, and the ones a killed run left behind

def temp_path_beside(target: Path) -> Path:
    """Hidden, unique, same folder (so os.replace is atomic), same extension (encoders pick
    the container from it), with this process's id (see remove_stale_temporaries)."""
    return target.with_name(f".{target.stem}.part-{os.getpid()}-{secrets.token_hex(4)}{target.suffix}")


def _temp_pattern(target: Path | None) -> re.Pattern:
    """The temporary names of `target`; None: of any file (inside an image-folder output)."""
    stem, suffix = (re.escape(target.stem), re.escape(target.suffix)) if target else (".+", r"\.\w+")
    return re.compile(rf"\.{stem}\.part-(\d+)-[0-9a-f]{{8}}{suffix}")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # exists (another user's), or we cannot tell: keep its files
    return True


def remove_stale_temporaries(target: Path, *, inside: bool = False) -> list[Path]:
    """Remove the temporary files an earlier run writing to `target` left behind when it was
    killed (kill -9 cannot be handled): only names of this module's pattern for this very
    target (inside=True: for the files in the folder `target`), and only those whose process is
    gone. Returns what was removed."""
    pattern = _temp_pattern(None if inside else target)
    folder = target if inside else target.parent
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file() and not entry.is_symlink():
                entry.unlink()
                removed.append(entry)
    return removed


# --------------------------------------------------------------------------------------------
# Writing, committing, discarding

def write_error(path: Path, error: OSError) -> UserError:
    """One sentence for a file system error while writing an output (ENOSPC above all)."""
    reason = error.strerror or str(error)
    return UserError(f"cannot write '{path}': {reason[0].lower() + reason[1:] if reason else 'error'}"
                     " (what was there before is unchanged).")


def _fsync_path(path: Path) -> None:
    """Flush a finished temp file to disk before it replaces the target."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_bytes_atomically(target: Path, data: bytes) -> None:
    """The whole file at once: written beside the target, flushed, then moved into place."""
    temp = temp_path_beside(target)
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise


# --------------------------------------------------------------------------------------------
# The base of every sink, and the safety net at exit

_unclosed_sinks: "weakref.WeakSet[FileSink]" = weakref.WeakSet()


@atexit.register
def _close_forgotten_sinks() -> None:
    """Safety net: finalize sinks the program did not close (e.g. a bug skipped a `finally`)."""
    for sink in list(_unclosed_sinks):
        try:
            sink.close()
        except Exception as exc:   # at exit there is no one left to raise to
            log.warning("could not finalize %s: %s", sink.path, exc)


class FileSink:
    """Base of every sink: counts frames, defers Ctrl-C, closes once, commits or discards.

    A write is split in two so that only real damage fails the sink: `_render` turns the frame
    into what will be written and touches no file (an exception there just propagates, the
    output stays good); `_emit` writes it (may create the temp file on its first call) and an
    exception there may have left the file half-written, so the sink is marked failed and
    close() discards it. `_finish` completes the temp file (only called when frames were
    written); `_abandon` releases resources after a failure (the base class removes the temp
    file).
    """

    needs_image = False   # True for sinks that use the composed image (video, images)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.frames_written = 0
        self._temp: Path | None = None
        self._closed = False
        self._failed = False
        self._committed = False   # this run's file completed and moved into place
        remove_stale_temporaries(self.path)
        _unclosed_sinks.add(self)

    @property
    def committed(self) -> bool:
        """This run's file is complete and in place (a file left there by an earlier run, when
        this one failed to finish, does not count)."""
        return self._committed and self.path.exists()

    def write(self, result: FrameResult, composed: np.ndarray | None = None) -> None:
        if self._closed:
            raise RuntimeError(f"write to closed sink {self.path}")
        if self._failed:
            return   # already reported by the write that failed
        payload = self._render(result, composed)
        with deferred():
            try:
                self._emit(payload)
            except OSError as error:   # a full disk, a folder removed under us
                self._failed = True
                raise write_error(self.path, error) from None
            except BaseException:
                self._failed = True
                raise
            self.frames_written += 1

    def close(self) -> None:
        """Finalize and move the file into place; with no frames written, leave nothing.
        Safe to call twice; raises UserError if the file could not be completed."""
        if self._closed:
            return
        self._closed = True
        _unclosed_sinks.discard(self)
        with deferred():
            if self._failed or self.frames_written == 0:
                self._discard()
                return
            try:
                self._finish()
                self._commit()
            except OSError as error:
                self._discard()
                raise write_error(self.path, error) from None
            except BaseException:
                self._discard()
                raise
            self._committed = True

    def __enter__(self) -> "FileSink":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- for subclasses --------------------------------------------------------------------

    def _new_temp(self) -> Path:
        self._temp = temp_path_beside(self.path)
        return self._temp

    def _commit(self) -> None:
        if self._temp is None:
            return
        _fsync_path(self._temp)
        os.replace(self._temp, self.path)
        self._temp = None

    def _discard(self) -> None:
        try:
            self._abandon()
        finally:
            _remove_quietly(self._temp)
            self._temp = None

    def _render(self, result: FrameResult, composed: np.ndarray | None):
        raise NotImplementedError

    def _emit(self, payload) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass

    def _abandon(self) -> None:
        pass
