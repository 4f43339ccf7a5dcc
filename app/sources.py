"""Input sources: camera, stream URL, video file, single image, folder of images.

`open_source(spec)` picks the kind from the spec, opens it and reads the first frame right away,
so every "cannot read this" problem becomes a UserError before the frame loop starts.

Every source is an iterable of `Frame` with the same small surface (fps, is_live, is_still,
frame_count, size, description, close()). Two reading disciplines:

* live (camera, stream URL): a daemon thread reads as fast as the device delivers and keeps only
  the newest frame; iteration yields the newest frame not yet yielded. A slow consumer therefore
  skips frames instead of building up lag. A live stream URL (one of unknown length, such as an
  IP camera's RTSP or MJPEG feed) that drops is reopened with a short backoff.
* files (video, images): every frame in order, none dropped. A video is decoded on a small
  read-ahead thread with a bounded queue so decoding overlaps the consumer's work.

A source is iterated once; iterating again continues where the last iteration stopped.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol
from urllib.parse import urlsplit, urlunsplit

# FFmpeg inside OpenCV prints its own lines ("[h264 @ 0x..] error while decoding MB", "header
# damaged") straight to stderr, hundreds for a damaged file, burying the app's one sentence.
# OpenCV reads this before it first starts FFmpeg; AV_LOG_QUIET = -8. A user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (after the setting above)
import numpy as np  # noqa: E402

from app.errors import UserError
from app.formats import READABLE_IMAGE_EXTENSIONS, READABLE_VIDEO_EXTENSIONS
from app.types import Frame

log = logging.getLogger(__name__)

FALLBACK_FPS = 30.0          # when a camera or file reports no usable frame rate
STILL_FPS = 30.0             # nominal rate of image inputs: frame time = index / STILL_FPS
CAMERA_FIRST_FRAME_TIMEOUT_S = 5.0
STREAM_OPEN_TIMEOUT_S = 10.0
MAX_UNDECODABLE_RUN = 300   # failed reads in a row before a damaged video counts as ended
READ_AHEAD_FRAMES = 8        # bounded: decoding may run ahead of the consumer by this much
LIVE_READ_FAILURES_TO_END = 10  # consecutive failed reads before a live source counts as gone
# Waits before each attempt to reopen a live stream URL that dropped (IP cameras reboot, Wi-Fi
# blips); one attempt per entry, then the source ends. Each attempt has the open/read timeouts.
STREAM_RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class Capture(Protocol):
    """The part of cv2.VideoCapture the readers use; tests inject fakes with this shape."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop_id: int) -> float: ...
    def release(self) -> None: ...


class Source:
    """Base class: what the frame loop may rely on for every kind of input."""

    fps: float
    is_live: bool = False
    is_still: bool = False
    frame_count: int | None = None
    size: tuple[int, int]          # (width, height) of the first frame
    description: str

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def frame_ready(self) -> bool:
        """Whether the next frame can be had at once, without waiting (a decoded frame is
        waiting, or the input has ended): the frame loop may then take it early."""
        return False

    def close(self) -> None:
        """Stop reading and release the device or file; safe to call more than once."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description!r} {self.size[0]}x{self.size[1]} @ {self.fps:g} fps>"


# --------------------------------------------------------------------------------------------
# Helpers

def _usable_fps(value: float) -> float:
    """A capture's reported rate, or the fallback when it reports 0, NaN or nonsense."""
    if value is None or not np.isfinite(value) or value <= 0 or value > 1000:
        return FALLBACK_FPS
    return float(value)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Frames are promised as H x W x 3 uint8; some decoders hand back gray or BGRA."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _image_size(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


