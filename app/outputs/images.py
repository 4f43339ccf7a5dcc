"""Annotated stills: one image file holding the last frame, or a folder with one image per
frame, each file written atomically."""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from app.errors import UserError
from app.pixels import as_bgr_uint8
from app.types import FrameResult

from .atomic import FileSink, remove_stale_temporaries, write_bytes_atomically

JPEG_QUALITY = 95
FOLDER_IMAGE_EXTENSION = ".jpg"   # the files inside a folder output
PHOTO_SUFFIX = "_pose"            # photo.jpg -> photo_pose.jpg
NUMBERED_FRAME = re.compile(r"\d{6,}" + re.escape(FOLDER_IMAGE_EXTENSION))   # a video's frames in a folder


def encode_image(image: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, as_bgr_uint8(image), params)
    if not ok:
        raise UserError(f"OpenCV cannot encode a {ext} image.")
    return data.tobytes()


def photo_stems(photos: Sequence[Path]) -> dict[Path, str]:
    """The file stem of each photo's annotated copy in one folder output: NAME_pose, or, for
    photos that share a name (photo.jpg and photo.png), the whole file name, photo_jpg_pose and
    photo_png_pose (as the batch names videos), so that none overwrites another. Names that
    differ only in case count as the same: a disk may not tell them apart."""
    shared = Counter(photo.stem.lower() for photo in photos)
    stems: dict[Path, str] = {}
    taken: set[str] = set()
    for photo in photos:
        base = photo.name.replace(".", "_") if shared[photo.stem.lower()] > 1 else photo.stem
        stem, n = base, 1
        while stem.lower() in taken:   # e.g. x_jpg.png beside x.jpg and x.png
            n += 1
            stem = f"{base}_{n}"
        taken.add(stem.lower())
        stems[photo] = stem + PHOTO_SUFFIX
    return stems


class ImageSink(FileSink):
    """Annotated still(s).

    * path with an image extension (out.jpg): the LAST composed image is written on close()
      (for a single-image input that is the only one).
    * path without an extension (out/): a folder, created on the first write, that gets one
      JPEG per frame, each written atomically as soon as it arrives. Files are named
      f"{index:06d}.jpg", or name_for_index(index) + ".jpg" when given (unrelated photos are
      written under their own names, see photo_stems). Frames an earlier run left there under
      such numbered names and this run did not write again are removed at close(): the folder
      then holds one run's frames, not two runs' mixed (a folder that holds files is written
      into only with --force: app/outputs/paths.py check_not_replacing).
    """

    needs_image = True

    def __init__(self, path: str | os.PathLike, *,
                 name_for_index: Callable[[int], str] | None = None):
        super().__init__(path)
        self.is_folder = not self.path.suffix
        self._name_for_index = name_for_index
        self._last: np.ndarray | None = None
        self._written: set[str] = set()   # file names this run wrote into a folder
        if self.is_folder:
            remove_stale_temporaries(self.path, inside=True)

    def _render(self, result: FrameResult, composed: np.ndarray | None):
        image = composed if composed is not None else result.frame.image
        if not self.is_folder:
            return image.copy()   # the caller may reuse its buffer for the next frame
        index = result.frame.index
        stem = self._name_for_index(index) if self._name_for_index else f"{index:06d}"
        return self.path / f"{stem}{FOLDER_IMAGE_EXTENSION}", encode_image(image, FOLDER_IMAGE_EXTENSION)

    def _emit(self, payload) -> None:
        if not self.is_folder:
            self._last = payload
            return
        target, data = payload
        self.path.mkdir(exist_ok=True)
        write_bytes_atomically(target, data)
        self._written.add(target.name)

    def _finish(self) -> None:
        if not self.is_folder:
            write_bytes_atomically(self.path, encode_image(self._last, self.path.suffix.lower()))
        elif self._name_for_index is None:   # numbered frames: an earlier run's are not this one's
            for earlier in self.path.iterdir():
                if NUMBERED_FRAME.fullmatch(earlier.name) and earlier.name not in self._written:
                    earlier.unlink()
