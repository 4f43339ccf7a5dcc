"""A rotated region of an image, resampled into a network's square input tensor, the way
MediaPipe's ImageToTensorCalculator does it on CPU (so that the networks see the same pixels as
in MediaPipe and give the same answers):

- the region may be widened to the tensor's aspect ratio ("letterbox"), and the padding that
  adds is reported so that outputs can be mapped back;
- the region's four corners map onto the tensor's four corners (corners, not pixel centres);
- 8-bit bilinear resampling (OpenCV's warpPerspective on the uint8 image), pixels outside the
  image either black or the nearest edge pixel;
- then a linear map of 0..255 onto the network's value range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Border = Literal["zero", "replicate"]


@dataclass(frozen=True)
class Roi:
    """A rectangle in image pixels: centre, size, and rotation in radians (clockwise in the
    image, y down; 0 = upright). The rotation turns the region's content upright in the tensor."""
    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0

    @classmethod
    def whole_image(cls, width: int, height: int) -> "Roi":
        return cls(width / 2.0, height / 2.0, float(width), float(height), 0.0)


@dataclass(frozen=True)
class Padding:
    """Letterbox padding as fractions of the tensor's width (left, right) and height (top,
    bottom)."""
    left: float = 0.0
    top: float = 0.0
    right: float = 0.0
    bottom: float = 0.0

    def remove_x(self, x: np.ndarray) -> np.ndarray:
        return (x - self.left) / (1.0 - self.left - self.right)

    def remove_y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.top) / (1.0 - self.top - self.bottom)


def letterbox(roi: Roi, tensor_width: int, tensor_height: int) -> tuple[Roi, Padding]:
    """The region widened (never cropped) to the tensor's aspect ratio, and the padding that
    adds, so the content keeps its proportions."""
    if roi.width <= 0 or roi.height <= 0:
        raise ValueError(f"region of interest has no area: {roi}")
    tensor_aspect = tensor_height / tensor_width
    roi_aspect = roi.height / roi.width
    if tensor_aspect > roi_aspect:
        pad = (1.0 - roi_aspect / tensor_aspect) / 2.0
        return (Roi(roi.cx, roi.cy, roi.width, roi.width * tensor_aspect, roi.rotation),
                Padding(0.0, pad, 0.0, pad))
    pad = (1.0 - tensor_aspect / roi_aspect) / 2.0
    return (Roi(roi.cx, roi.cy, roi.height / tensor_aspect, roi.height, roi.rotation),
            Padding(pad, 0.0, pad, 0.0))


def warp_to_tensor(image: np.ndarray, roi: Roi, width: int, height: int, border: Border,
                   value_range: tuple[float, float], bgr: bool = False) -> np.ndarray:
    """The region resampled to a (height, width, 3) float32 RGB tensor with values in
    value_range. `image`: uint8 (H, W, 3), RGB, or BGR when `bgr`."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected a uint8 image of shape (H, W, 3)")
    angle_degrees = math.degrees(roi.rotation)
    corners = cv2.boxPoints(((roi.cx, roi.cy), (roi.width, roi.height), angle_degrees))
    # cv2.boxPoints lists bottom-left, top-left, top-right, bottom-right of the upright region.
    targets = np.array([[0, height], [0, 0], [width, 0], [width, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), targets)
    warped = cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT if border == "zero" else cv2.BORDER_REPLICATE,
        borderValue=(0, 0, 0))
    if bgr:
        warped = cv2.cvtColor(warped, cv2.COLOR_BGR2RGB)
    low, high = value_range
    tensor = np.multiply(warped, np.float32((high - low) / 255.0), dtype=np.float32)
    tensor += np.float32(low)
    return tensor
