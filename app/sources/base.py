"""What every source is (Source, and Capture: the part of cv2.VideoCapture the readers use),
and the small image helpers the readers share."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from app.pixels import as_bgr_uint8
from app.types import Frame

log = logging.getLogger(__name__)

FALLBACK_FPS = 30.0          # when a camera or file reports no usable frame rate
STILL_FPS = 30.0             # nominal rate of image inputs: frame time = index / STILL_FPS


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


def usable_fps(value: float) -> float:
    """A capture's reported rate, or the fallback when it reports 0, NaN or nonsense."""
    if value is None or not np.isfinite(value) or value <= 0 or value > 1000:
        return FALLBACK_FPS
    return float(value)


def image_size(image: np.ndarray) -> tuple[int, int]:
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
    return None if image is None else as_bgr_uint8(image)


def natural_key(name: str) -> list:
    """Sort "frame2.jpg" before "frame10.jpg", as people expect of numbered frames."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