def read_image(path: Path) -> np.ndarray | None:
    """Decode an image file as BGR uint8, or None when it cannot be decoded.

    np.fromfile + imdecode instead of cv2.imread: imread cannot open non-ASCII paths on Windows.
    IMREAD_COLOR also applies the EXIF orientation, so phone photos come out upright.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else _as_bgr(image)


def _natural_key(name: str) -> list:
    """Sort "frame2.jpg" before "frame10.jpg", as people expect of numbered frames."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _looks_like_text(path: Path) -> bool:
    """True for files whose first 4 KB are NUL-free UTF-8 (text, JSON, CSV, scripts)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3   # only a multi-byte character cut at the end
    return True


# What a file really holds, from its first bytes, for messages that say so: (magic, offset, what).
_SIGNATURES = (
    (b"ftyp", 4, "an MP4/QuickTime video"), (b"\x1aE\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"RIFF", 0, "a RIFF file (AVI video or WAV/WebP)"), (b"\x00\x00\x01\xba", 0, "an MPEG video"),
    (b"GIF8", 0, "a GIF animation"), (b"\xff\xd8\xff", 0, "a JPEG image"), (b"\x89PNG", 0, "a PNG image"),
    (b"PK\x03\x04", 0, "a zip archive"), (b"ustar", 257, "a tar archive"), (b"%PDF", 0, "a PDF document"),
    (b"\x1f\x8b", 0, "a gzip archive"), (b"7z\xbc\xaf", 0, "a 7-Zip archive"), (b"\x7fELF", 0, "a program"),
)


def sniff(path: Path) -> str | None:
    """What the file's first bytes say it is ("an MP4/QuickTime video", "a tar archive"), or
    None when they say nothing known."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for magic, offset, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what
    return None


def _not_a_regular_file(path: Path, spec: str) -> str | None:
    """One sentence when the path is a pipe, a device or a socket (reading one could block
    forever: a FIFO without a writer never opens), else None."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        what = "a named pipe (FIFO)"
    elif stat.S_ISCHR(mode):
        what = "a character device"
    elif stat.S_ISBLK(mode):
        what = "a block device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "not a regular file"
    return (f"input '{spec}' is {what}, not a video or image file: save what it delivers to a "
            "file first, or give a camera index or stream URL.")


def _redact_url(url: str) -> str:
    """Hide a password in rtsp://user:pass@host URLs: the description is printed and exported."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Host and port as written: .hostname would lowercase it and drop an IPv6 address's [].
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# --------------------------------------------------------------------------------------------
# Live sources: camera and stream URL

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
                    self._newest = _as_bgr(image)
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
        self.fps = _usable_fps(capture.get(cv2.CAP_PROP_FPS))
        self.frame_count = None
        self._reader = LatestFrameReader(capture, description, reopen=reopen)
        if not self._reader.wait_first(first_frame_timeout):
            self._reader.stop()
            if self._reader.ended:
                raise UserError(f"{description} opened but no picture could be read from it.")
            raise UserError(f"{description} opened but sent no picture within "
                            f"{first_frame_timeout:g} s.")
        self.size = _image_size(self._reader.peek_newest())
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


# --------------------------------------------------------------------------------------------
# Files: every frame, in order, decoded ahead of the consumer

_END = object()  # read-ahead queue sentinel


