"""All outputs of a run, fed and closed together: a frame is in every output or in none."""
from __future__ import annotations

from typing import Callable

import numpy as np

from app.signals import deferred
from app.types import FrameResult

from .atomic import FileSink


class SinkGroup:
    """The frame loop's single handle on every output: write() feeds each sink, close()
    finalizes each one even when another fails, `files` lists what was actually written."""

    def __init__(self, sinks: list[FileSink] | None = None):
        self.sinks: list[FileSink] = list(sinks or [])

    def add(self, sink: FileSink) -> FileSink:
        self.sinks.append(sink)
        return sink

    @property
    def needs_image(self) -> bool:
        """Whether the loop must compose the annotated image (skip that work otherwise)."""
        return any(s.needs_image for s in self.sinks)

    def write(self, result: FrameResult, composed: np.ndarray | None = None) -> None:
        # Feed every sink even if one fails, so all outputs hold the same frames; then raise.
        # Ctrl-C waits for the whole frame, not just one sink: a frame is in all outputs or none.
        with deferred():
            self._each(lambda sink: sink.write(result, composed))

    def close(self) -> None:
        self._each(lambda sink: sink.close())

    def _each(self, call: Callable[[FileSink], None]) -> None:
        """call(sink) for every sink even when one raises; then raise the first error."""
        first_error: BaseException | None = None
        for sink in self.sinks:
            try:
                call(sink)
            except BaseException as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    @property
    def files(self) -> list[str]:
        """Outputs that exist after close(): sinks that wrote at least one frame and finished."""
        return [str(s.path) for s in self.sinks if s.committed]
