"""Output sinks the frame loop feeds: annotated video, annotated image(s), joint exports.

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
  the encoder's pipe). Further signals while the files are being finished are ignored; the
  encoder's own time limit keeps finishing from hanging.
* A file system error (a full disk, a removed folder) becomes a UserError naming the output;
  the failed output's temporary file is removed and what was at the target stays as it was.
* Temporary names carry the writer's process id, so a later run to the same target removes
  the ones a killed run (kill -9) left behind, and never those of a run still going.
* The H.264 encoder (ffmpeg) runs in its own session, so the terminal's Ctrl-C does not kill it
  before close() has fed it the last frame and let it write the MP4 index.
* close() is idempotent, and sinks not closed by the program are closed at interpreter exit.
"""
from __future__ import annotations

import atexit
import contextlib
import csv
import errno
import io
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np

from app.errors import UserError
from app.signals import deferred
from app.skeleton import BONES, JOINT_NAMES
from app.types import FrameResult, Person

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXPORT_EXTENSIONS = (".json", ".csv", ".npz")

OutputKind = Literal["video", "image", "export"]

FFMPEG_FINISH_TIMEOUT_S = 120.0   # encoding what is still buffered plus the faststart rewrite
JPEG_QUALITY = 95
DISK_NEARLY_FULL_BYTES = 1 << 20   # an encoder failing with less room than this ran out of it


# --------------------------------------------------------------------------------------------
# Checking output paths before the first frame

_VIDEO_CHOICES = ".mp4, .mov, .m4v or .avi"
_IMAGE_CHOICES = ".jpg, .png, .bmp, .webp or .tif"


def output_kind_for(path: str | os.PathLike, input_kind: str) -> OutputKind:
    """The kind of --output that suits the input, or a UserError naming the right choices.

    input_kind "video" (a video, a camera, a stream, numbered frames): a video file, or a folder
    name for one image per frame; "image" (one picture): an image file; "stills" (unrelated
    photos): a folder name, one NAME_pose image per photo."""
    target = Path(str(path).strip()).expanduser()
    ext = target.suffix.lower()
    if input_kind == "video":
        if ext in VIDEO_EXTENSIONS:
            return "video"
        if not ext:
            return "image"
        raise UserError(f"cannot write a video to '{target.name}': for a video, camera or "
                        f"sequence of frames use {_VIDEO_CHOICES}, or a folder name (no "
                        "extension) for one image per frame.")
    if input_kind == "image":
        if ext in IMAGE_EXTENSIONS:
            return "image"
        raise UserError(f"cannot write an image to '{target.name}': for one picture use "
                        f"{_IMAGE_CHOICES}.")
    if input_kind == "stills":
        if not ext:
            return "image"
        raise UserError(f"cannot write several unrelated photos to '{target.name}': give a folder "
                        "name (no extension); each photo is written there as NAME_pose.jpg.")
    raise ValueError(f"unknown input kind {input_kind!r}")

def check_output_path(path: str | os.PathLike, kind: OutputKind) -> Path:
    """Validate an output path before any frame is processed, so a typo does not cost a whole
    run. kind "video": .mp4/.mov/.m4v/.avi; "image": an image file, or a name without
    extension meaning a folder of images (one per frame); "export": .json/.csv/.npz.
    Returns the path; raises UserError with one sentence."""
    text = str(path).strip()
    if not text:
        raise UserError(f"the {kind} output path is empty.")
    target = Path(text).expanduser()
    ext = target.suffix.lower()
    as_folder = False
    if target.is_dir() and kind != "image":
        raise UserError(f"output '{target}' is a folder: give a file name inside it.")
    if kind == "export":
        if ext not in EXPORT_EXTENSIONS:
            raise UserError(f"unknown export format '{ext or target.name}': use .json, .csv or "
                            ".npz.")
    elif kind == "video":
        if ext not in VIDEO_EXTENSIONS:
            raise UserError(f"unknown video format '{ext or target.name}': use .mp4, .mov, .m4v "
                            "or .avi.")
    elif kind == "image":
        if ext and ext not in IMAGE_EXTENSIONS:
            raise UserError(f"unknown image format '{ext}': use .jpg, .png, .bmp, .webp or .tif, "
                            "or a folder name without an extension.")
        as_folder = not ext
    else:
        raise ValueError(f"unknown output kind {kind!r}")

    if as_folder and target.is_dir():
        _check_writable_folder(target, target)
        return target
    if target.is_dir():   # an image output named like a file, e.g. "shots.jpg/"
        raise UserError(f"output '{target}' is a folder: give a file name inside it.")
    if as_folder and target.exists():
        raise UserError(f"image output '{target}' exists and is not a folder.")
    _check_writable_folder(target.parent if str(target.parent) else Path("."), target)
    return target


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same spelling once resolved (./x/../y, symlinks),
    or the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:   # one of them does not exist yet: then they are not the same file
        return False


