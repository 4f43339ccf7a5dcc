"""The one pixel layout images have between stages: H x W x 3, BGR, uint8 (what OpenCV decodes
and encodes). Decoders that hand back gray or BGRA, and drawings in other types, meet it here."""
from __future__ import annotations

import cv2
import numpy as np


def as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """`image` as 3-channel BGR, 8 bits: gray and BGRA converted, other types clipped to 0-255;
    an image that already is one is returned as it is (no copy)."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
