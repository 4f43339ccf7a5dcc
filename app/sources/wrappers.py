"""Source wrappers: looping a file (--loop) and a frame limit (--max-frames), for any source."""
from __future__ import annotations

from typing import Callable, Iterator

from app.types import Frame

from .base import Source


class LoopingSource:
    """Plays a file source again from the start at its end (--loop), with frame indices and
    times that keep increasing so tracking and smoothing see one continuous stream. It has no
    frame count: it never ends by itself. `reopen` opens the file again for the next pass."""

    frame_count = None

    def __init__(self, first: Source, reopen: Callable[[], Source]):
        self.reopen = reopen
        self.current = first
        self.frames_per_pass = first.frame_count
        self._unreadable_in_a_pass = 0

    @property
    def frames_unreadable(self) -> int:
        """The most frames any pass could not decode (a damaged file loses the same ones each time)."""
        return max(self._unreadable_in_a_pass, getattr(self.current, "frames_unreadable", 0))

    def __getattr__(self, name):
        return getattr(self.current, name)

    def __iter__(self) -> Iterator[Frame]:
        offset_index, offset_time = 0, 0.0
        while True:
            last = None
            for frame in self.current:
                last = frame
                yield Frame(frame.index + offset_index, frame.time + offset_time, frame.image, frame.captured)
            if last is None:
                return
            offset_index += last.index + 1
            offset_time += last.time + 1.0 / max(1.0, self.current.fps)
            self._unreadable_in_a_pass = self.frames_unreadable
            self.current.close()
            self.current = self.reopen()

    def close(self):
        self.current.close()


class FrameLimit:
    """The first `limit` frames of a source (--max-frames)."""

    def __init__(self, source, limit: int):
        self.source = source
        self.limit = limit
        self.taken = 0
        count = source.frame_count
        self.frame_count = min(count, limit) if count else limit

    def __getattr__(self, name):
        return getattr(self.source, name)

    @property
    def frames_per_pass(self) -> int | None:
        """The input's own frame count (what a damaged file announced), not the limit."""
        return getattr(self.source, "frames_per_pass", self.source.frame_count)

    def frame_ready(self) -> bool:
        return self.taken >= self.limit or self.source.frame_ready()

    def __iter__(self) -> Iterator[Frame]:
        if self.taken >= self.limit:
            return
        for frame in self.source:
            self.taken += 1
            yield frame
            if self.taken >= self.limit:
                return

    def close(self) -> None:
        self.source.close()