def check_outputs_distinct(input_spec: str, outputs: dict[str, str | None]) -> None:
    """Refuse, before anything is processed, an output that is the input itself (however it is
    spelled: another relative path, a symlink, a hard link; an image-folder output that is the
    input folder) and two outputs that are one file. outputs: option name -> path or None."""
    named = {option: Path(str(path).strip()).expanduser() for option, path in outputs.items() if path}
    source = Path(str(input_spec).strip()).expanduser()
    if source.exists():
        for option, target in named.items():
            if _same_file(source, target):
                what = "folder" if source.is_dir() else "file"
                raise UserError(f"{option} '{target}' is the input {what} '{input_spec}': writing it "
                                "would destroy the input; choose another name.")
    options = list(named)
    for i, first in enumerate(options):
        for second in options[i + 1:]:
            if _same_file(named[first], named[second]):
                raise UserError(f"{first} and {second} name the same file '{named[second]}': give "
                                "each output its own name.")


def _check_writable_folder(folder: Path, target: Path) -> None:
    if not folder.exists():
        raise UserError(f"cannot write '{target}': folder '{folder}' does not exist.")
    if not folder.is_dir():
        raise UserError(f"cannot write '{target}': '{folder}' is not a folder.")
    # Actually create a file: os.access is wrong on some file systems and for root.
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to folder '{folder}': {exc.strerror or exc}.") from None


# --------------------------------------------------------------------------------------------
# Shared machinery: deferred Ctrl-C, temp file beside the target, idempotent close

def _temp_path_beside(target: Path) -> Path:
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


def _write_error(path: Path, error: OSError) -> UserError:
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


_unclosed_sinks: "weakref.WeakSet[FileSink]" = weakref.WeakSet()


@atexit.register
def _close_forgotten_sinks() -> None:
    """Safety net: finalize sinks the program did not close (e.g. a bug skipped a `finally`)."""
    for sink in list(_unclosed_sinks):
        try:
            sink.close()
        except Exception as exc:   # at exit there is no one left to raise to
            print(f"warning: could not finalize {sink.path}: {exc}", file=sys.stderr)


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
    def closed(self) -> bool:
        return self._closed

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
                raise _write_error(self.path, error) from None
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
                raise _write_error(self.path, error) from None
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
        self._temp = _temp_path_beside(self.path)
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


# --------------------------------------------------------------------------------------------
# Video

def _to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _even(n: int) -> int:
    return n + (n % 2)


class _FfmpegH264:
    """ffmpeg (from imageio-ffmpeg) reading raw BGR frames on stdin, writing H.264 yuv420p
    with the index at the front (+faststart) so players and browsers start at once."""

    codec = "h264"
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
        self.codec = fourcc.lower()
        self._writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise UserError(f"OpenCV cannot write {fourcc} video to '{temp.parent}'.")

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)

    def finish(self) -> None:
        self._writer.release()

    def abandon(self) -> None:
        self._writer.release()


def _find_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:   # not installed, or no binary for this platform
        return None


