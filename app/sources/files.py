"""File sources (a video, an image, a folder of images): every frame in order, none dropped,
decoded a bounded number of frames ahead of the consumer (ReadAhead)."""
from __future__ import annotations

import heapq
import logging
import math
import queue
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from app.errors import UserError
from app.formats import READABLE_IMAGE_EXTENSIONS, READABLE_VIDEO_EXTENSIONS
from app.pixels import as_bgr_uint8
from app.types import Frame

from .base import STILL_FPS, Capture, Source, image_size, natural_key, read_image, usable_fps
from .probe import looks_like_text, mp4_cut_before_index, sniff

log = logging.getLogger(__name__)

MAX_UNDECODABLE_RUN = 300   # failed reads in a row before a damaged video counts as ended
READ_AHEAD_FRAMES = 8        # bounded: decoding may run ahead of the consumer by this much
REORDER_FRAMES = 4           # after a damaged stretch: how far out of order a decoder may hand frames

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


class FramePositions:
    """The position in the video (the frame number) of each frame a decoder hands out, and the
    frames put in that order; for VideoFileSource's decoding thread.

    While reads succeed one after the other, each frame is the one after the last: positions
    count the frames, timestamps are not consulted (a variable-rate video keeps its frame
    numbers). After reads that failed (a damaged stretch) counting reads is wrong: one failed
    read can stand for several lost frames, and OpenCV's own CAP_PROP_POS_FRAMES counts only
    the frames decoded. The position then comes from the container's timestamp (the frame's
    CAP_PROP_POS_MSEC, which OpenCV takes from the packet, not from a counter), measured from
    the frame before, so a gap opens where frames were lost. A decoder resuming after damage
    may also hand frames out of order (H.264 with B-frames); until REORDER_FRAMES frames in a
    row follow each other again (twice as many with rising timestamps, for a variable rate),
    frames wait in a small buffer to go out in order, and a
    frame that comes later than that, or twice, is dropped. Without usable timestamps (none
    known, or one beyond the video's end), each failed read counts as one lost frame.
    """

    def __init__(self, fps: float, frame_count: int | None, first_ms: float):
        self.fps = fps
        self.frame_count = frame_count
        self._last = 0                         # position of the frame read last (the first: 0)
        self._last_ms = first_ms if math.isfinite(first_ms) and first_ms >= 0 else None
        self._handed = 0                       # highest position handed on
        self._pending: list[tuple[int, int, np.ndarray]] = []   # (position, arrival, image) heap
        self._arrivals = 0
        self._recovering = False               # after damage: positions from timestamps
        self._in_order = 0                     # frames in a row, each one after the last
        self._rising = 0                       # frames in a row, each with a later timestamp

    def add(self, image: np.ndarray, ms: float, failed: int) -> list[tuple[int, np.ndarray]]:
        """A frame just decoded (`ms`: its CAP_PROP_POS_MSEC; `failed`: reads that failed since
        the frame before): the frames now ready to go on, in order, with their positions."""
        if failed:
            self._recovering, self._in_order, self._rising = True, 0, 0
        usable_ms = ms if math.isfinite(ms) and ms > 0 else None
        if not self._recovering:
            position = self._last + 1
        else:
            position = None
            later = usable_ms is not None and self._last_ms is not None and usable_ms > self._last_ms
            if usable_ms is not None and self._last_ms is not None:
                position = self._last + round((usable_ms - self._last_ms) * self.fps / 1000.0)
                if later:   # after the last, even if by less than a frame (a variable rate)
                    position = max(position, self._last + 1)
                if position < 0 or (self.frame_count is not None and position >= self.frame_count):
                    position = None   # a timestamp that cannot be right
            if position is None:
                position = self._last + 1 + failed
            # regular again after REORDER_FRAMES frames in a row each one after the last, or twice
            # as many with rising timestamps (a variable rate, whose steps are not one frame)
            self._in_order = self._in_order + 1 if position == self._last + 1 and not failed else 0
            self._rising = self._rising + 1 if later and not failed else 0
        self._last, self._last_ms = position, usable_ms
        if not self._recovering:
            self._handed = position
            return [(position, image)]
        if position > self._handed and all(position != p for p, _, _ in self._pending):
            self._arrivals += 1
            heapq.heappush(self._pending, (position, self._arrivals, image))
        ready = []
        while len(self._pending) > REORDER_FRAMES:
            ready.append(self._hand_on())
        if self._in_order >= REORDER_FRAMES or self._rising >= 2 * REORDER_FRAMES:   # regular again
            ready.extend(self.flush())
            self._recovering = False
        return ready

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """The frames still waiting, in order (at the end of the video)."""
        return [self._hand_on() for _ in range(len(self._pending))]

    def _hand_on(self) -> tuple[int, np.ndarray]:
        position, _, image = heapq.heappop(self._pending)
        self._handed = position
        return position, image