class ReadAhead:
    """Runs `produce` (a generator) on a thread of its own, at most READ_AHEAD_FRAMES items ahead
    of whoever iterates; iteration yields its items in order and ends when it does. close()
    stops the thread (the generator's `finally` runs there) and ends the iteration."""

    def __init__(self, produce: Callable[[], Iterator], name: str):
        self._produce = produce
        self._name = name
        self._queue: queue.Queue = queue.Queue(maxsize=READ_AHEAD_FRAMES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def _put(self, item) -> bool:
        """Blocking put that still notices close(); False when asked to stop."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        items = self._produce()
        try:
            for item in items:
                if not self._put(item):
                    break
        except Exception:
            log.exception("reading '%s' failed", self._name)
        finally:
            items.close()
            self._put(_END)

    def ready(self) -> bool:
        return not self._queue.empty()

    def __iter__(self) -> Iterator:
        self.start()
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
                    return   # closed while iterating: the thread will not send _END
                continue
            if item is _END:
                self._queue.put(_END)  # a later iteration ends at once too
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is None:
            return
        # Unblock the thread if it waits on a full queue, then let it finish.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if threading.current_thread() is not self._thread:
            self._thread.join(2.0)


class VideoFileSource(Source):
    """Every frame of a video file, in order; time = index / fps (media time).

    The first frame is decoded in the constructor (a corrupt file fails at open, not in the
    loop) and kept; the rest is decoded ahead (ReadAhead). Frames that fail to decode are
    skipped while the container announces more (decoding resumes after a damaged stretch);
    `frames_unreadable` then counts what could not be read.
    """

    def __init__(self, capture: Capture, description: str):
        self.description = description
        self._capture = capture
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise UserError(f"cannot decode the first frame of video '{description}': "
                            "the file is corrupt, truncated or uses an unsupported codec.")
        self._first = _as_bgr(first)
        self.size = _image_size(self._first)
        self.fps = _usable_fps(capture.get(cv2.CAP_PROP_FPS))
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if np.isfinite(count) and count > 0 else None
        self.frames_read = 0
        self._ahead = ReadAhead(self._decode_rest, f"decode {description}")
        self._released = False
        self._reached_end = False   # the decoder read to the end of the file (not stopped)
        self._decoded = 1           # frames decoded, the first one included

    @property
    def frames_unreadable(self) -> int:
        """Once the decoder has read to the end of the file (even if the consumer stopped
        before, at --max-frames): announced frames that could not be decoded (skipped damaged
        ones, and those lost to a truncation). 0 before, and when the count is unknown."""
        if not self._reached_end or self.frame_count is None:
            return 0
        return max(0, self.frame_count - self._decoded)

    def _decode_rest(self) -> Iterator[np.ndarray]:
        """The frames after the first, on the read-ahead thread; releases the file at the end."""
        failures = 0   # consecutive reads that gave no frame
        try:
            while True:
                ok, image = self._capture.read()
                if not ok or image is None:
                    # A damaged stretch (corrupt bytes) fails some reads and decoding resumes
                    # after it; the end of the file, or a truncation, fails every read after.
                    # Keep trying while the container announces more frames.
                    failures += 1
                    if self.frame_count is None or self._decoded + failures >= self.frame_count \
                            or failures > MAX_UNDECODABLE_RUN:
                        self._reached_end = True
                        return
                    continue
                failures = 0
                self._decoded += 1
                yield _as_bgr(image)
        finally:
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._capture.release()

    def frame_ready(self) -> bool:
        return self._first is not None or self._ahead.ready()

    def __iter__(self) -> Iterator[Frame]:
        if self._first is not None:
            first, self._first = self._first, None
            self._ahead.start()
            yield self._frame(first)
        if not self._ahead.started:
            return   # closed before the first frame was taken
        for image in self._ahead:
            yield self._frame(image)

    def _frame(self, image: np.ndarray) -> Frame:
        index = self.frames_read
        self.frames_read += 1
        return Frame(index=index, time=index / self.fps, image=image, captured=time.monotonic())

    def close(self) -> None:
        self._first = None
        self._ahead.close()
        if not self._ahead.started:
            self._release()


# --------------------------------------------------------------------------------------------
# Images

class ImageFilesSource(Source):
    """One image, or the images of a folder sorted by name; time = index / STILL_FPS.

    Files that fail to decode in the middle of a folder are skipped with a warning, since one
    bad photo should not end a batch. `frame_count` counts the image files found, so it can be
    larger than the number of frames yielded when some are skipped. A folder's images after the
    first are decoded ahead (ReadAhead), as a video's frames are.
    """

    is_still = True
    mode = "image"             # "image" (one file), "stills" (unrelated photos), "sequence"

    def __init__(self, paths: list[Path], description: str, fps: float = STILL_FPS,
                 mode: str | None = None):
        self.description = description
        if mode is not None:
            self.mode = mode
            # numbered frames of one size are a video: tracked and smoothed across frames
            self.is_still = mode != "sequence"
        self.fps = fps
        first = None
        skipped = 0
        for path in paths:
            first = read_image(path)
            if first is not None:
                break
            skipped += 1
        if first is None:
            if len(paths) == 1:
                what = sniff(paths[0])
                if what and "image" not in what:   # e.g. a video named .jpg
                    raise UserError(f"cannot decode image '{paths[0]}': it is {what}, not an image "
                                    "(its name says otherwise).")
                if what:   # e.g. a JPEG cut short
                    raise UserError(f"cannot decode image '{paths[0]}': it is {what}, but damaged or "
                                    "cut short.")
                raise UserError(f"cannot decode image '{paths[0]}': the file is corrupt or not "
                                "an image.")
            raise UserError(f"none of the {len(paths)} image files in '{description}' can be "
                            "decoded.")
        if skipped:
            log.warning("skipped %d undecodable image(s) at the start of %s", skipped, description)
        self._first = first
        self.paths = paths[skipped:]   # the files behind the frames, in order
        self._next_path = 1            # paths[0] is the first frame, already decoded
        self._next_index = 1           # the first frame is index 0
        self.frame_count = len(self.paths)
        self.size = _image_size(first)
        self._frame_paths: dict[int, Path] = {0: self.paths[0]}
        self._ahead = ReadAhead(self._decode_rest, f"decode {description}")

    def path_of(self, index: int) -> Path:
        """The image file behind the frame with this index (for naming per-frame outputs)."""
        return self._frame_paths[index]

    def _decode_rest(self) -> Iterator[Frame]:
        """The images after the first, on the read-ahead thread."""
        while self._next_path < len(self.paths):
            path = self.paths[self._next_path]
            self._next_path += 1
            image = read_image(path)
            if image is None:
                log.warning("skipping '%s': cannot decode it as an image", path)
                continue
            index = self._next_index
            self._next_index += 1
            self._frame_paths[index] = path
            yield Frame(index=index, time=index / self.fps, image=image, captured=time.monotonic())

    def frame_ready(self) -> bool:
        return self._first is not None or self._ahead.ready()

    def __iter__(self) -> Iterator[Frame]:
        if self._first is not None:
            first, self._first = self._first, None
            yield Frame(index=0, time=0.0, image=first, captured=time.monotonic())
        if len(self.paths) > 1:
            yield from self._ahead

    def close(self) -> None:
        self._first = None
        self._ahead.close()


# --------------------------------------------------------------------------------------------
# Opening by spec

def _open_camera(index: int, description: str) -> LiveSource:
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


def _open_stream(url: str) -> LiveSource:
    description = _redact_url(url)
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


def _open_video(path: Path) -> VideoFileSource:
    # CAP_FFMPEG explicitly: CAP_ANY may hand a name with "%" or digits to the image-sequence
    # backend, which reads something else entirely.
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        if mp4_cut_before_index(path):
            raise UserError(f"cannot open video '{path}': it is an MP4 video cut off before its "
                            "index (the 'moov' box, written last) was saved, so none of its frames "
                            "can be located: an interrupted recording or an incomplete copy.")
        raise UserError(f"cannot open video '{path}': the file is corrupt, truncated or not a "
                        "video.")
    return VideoFileSource(capture, str(path))


def mp4_cut_before_index(path: Path) -> bool:
    """True for an MP4/QuickTime file without its index ('moov' box) whose last box runs past
    the end of the file: a recording cut off before the index, which cameras write last."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            offset, boxes = 0, []
            while offset + 8 <= size and len(boxes) < 10_000:
                f.seek(offset)
                header = f.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1 and len(header) == 16:     # 64-bit size follows
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:                         # the box runs to the end of the file
                    length = size - offset
                if length < 8:
                    return False                          # not a box structure at all
                boxes.append(kind)
                offset += length
    except OSError:
        return False
    return bool(boxes) and boxes[0] == b"ftyp" and b"moov" not in boxes and offset > size


def _numbered_alike(paths: list[Path]) -> bool:
    """True when the names are one pattern with a running number (frame_0001.jpg, ...)."""
    patterns = set()
    for path in paths:
        match = re.fullmatch(r"(.*?)(\d+)(\D*)", path.name)
        if match is None:
            return False
        patterns.add((match.group(1), match.group(3).lower()))
    return len(patterns) == 1


def _image_size_quick(path: Path) -> tuple[int, int] | None:
    """(width, height) to within 8 px from a reduced decode, or None when undecodable."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) if data.size else None
    return None if image is None else (image.shape[1], image.shape[0])


def folder_mode(images: list[Path]) -> str:
    """"sequence" when the images are frames of one video (numbered names, one size), else
    "stills": unrelated photos, each to be processed on its own."""
    if len(images) < 2 or not _numbered_alike(images):
        return "stills"
    sizes = {size for size in map(_image_size_quick, images) if size is not None}
    return "sequence" if len(sizes) == 1 else "stills"


def _open_folder(folder: Path, still_fps: float) -> ImageFilesSource:
    images = sorted((p for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() in READABLE_IMAGE_EXTENSIONS
                     and not p.name.startswith(".")),
                    key=lambda p: _natural_key(p.name))
    if not images:
        raise UserError(f"folder '{folder}' holds no image files (.jpg, .png, .bmp, .tif, "
                        ".webp, ...).")
    return ImageFilesSource(images, str(folder), fps=still_fps, mode=folder_mode(images))


def _open_file(path: Path, still_fps: float) -> Source:
    ext = path.suffix.lower()
    if ext in READABLE_IMAGE_EXTENSIONS:
        return ImageFilesSource([path], str(path), fps=still_fps)
    if ext in READABLE_VIDEO_EXTENSIONS:
        return _open_video(path)
    # Unknown extension: sniff the content, image first (cheap), then video. Text is refused
    # before FFmpeg sees it: its "tty" demuxer would happily render a .txt as ANSI art.
    if path.stat().st_size == 0:
        raise UserError(f"cannot read '{path}': the file is empty.")
    if _looks_like_text(path):
        raise UserError(f"cannot read '{path}': it is a text file, not an image or a video.")
    if read_image(path) is not None:
        return ImageFilesSource([path], str(path), fps=still_fps)
    what = sniff(path)
    if what and not ("video" in what or "GIF" in what or "RIFF" in what):   # an archive, a PDF...
        raise UserError(f"cannot read '{path}': it is {what}, not an image or a video.")
    probe = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        decodes = probe.isOpened() and probe.read()[0]
    finally:
        probe.release()
    if decodes:
        return _open_video(path)
    what = sniff(path)
    raise UserError(f"cannot read '{path}': it is {what}, not an image or a video this program can decode."
                    if what else f"cannot read '{path}': it is neither an image nor a video this "
                    "program can decode.")


def open_source(spec: str, *, still_fps: float = STILL_FPS) -> Source:
    """Open a camera index ("0"), a stream URL ("rtsp://..."), a video file, an image file or a
    folder of images. Reads the first frame before returning; raises UserError when the input
    cannot be used."""
    spec = str(spec).strip()
    if not spec:
        raise UserError("no input given: pass a camera index, a video, an image or a folder.")
    if spec.isdigit():
        return _open_camera(int(spec), f"camera {int(spec)}")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec) and not spec.lower().startswith("file://"):
        return _open_stream(spec)
    path = Path(spec[len("file://"):] if spec.lower().startswith("file://") else spec).expanduser()
    if not path.exists():
        raise UserError(f"input '{spec}' does not exist.")
    if path.is_dir():
        return _open_folder(path, still_fps)
    camera = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(path))
    if camera and sys.platform.startswith("linux"):   # a V4L2 camera named by its device
        return _open_camera(int(camera.group(1)), f"camera {camera.group(1)}")
    problem = _not_a_regular_file(path, spec)
    if problem:
        raise UserError(problem)
    if not os.access(path, os.R_OK):
        raise UserError(f"input '{spec}' is not readable (permission denied).")
    return _open_file(path, still_fps)


# --------------------------------------------------------------------------------------------
# Wrappers: looping and a frame limit, for any source

class LoopingSource:
    """Plays a file source again from the start at its end (--loop), with frame indices and
    times that keep increasing so tracking and smoothing see one continuous stream. It has no
    frame count: it never ends by itself."""

    frame_count = None

    def __init__(self, spec: str, first: Source):
        self.spec = spec
        self.current = first
        self.frames_per_pass = first.frame_count
        self._unreadable_in_a_pass = 0

    @property
    def frames_unreadable(self) -> int:
        """The most frames any pass could not decode (a damaged file loses the same ones each time)."""
        return max(self._unreadable_in_a_pass, getattr(self.current, "frames_unreadable", 0))

    def __getattr__(self, name):
        return getattr(self.current, name)

    def __iter__(self):
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
            self.current = open_source(self.spec)

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
