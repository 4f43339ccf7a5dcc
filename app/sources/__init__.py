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
  read-ahead thread with a bounded queue so decoding overlaps the consumer's work. A frame's
  index is its position in the file or the folder (time = index / fps): a frame that cannot be
  decoded is skipped and leaves a gap, the frames after it keep their own numbers.

A source is iterated once; iterating again continues where the last iteration stopped.
"""
from __future__ import annotations

import os

# FFmpeg inside OpenCV prints its own lines ("[h264 @ 0x..] error while decoding MB", "header
# damaged") straight to stderr, hundreds for a damaged file, burying the app's one sentence.
# OpenCV reads this before it first starts FFmpeg; AV_LOG_QUIET = -8. A user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import re  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from app.errors import UserError  # noqa: E402

from .base import STILL_FPS, Capture, Source, read_image  # noqa: E402
from .files import (READ_AHEAD_FRAMES, ImageFilesSource, ReadAhead, VideoFileSource,  # noqa: E402
                    folder_mode, open_file, open_folder)
from .live import LiveSource, open_camera, open_stream  # noqa: E402
from .probe import not_a_regular_file, redact_url, sniff  # noqa: E402
from .wrappers import FrameLimit, LoopingSource  # noqa: E402

__all__ = ["Capture", "FrameLimit", "ImageFilesSource", "LiveSource", "LoopingSource", "READ_AHEAD_FRAMES",
           "ReadAhead", "STILL_FPS", "Source", "VideoFileSource", "folder_mode", "input_path", "open_source",
           "read_image", "redact_url", "sniff"]


def input_path(spec: str) -> Path | None:
    """The local file or folder an input names (a file:// URL's path, ~ expanded), or None for a
    camera index or a stream URL."""
    spec = str(spec).strip()
    if spec.isdigit():
        return None
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec) and not spec.lower().startswith("file://"):
        return None
    return Path(spec[len("file://"):] if spec.lower().startswith("file://") else spec).expanduser()


def open_source(spec: str, *, still_fps: float = STILL_FPS) -> Source:
    """Open a camera index ("0"), a stream URL ("rtsp://..."), a video file, an image file or a
    folder of images. Reads the first frame before returning; raises UserError when the input
    cannot be used."""
    spec = str(spec).strip()
    if not spec:
        raise UserError("no input given: pass a camera index, a video, an image or a folder.")
    if spec.isdigit():
        return open_camera(int(spec), f"camera {int(spec)}")
    path = input_path(spec)
    if path is None:
        return open_stream(spec)
    if not path.exists():
        raise UserError(f"input '{spec}' does not exist.")
    if path.is_dir():
        return open_folder(path, still_fps)
    camera = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(path))
    if camera and sys.platform.startswith("linux"):   # a V4L2 camera named by its device
        return open_camera(int(camera.group(1)), f"camera {camera.group(1)}")
    problem = not_a_regular_file(path, spec)
    if problem:
        raise UserError(problem)
    if not os.access(path, os.R_OK):
        raise UserError(f"input '{spec}' is not readable (permission denied).")
    return open_file(path, still_fps)
