"""Live sources (a camera, a stream URL): a reader thread keeps only the newest frame, so a
slow consumer skips frames instead of building up lag; a stream that drops is reopened."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable, Iterator

import cv2
import numpy as np

from app.errors import UserError
from app.pixels import as_bgr_uint8
from app.types import Frame

from .base import Capture, Source, image_size, usable_fps
from .probe import redact_url

log = logging.getLogger(__name__)

CAMERA_FIRST_FRAME_TIMEOUT_S = 5.0
STREAM_OPEN_TIMEOUT_S = 10.0
LIVE_READ_FAILURES_TO_END = 10  # consecutive failed reads before a live source counts as gone

# Waits before each attempt to reopen a live stream URL that dropped (IP cameras reboot, Wi-Fi
# blips); one attempt per entry, then the source ends. Each attempt has the open/read timeouts.
STREAM_RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class LatestFrameReader:
    """Reads a capture on a daemon thread and keeps only the newest frame.

    `next_frame()` blocks until a frame newer than the last one it returned exists, so the same
    frame is never returned twice and frames that arrive while the consumer is busy are dropped.
    The reader thread owns the capture once started and releases it when it exits; releasing it
    from another thread while read() is blocked inside the driver can crash the process.

    With `reopen` (live stream URLs only), a capture that is gone is released and replaced by
    `reopen()` after each delay of STREAM_RECONNECT_DELAYS_S until one opens; `reopen` returns
    None when it cannot open. Frames then simply continue. `name` appears in messages: pass it
    with any password already hidden.
    """

    def __init__(self, capture: Capture, name: str = "capture",
                 reopen: Callable[[], Capture | None] | None = None):
        self._capture: Capture | None = capture
        self._name = name
        self._reopen = reopen
        self._cond = threading.Condition()
        self._newest: np.ndarray | None = None
        self._newest_seq = 0          # 1-based count of frames read from the device
        self._newest_time = 0.0       # time.monotonic() when the newest frame arrived
        self._returned_seq = 0
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader {name}", daemon=True)
        self._thread.start()

    @property
    def frames_read(self) -> int:
        return self._newest_seq

    @property
    def ended(self) -> bool:
        return self._ended

    def _run(self) -> None:
        # Reopen attempts since a frame last arrived: counting on across reopens that send no
        # picture keeps a stream that opens but never delivers from retrying forever.
        attempts = 0
        try:
            while not self._stop.is_set():
                if self._read_until_gone():
                    attempts = 0
                if self._reopen is None or self._stop.is_set():
                    break
                self._release()   # here, on the thread that owns it (see the class docstring)
                self._capture, attempts = self._reconnect(attempts)
                if self._capture is None:
                    break
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._release()

    def _read_until_gone(self) -> bool:
        """Read frames until stopped or the capture is gone; True if any frame arrived."""
        failures = 0
        got_frame = False
        try:
            while not self._stop.is_set():
                ok, image = self._capture.read()
                if not ok or image is None:
                    # Cameras and network streams hiccup; only a run of failures means "gone".
                    failures += 1
                    if failures >= LIVE_READ_FAILURES_TO_END:
                        break
                    time.sleep(0.01)
                    continue
                failures = 0
                got_frame = True
                now = time.monotonic()
                with self._cond:
                    self._newest = as_bgr_uint8(image)
                    self._newest_seq += 1
                    self._newest_time = now
                    self._cond.notify_all()
        except Exception:  # a driver error counts as the capture gone; the consumer sees no error
            log.exception("live capture '%s' failed", self._name)
        return got_frame

    def _reconnect(self, attempts: int) -> tuple[Capture | None, int]:
        """Reopen after the remaining backoff delays: (new capture or None, attempts used).
        None when stop() was called or every attempt failed."""
        delays = STREAM_RECONNECT_DELAYS_S
        if attempts == 0:   # one message per drop, not one per attempt
            log.warning("stream '%s' dropped; reconnecting (up to %d attempts)",
                        self._name, len(delays))
        while attempts < len(delays):
            if self._stop.wait(delays[attempts]):   # a wait that stop() cuts short
                return None, attempts
            attempts += 1
            try:
                capture = self._reopen()
            except Exception:
                log.exception("reopening stream '%s' failed", self._name)
                capture = None
            if capture is not None:
                log.warning("stream '%s' reconnected (attempt %d of %d)",
                            self._name, attempts, len(delays))
                return capture, attempts
            log.info("stream '%s': reconnection attempt %d of %d failed",
                     self._name, attempts, len(delays))
        log.warning("stream '%s' gave up after %d attempts to reconnect", self._name, attempts)
        return None, attempts

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            try:
                capture.release()
            except Exception:
                pass

    def wait_first(self, timeout: float) -> bool:
        """True once at least one frame has arrived; False on timeout or if the source ended."""
        with self._cond:
            self._cond.wait_for(lambda: self._newest_seq > 0 or self._ended, timeout)
            return self._newest_seq > 0

    def peek_newest(self) -> np.ndarray | None:
        with self._cond:
            return self._newest

    def next_frame(self) -> tuple[np.ndarray, float] | None:
        """(image, arrival time) of the newest unseen frame, or None at the end of the stream."""
        with self._cond:
            self._cond.wait_for(lambda: self._newest_seq > self._returned_seq or self._ended)
            if self._newest_seq <= self._returned_seq:
                return None   # ended and nothing new left
            self._returned_seq = self._newest_seq
            return self._newest, self._newest_time

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:   # wake a consumer blocked in next_frame()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class LiveSource(Source):
    """A camera or stream: yields the newest frame; time is wall time since the first frame.

    `index` counts yielded frames (0, 1, 2, ...); `frames_dropped` says how many device frames
    were skipped because the consumer was busy. With `reopen` a dropped stream is reconnected
    (see LatestFrameReader); index and time run on across the gap. `size` stays the size at
    open: frames after a reconnect may have another size, and each Frame carries its own image.
    """

    is_live = True

    def __init__(self, capture: Capture, description: str,
                 first_frame_timeout: float = CAMERA_FIRST_FRAME_TIMEOUT_S,
                 reopen: Callable[[], Capture | None] | None = None):
        self.description = description
        self.fps = usable_fps(capture.get(cv2.CAP_PROP_FPS))
        self.frame_count = None
        self._reader = LatestFrameReader(capture, description, reopen=reopen)
        if not self._reader.wait_first(first_frame_timeout):
            self._reader.stop()
            if self._reader.ended:
                raise UserError(f"{description} opened but no picture could be read from it.")
            raise UserError(f"{description} opened but sent no picture within "
                            f"{first_frame_timeout:g} s.")
        self.size = image_size(self._reader.peek_newest())
        self._yielded = 0
        self._t0: float | None = None

    @property
    def frames_dropped(self) -> int:
        return max(0, self._reader.frames_read - self._yielded)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._reader.next_frame()
            if item is None:
                return
            image, arrived = item
            if self._t0 is None:
                self._t0 = arrived
            frame = Frame(index=self._yielded, time=arrived - self._t0, image=image, captured=arrived)
            self._yielded += 1
            yield frame

    def close(self) -> None:
        self._reader.stop()


def open_camera(index: int, description: str) -> LiveSource:
    # On Linux a V4L2 camera N is /dev/videoN: checking first answers at once and spares the
    # user OpenCV's warnings about a missing device.
    if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
        raise UserError(f"no camera with index {index} (there is no /dev/video{index}).")
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise UserError(f"cannot open camera {index}: it is missing or used by another program.")
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a deep driver buffer would add lag
    return LiveSource(capture, description)


def _capture_stream(url: str) -> cv2.VideoCapture | None:
    """The URL opened through FFmpeg with the open/read timeouts, or None when it cannot open."""
    timeout_ms = int(STREAM_OPEN_TIMEOUT_S * 1000)
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
    if not capture.isOpened():
        capture.release()
        return None
    return capture


def _reopen_stream(url: str) -> cv2.VideoCapture | None:
    """_capture_stream for reconnecting (the reader reports the outcome itself)."""
    return _capture_stream(url)


def open_stream(url: str) -> LiveSource:
    description = redact_url(url)
    capture = _capture_stream(url)
    if capture is None:
        raise UserError(f"cannot open stream '{description}': check the address and that the "
                        "stream is running.")
    # Only a stream of unknown length (a camera feed) is reconnected when it drops; a file
    # served over HTTP reports its frame count and ends at its end, as a file does.
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    is_feed = not (np.isfinite(count) and count > 0)
    reopen = (lambda: _reopen_stream(url)) if is_feed else None
    return LiveSource(capture, description, first_frame_timeout=STREAM_OPEN_TIMEOUT_S,
                      reopen=reopen)