class VideoSink(FileSink):
    """Annotated video. .mp4/.mov/.m4v: H.264 through imageio-ffmpeg's ffmpeg, or OpenCV's
    mp4v when that package is missing; .avi: MJPG through OpenCV.

    fps: the input's frame rate, kept. size: (w, h) of the frames; None takes the first frame's
    size (the composed view may be wider than the input). Frames of another size are resized
    to it; odd sizes are padded with one black row/column because yuv420p needs even sizes.

    follow_time=True is for live inputs, where frames are dropped and the real rate is below
    the camera's nominal fps: each frame is placed at its Frame.time on the fps grid, repeating
    the previous frame across gaps, so the video plays back in real time. No frame is dropped.
    """

    needs_image = True

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None,
                 *, follow_time: bool = False, use_ffmpeg: bool = True):
        super().__init__(path)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        self.size = tuple(size) if size is not None else None
        self.follow_time = follow_time
        self.frames_encoded = 0   # differs from frames_written only with follow_time
        self._use_ffmpeg = use_ffmpeg
        self._encoder: _FfmpegH264 | _OpenCvVideo | None = None
        self._previous: np.ndarray | None = None

    @property
    def codec(self) -> str | None:
        """"h264", "mp4v" or "mjpg" once the first frame was written."""
        return self._encoder.codec if self._encoder is not None else None

    def _start(self, size: tuple[int, int]) -> None:
        temp = self._new_temp()
        even = (_even(size[0]), _even(size[1]))
        if self.path.suffix.lower() == ".avi":
            self._encoder = _OpenCvVideo(temp, "MJPG", self.fps, even)
            return
        exe = _find_ffmpeg() if self._use_ffmpeg else None
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
        image = _to_bgr_uint8(image)
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
            while self.frames_encoded < slot:
                self._encoder.write(self._previous)
                self.frames_encoded += 1
        self._encoder.write(image)
        self.frames_encoded += 1
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
            raise _write_error(self.path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None

    def _abandon(self) -> None:
        if self._encoder is not None:
            self._encoder.abandon()


# --------------------------------------------------------------------------------------------
# Images

def _encode_image(image: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, _to_bgr_uint8(image), params)
    if not ok:
        raise UserError(f"OpenCV cannot encode a {ext} image.")
    return data.tobytes()


def _write_bytes_atomically(target: Path, data: bytes) -> None:
    temp = _temp_path_beside(target)
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise


class ImageSink(FileSink):
    """Annotated still(s).

    * path with an image extension (out.jpg): the LAST composed image is written on close()
      (for a single-image input that is the only one).
    * path without an extension (out/): a folder, created on the first write, that gets one
      image per frame, each written atomically as soon as it arrives. Files are named
      f"{index:06d}{image_ext}", or name_for_index(index) + image_ext when given (e.g. the
      input file's stem, see ImageFilesSource.path_of).
    """

    needs_image = True

    def __init__(self, path: str | os.PathLike, *, image_ext: str = ".jpg",
                 name_for_index: Callable[[int], str] | None = None):
        super().__init__(path)
        self.is_folder = not self.path.suffix
        self.image_ext = image_ext if image_ext.startswith(".") else "." + image_ext
        self._name_for_index = name_for_index
        self._last: np.ndarray | None = None
        if self.is_folder:
            remove_stale_temporaries(self.path, inside=True)

    def _render(self, result: FrameResult, composed: np.ndarray | None):
        image = composed if composed is not None else result.frame.image
        if not self.is_folder:
            return image.copy()   # the caller may reuse its buffer for the next frame
        index = result.frame.index
        stem = self._name_for_index(index) if self._name_for_index else f"{index:06d}"
        return self.path / f"{stem}{self.image_ext}", _encode_image(image, self.image_ext)

    def _emit(self, payload) -> None:
        if not self.is_folder:
            self._last = payload
            return
        target, data = payload
        self.path.mkdir(exist_ok=True)
        _write_bytes_atomically(target, data)

    def _finish(self) -> None:
        if not self.is_folder:
            _write_bytes_atomically(self.path, _encode_image(self._last, self.path.suffix.lower()))


def make_media_sink(path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None,
                    follow_time: bool = False,
                    name_for_index: Callable[[int], str] | None = None) -> VideoSink | ImageSink:
    """VideoSink for a video extension, ImageSink for an image extension or a folder name.
    follow_time: for live input, so the video plays in real time (see VideoSink);
    name_for_index: file stems in a folder output (see ImageSink)."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return VideoSink(path, fps, size, follow_time=follow_time)
    if ext in IMAGE_EXTENSIONS or not ext:
        return ImageSink(path, name_for_index=name_for_index)
    raise UserError(f"unknown output format '{ext}': use a video (.mp4, .avi) or an image "
                    "(.jpg, .png) name.")


# --------------------------------------------------------------------------------------------
# Joint exports

@dataclass(frozen=True)
class ExportMeta:
    """The "meta" block of every export."""
    model: str                 # e.g. "ConvNeXtPose-L"
    input: str                 # the source's description
    fps: float
    focal: float               # focal length in pixels used to lift joints to 3D
    joints: tuple[str, ...] = JOINT_NAMES
    skeleton: tuple[tuple[int, int], ...] = BONES
    units: str = "mm"

    def to_dict(self) -> dict:
        return {"model": self.model, "joints": list(self.joints),
                "skeleton": [[int(i), int(j)] for i, j in self.skeleton], "units": self.units,
                "input": self.input, "fps": float(self.fps), "focal": float(self.focal)}


def _exact_floats(values: np.ndarray) -> list:
    """Nested lists of Python floats that print as the shortest decimal which reads back to
    the very same float32 (float64 stays as is): exact round trip, compact text. Non-finite
    values become None (JSON null)."""
    a = np.asarray(values)
    if a.dtype == np.float32:
        flat = [float(str(v)) for v in a.ravel()]   # numpy's str is the shortest float32 repr
    else:
        flat = [float(v) for v in a.astype(np.float64).ravel()]
    flat = [v if np.isfinite(v) else None for v in flat]
    return np.array(flat, dtype=object).reshape(a.shape).tolist() if a.ndim > 1 else flat


def _score(person: Person) -> float:
    """Exports' "score" is the detection/track score of the box, not the mean joint
    confidence (that one is recoverable from "confidence")."""
    return float(person.box.score)


def _root_3d(person: Person) -> np.ndarray:
    """The pelvis in camera coordinates (mm), where the 3D view places the person; NaN when
    unknown."""
    if person.root_cam is None:
        return np.full(3, np.nan, np.float32)
    return np.asarray(person.root_cam, np.float32).reshape(3)


def _person_json(person: Person) -> dict:
    return {
        "id": int(person.track_id),
        "bbox": [float(v) for v in person.box.as_xywh()],
        "score": _score(person),
        "pose_score": float(str(np.float32(person.pose_score))),
        "root_3d": _exact_floats(_root_3d(person)),
        "joints_2d": _exact_floats(person.joints_2d),
        "joints_3d": _exact_floats(person.joints_3d),
        "confidence": _exact_floats(person.confidence),
    }


class JsonExporter(FileSink):
    """{"meta": {...}, "frames": [{"index", "time", "people": [...]}, ...]}.

    Streamed: one frame per line, appended as it arrives, so memory stays flat over long runs;
    close() writes the closing brackets and moves the file into place. Frames with nobody in
    them are kept (people: [])."""

    def __init__(self, path: str | os.PathLike, meta: ExportMeta):
        super().__init__(path)
        self.meta = meta
        self._file: io.TextIOWrapper | None = None

    def _render(self, result: FrameResult, composed: np.ndarray | None) -> str:
        frame = {"index": int(result.frame.index), "time": float(result.frame.time),
                 "people": [_person_json(p) for p in result.people]}
        if result.floor is not None:
            frame["floor"] = {"pitch_deg": round(float(np.degrees(result.floor.pitch_rad)), 3),
                              "height_mm": round(float(result.floor.height_mm), 1)}
        return json.dumps(frame, separators=(",", ":"), allow_nan=False)

    def _emit(self, text: str) -> None:
        if self._file is None:
            self._file = open(self._new_temp(), "w", encoding="utf-8")
            self._file.write('{"meta":' + json.dumps(self.meta.to_dict(), allow_nan=False) + ',\n"frames":[\n')
        else:
            text = ",\n" + text
        self._file.write(text)   # one write per frame: the file never holds half a frame
        self._file.flush()

    def _finish(self) -> None:
        self._file.write("\n]}\n")
        self._file.close()

    def _abandon(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):   # e.g. the disk is still full
                self._file.close()


CSV_COLUMNS = ("frame", "time", "id", "joint_index", "joint", "x_2d", "y_2d", "x_3d", "y_3d",
               "z_3d", "confidence", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "score",
               "pose_score", "root_x", "root_y", "root_z")


def _csv_number(value) -> str:
    """Shortest exact text for float32 (numpy's str), repr for float64; empty when missing."""
    if isinstance(value, np.floating):
        return str(value) if np.isfinite(value) else ""
    value = float(value)
    return repr(value) if np.isfinite(value) else ""


class CsvExporter(FileSink):
    """One row per person, frame and joint, with a header; frames without people add no row.
    Streamed like the JSON export."""

    def __init__(self, path: str | os.PathLike, meta: ExportMeta):
        super().__init__(path)
        self.meta = meta
        self._file: io.TextIOWrapper | None = None

    def _render(self, result: FrameResult, composed: np.ndarray | None) -> str:
        buffer = io.StringIO()
        rows = csv.writer(buffer, lineterminator="\n")
        frame = result.frame
        for person in result.people:
            box = [_csv_number(v) for v in person.box.as_xywh()]
            score = _csv_number(_score(person))
            pose_score = _csv_number(np.float32(person.pose_score))
            root = [_csv_number(v) for v in _root_3d(person)]
            for j, name in enumerate(self.meta.joints):
                rows.writerow([
                    frame.index, _csv_number(frame.time), person.track_id, j, name,
                    *(_csv_number(v) for v in person.joints_2d[j][:2]),
                    *(_csv_number(v) for v in person.joints_3d[j][:3]),
                    _csv_number(person.confidence[j]), *box, score, pose_score, *root])
        return buffer.getvalue()

    def _emit(self, rows: str) -> None:
        if self._file is None:
            self._file = open(self._new_temp(), "w", encoding="utf-8", newline="")
            self._file.write(",".join(CSV_COLUMNS) + "\n")
        self._file.write(rows)   # one write per frame
        self._file.flush()

    def _finish(self) -> None:
        self._file.close()

    def _abandon(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):   # e.g. the disk is still full
                self._file.close()


class NpzExporter(FileSink):
    """Compressed .npz, loadable with np.load(path, allow_pickle=False). P = person rows over
    all frames, F = frames, J = joints:

        frame_index (F,) int64, frame_time (F,) float64   every frame, also empty ones
        person_frame (P,) int64    Frame.index of each person row
        person_id (P,) int64, bbox (P, 4) float64 [x, y, w, h], score (P,) float64
        pose_score (P,) float32, root_3d (P, 3) float32 mm (NaN when unknown)
        joints_2d (P, J, 2), joints_3d (P, J, 3), confidence (P, J)   float32
        joint_names (J,) str, skeleton (B, 2) int64, meta_json () str: the JSON meta block

    NPZ cannot be appended to, so rows are kept in memory (about 0.5 kB per person and frame)
    and the file is written by close()."""

    def __init__(self, path: str | os.PathLike, meta: ExportMeta):
        super().__init__(path)
        self.meta = meta
        self._frames: list[tuple[int, float]] = []
        self._people: list[tuple[int, Person]] = []

    def _render(self, result: FrameResult, composed: np.ndarray | None):
        index = int(result.frame.index)
        # Copy the arrays now: a tracker may update them in place after this call.
        people = [(index, Person(box=p.box, joints_2d=np.array(p.joints_2d, np.float32),
                                 joints_3d=np.array(p.joints_3d, np.float32),
                                 confidence=np.array(p.confidence, np.float32),
                                 root_cam=_root_3d(p).copy(), track_id=p.track_id)) for p in result.people]
        return (index, float(result.frame.time)), people

    def _emit(self, payload) -> None:
        frame, people = payload
        self._frames.append(frame)
        self._people.extend(people)

    def _finish(self) -> None:
        joints = len(self.meta.joints)
        rows = [p for _, p in self._people]
        arrays = {
            "frame_index": np.array([i for i, _ in self._frames], np.int64),
            "frame_time": np.array([t for _, t in self._frames], np.float64),
            "person_frame": np.array([i for i, _ in self._people], np.int64),
            "person_id": np.array([p.track_id for p in rows], np.int64),
            "bbox": np.array([p.box.as_xywh() for p in rows], np.float64).reshape(-1, 4),
            "score": np.array([_score(p) for p in rows], np.float64),
            "pose_score": np.array([p.pose_score for p in rows], np.float32),
            "root_3d": np.array([p.root_cam for p in rows], np.float32).reshape(-1, 3),
            "joints_2d": np.array([p.joints_2d[:, :2] for p in rows], np.float32).reshape(-1, joints, 2),
            "joints_3d": np.array([p.joints_3d[:, :3] for p in rows], np.float32).reshape(-1, joints, 3),
            "confidence": np.array([p.confidence for p in rows], np.float32).reshape(-1, joints),
            "joint_names": np.array(self.meta.joints, dtype=str),
            "skeleton": np.array(self.meta.skeleton, np.int64).reshape(-1, 2),
            "meta_json": np.array(json.dumps(self.meta.to_dict())),
        }
        # Built in memory, then written: a zip writer that fails half-way (a full disk) would
        # complain again when garbage-collected. Memory: the rows are in memory already.
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        with open(self._new_temp(), "wb") as f:
            f.write(buffer.getbuffer())


_EXPORTERS = {".json": JsonExporter, ".csv": CsvExporter, ".npz": NpzExporter}


def make_exporter(path: str | os.PathLike, meta: ExportMeta) -> FileSink:
    """The exporter for the path's extension (.json, .csv or .npz)."""
    ext = Path(path).suffix.lower()
    if ext not in _EXPORTERS:
        raise UserError(f"unknown export format '{ext or path}': use .json, .csv or .npz.")
    return _EXPORTERS[ext](path, meta)


# --------------------------------------------------------------------------------------------
# All outputs of a run, fed and closed together

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

    def __enter__(self) -> "SinkGroup":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
