"""Annotated video: H.264 through the ffmpeg that imageio-ffmpeg ships, or OpenCV's writers
(MJPG in .avi; mp4v in .mp4 when ffmpeg is missing), behind one VideoSink.

The ffmpeg encoder runs in its own session, so the terminal's Ctrl-C does not kill it before
close() has fed it the last frame and let it write the MP4 index; its time limit keeps the
finishing from hanging."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from app.errors import UserError
from app.pixels import as_bgr_uint8
from app.types import FrameResult

from .atomic import FileSink, write_error

log = logging.getLogger(__name__)

FFMPEG_FINISH_TIMEOUT_S = 120.0   # encoding what is still buffered plus the faststart rewrite
DISK_NEARLY_FULL_BYTES = 1 << 20   # an encoder failing with less room than this ran out of it


def _even(n: int) -> int:
    return n + (n % 2)


# --------------------------------------------------------------------------------------------
# Encoders: write(image) per frame, then finish() (complete file) or abandon() (after a failure)

class _FfmpegH264:
    """ffmpeg (from imageio-ffmpeg) reading raw BGR frames on stdin, writing H.264 yuv420p
    with the index at the front (+faststart) so players and browsers start at once."""

    _formats = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}

    def __init__(self, exe: str, temp: Path, fps: float, size: tuple[int, int]):
        rate = Fraction(fps).limit_denominator(1001)   # 29.97 -> 30000/1001 exactly
        command = [
            exe, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{size[0]}x{size[1]}",
            "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart",
            "-f", self._formats.get(temp.suffix.lower(), "mp4"), str(temp),
        ]
        self._log = tempfile.TemporaryFile()   # not a pipe: an unread pipe could fill and block
        kwargs: dict = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True   # the terminal's Ctrl-C must not reach it
        else:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=self._log, **kwargs)
        except BaseException:
            self._log.close()   # the caller falls back to OpenCV: nothing else would close it
            raise

    def _error(self, what: str) -> UserError:
        self._log.seek(0)
        said = self._log.read().decode(errors="replace").strip().splitlines()
        detail = f": ffmpeg said '{said[-1]}'" if said else ""
        return UserError(f"{what}{detail}.")

    def write(self, image: np.ndarray) -> None:
        try:
            self._process.stdin.write(memoryview(np.ascontiguousarray(image)).cast("B"))
        except OSError:   # BrokenPipeError included
            self._process.wait()
            raise self._error("the video encoder stopped") from None

    def finish(self) -> None:
        try:
            self._process.stdin.close()
        except OSError:   # BrokenPipeError included
            pass
        try:
            code = self._process.wait(FFMPEG_FINISH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise UserError("the video encoder did not finish in time.") from None
        if code != 0:
            raise self._error(f"the video encoder failed (exit code {code})")
        self._log.close()

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._process.stdin.close()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._log.close()


class _OpenCvVideo:
    """OpenCV's writer: MJPG in .avi, or mp4v in .mp4 when ffmpeg is not available."""

    def __init__(self, temp: Path, fourcc: str, fps: float, size: tuple[int, int]):
        self._writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise UserError(f"OpenCV cannot write {fourcc} video to '{temp.parent}'.")

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)

    def finish(self) -> None:
        self._writer.release()

    def abandon(self) -> None:
        self._writer.release()


def find_ffmpeg() -> str | None:
    """The ffmpeg executable imageio-ffmpeg ships, or None without that package."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:   # not installed, or no binary for this platform
        return None


# --------------------------------------------------------------------------------------------
# The sink

class VideoSink(FileSink):
    """Annotated video. .mp4/.mov/.m4v: H.264 through imageio-ffmpeg's ffmpeg, or OpenCV's
    mp4v when that package is missing; .avi: MJPG through OpenCV.

    fps: the input's frame rate, kept. The video takes the first frame's size (the composed
    view may be wider than the input); frames of another size are resized to it; odd sizes
    are padded with one black row/column because yuv420p needs even sizes.

    follow_time=True is for live inputs, where frames are dropped and the real rate is below
    the camera's nominal fps: each frame is placed at its Frame.time on the fps grid, repeating
    the previous frame across gaps, so the video plays back in real time. No frame is dropped.
    """

    needs_image = True

    def __init__(self, path: str | os.PathLike, fps: float, *, follow_time: bool = False):
        super().__init__(path)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        self.size: tuple[int, int] | None = None   # (w, h), from the first frame
        self.follow_time = follow_time
        self._frames_encoded = 0   # more than frames_written when follow_time fills gaps
        self._encoder: _FfmpegH264 | _OpenCvVideo | None = None
        self._previous: np.ndarray | None = None

    def _start(self, size: tuple[int, int]) -> None:
        temp = self._new_temp()
        even = (_even(size[0]), _even(size[1]))
        if self.path.suffix.lower() == ".avi":
            self._encoder = _OpenCvVideo(temp, "MJPG", self.fps, even)
            return
        exe = find_ffmpeg()
        if exe is not None:
            try:
                self._encoder = _FfmpegH264(exe, temp, self.fps, even)
                return
            except OSError as exc:
                log.warning("cannot start ffmpeg (%s); writing mp4v with OpenCV instead", exc)
        else:
            log.warning("imageio-ffmpeg is not installed: writing mp4v (not H.264) with OpenCV")
        self._encoder = _OpenCvVideo(temp, "mp4v", self.fps, even)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        image = as_bgr_uint8(image)
        h, w = image.shape[:2]
        if self.size is None:
            self.size = (w, h)
        if (w, h) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        pad_x, pad_y = self.size[0] % 2, self.size[1] % 2
        if pad_x or pad_y:
            image = cv2.copyMakeBorder(image, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
        return image

    def _render(self, result: FrameResult, composed: np.ndarray | None):
        image = self._prepare(composed if composed is not None else result.frame.image)
        return image, result.frame.time

    def _emit(self, payload) -> None:
        try:
            self._encode(payload)
        except UserError:
            self._raise_if_disk_full()
            raise

    def _encode(self, payload) -> None:
        image, time_s = payload
        if self._encoder is None:
            self._start(self.size)
        if self.follow_time and self._previous is not None:
            slot = int(round(time_s * self.fps))
            while self._frames_encoded < slot:
                self._encoder.write(self._previous)
                self._frames_encoded += 1
        self._encoder.write(image)
        self._frames_encoded += 1
        if self.follow_time:
            self._previous = image

    def _finish(self) -> None:
        try:
            self._encoder.finish()
        except UserError:
            self._raise_if_disk_full()
            raise

    def _raise_if_disk_full(self) -> None:
        """The encoder's own words for a full disk are obscure ("Nothing was written into
        output file"): say what happened when the target's file system has no room left."""
        try:
            free = shutil.disk_usage(self.path.parent if str(self.path.parent) else ".").free
        except OSError:
            return
        if free < DISK_NEARLY_FULL_BYTES:
            raise write_error(self.path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None

    def _abandon(self) -> None:
        if self._encoder is not None:
            self._encoder.abandon()
