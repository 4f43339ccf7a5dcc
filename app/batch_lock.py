"""One batch at a time per --out-dir: two batches on one folder would redo each other's videos
and interleave their manifests."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


class OutDirLock:
    """An advisory lock (flock) on the folder itself, so that nothing is left behind in it and a
    killed batch's lock goes with its process. Where flock does not exist (Windows) nothing is
    locked."""

    def __init__(self):
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self, out_dir: Path) -> None:
        """Lock the folder, or say in one line that another batch holds it."""
        try:
            import fcntl
        except ImportError:
            return
        try:
            fd = os.open(out_dir, os.O_RDONLY)
        except OSError:   # a folder this user may write to but not read: left unlocked
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(f"another batch is writing to '{out_dir}': wait for it to end, "
                            "or choose another --out-dir.") from None
        self._fd = fd

    def __enter__(self) -> "OutDirLock":
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