class VideoFileSource(Source):
    """Every frame of a video file, in order; index = the frame's position in the file (its
    frame number), time = index / fps (media time).

    The first frame is decoded in the constructor (a corrupt file fails at open, not in the
    loop) and kept; the rest is decoded ahead (ReadAhead). Frames that fail to decode are
    skipped while the container announces more (decoding resumes after a damaged stretch);
    the frames after them keep their own positions, so the indices have a gap there
    (FramePositions), and `frames_unreadable` counts what could not be read.
    """

    def __init__(self, capture: Capture, description: str):
        self.description = description
        self._capture = capture
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise UserError(f"cannot decode the first frame of video '{description}': "
                            "the file is corrupt, truncated or uses an unsupported codec.")
        self._first = as_bgr_uint8(first)
        self.size = image_size(self._first)
        self.fps = usable_fps(capture.get(cv2.CAP_PROP_FPS))
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if np.isfinite(count) and count > 0 else None
        self._positions = FramePositions(self.fps, self.frame_count, capture.get(cv2.CAP_PROP_POS_MSEC))
        self.frames_read = 0        # frames yielded
        self._last_index = -1       # the position of the last frame yielded
        self._ahead = ReadAhead(self._decode_rest, f"decode {description}")
        self._released = False
        self._reached_end = False   # the decoder read to the end of the file (not stopped)
        self._decoded = 1           # reads that gave a frame, the first one included
        self._placed = 1            # frames handed on with their position, the first one included

    @property
    def frames_unreadable(self) -> int:
        """Frames that could not be decoded: once the decoder has read to the end of the file
        (even if the consumer stopped before, at --max-frames), the announced frames it could not
        hand on (skipped damaged ones, and those lost to a truncation); before that, the gaps
        among the frames yielded so far (a run stopped by --max-frames past damage)."""
        if self._reached_end and self.frame_count is not None:
            return max(0, self.frame_count - self._placed)
        return max(0, self._last_index + 1 - self.frames_read)

    def _decode_rest(self) -> Iterator[tuple[int, np.ndarray]]:
        """The frames after the first with their positions (FramePositions), on the read-ahead
        thread; releases the file at the end."""
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
                        for placed in self._positions.flush():
                            self._placed += 1
                            yield placed
                        self._reached_end = True
                        return
                    continue
                self._decoded += 1
                ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)   # this frame's timestamp
                for placed in self._positions.add(as_bgr_uint8(image), ms, failures):
                    self._placed += 1
                    yield placed
                failures = 0
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
            yield self._frame(0, first)
        if not self._ahead.started:
            return   # closed before the first frame was taken
        for index, image in self._ahead:
            yield self._frame(index, image)

    def _frame(self, index: int, image: np.ndarray) -> Frame:
        self.frames_read += 1
        self._last_index = index
        return Frame(index=index, time=index / self.fps, image=image, captured=time.monotonic())

    def close(self) -> None:
        self._first = None
        self._ahead.close()
        if not self._ahead.started:
            self._release()


class ImageFilesSource(Source):
    """One image, or the images of a folder sorted by name; index = the file's position in
    `paths` as given, time = index / STILL_FPS.

    Files that fail to decode in the middle of a folder are skipped with a warning, since one
    bad photo should not end a batch; the frames after keep their files' positions, so the
    indices have a gap there. `frame_count` counts the image files found, so it can be
    larger than the number of frames yielded when some are skipped. A folder's images after the
    first are decoded ahead (ReadAhead), as a video's frames are.
    """

    is_still = True
    mode = "image"             # "image" (one file), "stills" (unrelated photos), "sequence"
    not_a_sequence: str | None = None   # numbered frames taken as stills: why (folder_mode)

    def __init__(self, paths: list[Path], description: str, fps: float = STILL_FPS,
                 mode: str | None = None, not_a_sequence: str | None = None):
        self.description = description
        self.not_a_sequence = not_a_sequence
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
        self._skipped = skipped        # self.paths[i] is at position skipped + i: its frame's index
        self.frame_count = len(self.paths)
        self.size = image_size(first)
        self._frame_paths: dict[int, Path] = {skipped: self.paths[0]}
        self._ahead = ReadAhead(self._decode_rest, f"decode {description}")

    def path_of(self, index: int) -> Path:
        """The image file behind the frame with this index (for naming per-frame outputs)."""
        return self._frame_paths[index]

    def _decode_rest(self) -> Iterator[Frame]:
        """The images after the first, on the read-ahead thread."""
        while self._next_path < len(self.paths):
            path = self.paths[self._next_path]
            index = self._skipped + self._next_path   # its position, skipped files counted
            self._next_path += 1
            image = read_image(path)
            if image is None:
                log.warning("skipping '%s': cannot decode it as an image", path)
                continue
            self._frame_paths[index] = path
            yield Frame(index=index, time=index / self.fps, image=image, captured=time.monotonic())

    def frame_ready(self) -> bool:
        return self._first is not None or self._ahead.ready()

    def __iter__(self) -> Iterator[Frame]:
        if self._first is not None:
            first, self._first = self._first, None
            index = self._skipped
            yield Frame(index=index, time=index / self.fps, image=first, captured=time.monotonic())
        if len(self.paths) > 1:
            yield from self._ahead

    def close(self) -> None:
        self._first = None
        self._ahead.close()


