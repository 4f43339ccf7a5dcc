"""A dependency-free progress bar for processing files headless, and the end-of-run summary.

On a terminal the bar redraws one line in place with \\r:

    pedestrians.mp4  42% |#########-----------|  126/300  12.3 fps  ETA 0:14

When stderr is not a terminal (a log file, CI), \\r redraws would pile up as garbage, so it
prints a plain line now and then instead (every `plain_every_s` seconds; 0 disables them).
"""
from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from typing import Callable, Sequence, TextIO


def format_duration(seconds: float) -> str:
    """0:07, 1:02:03."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Call update() once per processed frame and close() at the end (or use `with`).

    total: the number of frames, or None when unknown (a camera, some streams): then it shows a
    count, rate and elapsed time instead of a bar and ETA. The rate is measured over the last
    few seconds, so the ETA follows speed changes. force=True draws the bar even when the
    stream is not a terminal; force=False never draws it (plain lines only).
    """

    BAR_WIDTH = 24
    RATE_WINDOW_S = 3.0

    def __init__(self, total: int | None, *, label: str = "", stream: TextIO | None = None,
                 force: bool | None = None, min_interval_s: float = 0.1,
                 plain_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.total = total if total and total > 0 else None
        self.label = label
        self.count = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._interactive = force if force is not None else _is_tty(self._stream)
        self._min_interval_s = min_interval_s
        self._plain_every_s = plain_every_s
        self._start = clock()
        self._last_draw = float("-inf")
        self._last_plain = self._start
        self._drawn_width = 0
        self._recent: deque[tuple[float, int]] = deque([(self._start, 0)])
        self._closed = False

    # -- measurements --------------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    @property
    def rate(self) -> float:
        """Frames per second over the recent window (the whole run while it is short)."""
        now = self._clock()
        t0, n0 = self._recent[0]
        return (self.count - n0) / (now - t0) if now > t0 and self.count > n0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.count) / rate

    # -- updating ------------------------------------------------------------------------

    def update(self, n: int = 1) -> None:
        self.count += n
        now = self._clock()
        self._recent.append((now, self.count))
        # Keep one sample older than the window so the rate spans the whole window.
        while len(self._recent) > 2 and now - self._recent[1][0] >= self.RATE_WINDOW_S:
            self._recent.popleft()
        if self._interactive:
            if now - self._last_draw >= self._min_interval_s or self.count == self.total:
                self._draw(self.line())
                self._last_draw = now
        elif self._plain_every_s and now - self._last_plain >= self._plain_every_s:
            self._stream.write(self.line() + "\n")
            self._stream.flush()
            self._last_plain = now

    def line(self) -> str:
        """The text of the bar as it is now."""
        rate = f"{self.rate:5.1f} fps"
        label = f"{self.label}  " if self.label else ""
        if self.total is None:
            return f"{label}{self.count} frames  {rate}  {format_duration(self.elapsed_s)}"
        done = min(1.0, self.count / self.total)
        filled = int(done * self.BAR_WIDTH)
        bar = "#" * filled + "-" * (self.BAR_WIDTH - filled)
        eta = self.eta_s
        eta_text = format_duration(eta) if eta is not None else "?"
        width = len(str(self.total))
        return (f"{label}{done * 100:3.0f}% |{bar}| {self.count:>{width}}/{self.total}  {rate}  "
                f"ETA {eta_text}")

    def _draw(self, text: str) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        text = text[: max(10, columns - 1)]   # a wrapped line could not be redrawn with \r
        padding = " " * max(0, self._drawn_width - len(text))   # wipe a longer previous line
        self._stream.write("\r" + text + padding)
        self._stream.flush()
        self._drawn_width = len(text)

    def close(self) -> None:
        """Leave the final state on its own line. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._interactive:
            self._draw(self.line())
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # no isatty, or the stream is closed
        return False


def format_summary(frames: int, seconds: float, people: int,
                   files: Sequence[str] = (), interrupted: bool = False) -> str:
    """The end-of-run line, e.g.
    "Processed 300 frames in 24.4 s (12.3 fps), 412 people found; wrote out.mp4, out.json."
    people: person detections summed over frames."""
    fps = frames / seconds if seconds > 0 else 0.0
    head = "Stopped after" if interrupted else "Processed"
    noun = "frame" if frames == 1 else "frames"
    who = "1 person" if people == 1 else f"{people} people"
    text = f"{head} {frames} {noun} in {seconds:.1f} s ({fps:.1f} fps), {who} found"
    text += f"; wrote {', '.join(str(f) for f in files)}." if files else "; no files written."
    return text