def open_video(path: Path) -> VideoFileSource:
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


def _numbered_alike(paths: list[Path]) -> bool:
    """True when the names are one pattern with a running number (frame_0001.jpg, ...)."""
    patterns = set()
    for path in paths:
        match = re.fullmatch(r"(.*?)(\d+)(\D*)", path.name)
        if match is None:
            return False
        patterns.add((match.group(1), match.group(3).lower()))
    return len(patterns) == 1


def image_size_quick(path: Path) -> tuple[int, int] | None:
    """(width, height) to within 8 px from a reduced decode, or None when undecodable."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) if data.size else None
    return None if image is None else (image.shape[1], image.shape[0])


def _exact_size(path: Path) -> str:
    image = read_image(path)
    return "undecodable" if image is None else "%dx%d" % image_size(image)


def folder_mode(images: list[Path]) -> tuple[str, str | None]:
    """("sequence", None) when the images are frames of one video (numbered names, one size),
    else "stills" (unrelated photos, each to be processed on its own) and, when they are
    numbered frames of different sizes, why: the first file whose size differs from the first
    frame's, and both sizes."""
    if len(images) < 2 or not _numbered_alike(images):
        return "stills", None
    first = None   # (path, size) of the first decodable image
    for path in images:
        size = image_size_quick(path)
        if size is None:
            continue
        if first is None:
            first = (path, size)
        elif size != first[1]:   # the quick sizes are a reduced decode's: the two exact ones
            return "stills", (f"'{path.name}' is {_exact_size(path)} where the frames before it "
                              f"('{first[0].name}' on) are {_exact_size(first[0])}: numbered frames "
                              "of different sizes are not one sequence")
    return ("stills", None) if first is None else ("sequence", None)


def _files_in(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """The folder's files (not hidden ones) with one of these extensions."""
    return [p for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")]


def open_folder(folder: Path, still_fps: float) -> ImageFilesSource:
    images = sorted(_files_in(folder, READABLE_IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))
    if not images:
        if _files_in(folder, READABLE_VIDEO_EXTENSIONS):   # one run takes one video; many are the batch command's
            raise UserError(f"folder '{folder}' holds videos, not images: give one video as --input, "
                            f"or process them all with: run_demo.py batch '{folder}' --out-dir DIR")
        raise UserError(f"folder '{folder}' holds no image files (.jpg, .png, .bmp, .tif, "
                        ".webp, ...).")
    mode, why = folder_mode(images)
    return ImageFilesSource(images, str(folder), fps=still_fps, mode=mode, not_a_sequence=why)


def open_file(path: Path, still_fps: float) -> Source:
    ext = path.suffix.lower()
    if ext in READABLE_IMAGE_EXTENSIONS:
        return ImageFilesSource([path], str(path), fps=still_fps)
    if ext in READABLE_VIDEO_EXTENSIONS:
        return open_video(path)
    # Unknown extension: sniff the content, image first (cheap), then video. Text is refused
    # before FFmpeg sees it: its "tty" demuxer would happily render a .txt as ANSI art.
    if path.stat().st_size == 0:
        raise UserError(f"cannot read '{path}': the file is empty.")
    if looks_like_text(path):
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
        return open_video(path)
    what = sniff(path)
    raise UserError(f"cannot read '{path}': it is {what}, not an image or a video this program can decode."
                    if what else f"cannot read '{path}': it is neither an image nor a video this "
                    "program can decode.")
