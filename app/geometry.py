"""Box processing, the affine crop, back-projection and the root-depth prior, as the authors'
demo (github.com/medialab-ku/ConvNeXtPose) does them, step by step below; the conformance tests
(tests/test_conformance.py) hold this code to their outputs. All float64, as the authors compute
after the network."""
from __future__ import annotations

import cv2
import numpy as np

from .types import Camera, Person

CROP_SIZE = 256          # the network's input, pixels
BOX_ENLARGE = 1.25       # context around the person
DEPTH_RANGE_MM = 2000.0  # the depth bins span 2 m centred on the root
ROOT_AREA_MM2 = 2000.0 * 2000.0  # RootNet's prior: a person's box covers about 2 m x 2 m

# An adult's bone lengths in mm, about the mean of Human3.6M's subjects, for the bones of the
# 18-joint skeleton (app/skeleton.py BONES): the body's size that a distance is read from.
BONE_LENGTH_MM = {
    (0, 7): 233.0, (7, 8): 257.0, (8, 9): 121.0, (9, 10): 115.0,           # spine, neck, head
    (8, 11): 151.0, (11, 12): 278.0, (12, 13): 251.0,                       # left arm
    (8, 14): 151.0, (14, 15): 278.0, (15, 16): 251.0,                       # right arm
    (0, 1): 133.0, (1, 2): 454.0, (2, 3): 450.0,                            # right leg
    (0, 4): 133.0, (4, 5): 454.0, (5, 6): 450.0,                            # left leg
}
MIN_BONES_FOR_SIZE = 3           # fewer seen bones than this say too little about the size


def process_box(box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray | None:
    """Clip (x, y, w, h) to the image, square it about its centre and scale it by 1.25.
    None when nothing of the box is inside the image. The clipping is the authors' own (pixel
    ends inclusive, so a box loses one pixel per side; Box.clipped keeps it), kept here so the
    crops match theirs."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        return None
    cx, cy = x1 + w / 2.0, y1 + h / 2.0
    side = max(w, h) * BOX_ENLARGE
    return np.array([cx - side / 2.0, cy - side / 2.0, side, side], dtype=np.float64)


def crop_transform(bbox: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 affine map from the image to the size x size crop of a processed box: the box centre
    goes to the crop centre, half a box-height below it to the bottom edge's centre, half a
    box-width right of it to the right edge's centre."""
    x, y, w, h = bbox
    cx, cy = x + 0.5 * w, y + 0.5 * h
    src = np.float32([[cx, cy], [cx, cy + 0.5 * h], [cx + 0.5 * w, cy]])
    half = size * 0.5
    dst = np.float32([[half, half], [half, size], [size, half]])
    return cv2.getAffineTransform(src, dst)


def crop(image_bgr: np.ndarray, transform: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The size x size BGR crop (bilinear, black outside the image)."""
    return cv2.warpAffine(image_bgr, transform, (size, size), flags=cv2.INTER_LINEAR)


def crop_to_image(points_xy: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Crop pixels (..., 2) back to image pixels through the inverse of the crop's affine map."""
    # closed form: np.linalg.inv goes through LAPACK, whose thread wake-up costs ~1 ms per call
    # beside the network's threads
    inverse = cv2.invertAffineTransform(np.asarray(transform, dtype=np.float64))
    return points_xy @ inverse[:, :2].T + inverse[:, 2]


def heatmap_to_image(coord: np.ndarray, transform: np.ndarray, heatmap_size: int) -> np.ndarray:
    """(J, >=2) heatmap units -> (J, 2) image pixels."""
    crop_xy = coord[:, :2].astype(np.float64) / heatmap_size * CROP_SIZE
    return crop_to_image(crop_xy, transform)


def bins_to_depth(z_bins: np.ndarray, depth_bins: int, root_depth: float = 0.0) -> np.ndarray:
    """Depth bins -> mm: the bins span 2 m centred on the root."""
    return (np.asarray(z_bins, dtype=np.float64) / depth_bins * 2.0 - 1.0) * (DEPTH_RANGE_MM / 2.0) + root_depth


def pixels_to_camera(pixels_xy: np.ndarray, depth_mm: np.ndarray, camera: Camera) -> np.ndarray:
    """(J, 2) pixels and (J,) depths -> (J, 3) camera coordinates in mm."""
    x = (pixels_xy[:, 0] - camera.cx) / camera.fx * depth_mm
    y = (pixels_xy[:, 1] - camera.cy) / camera.fy * depth_mm
    return np.stack([x, y, depth_mm], axis=1)


def root_depth_prior(bbox: np.ndarray, camera: Camera) -> float:
    """RootNet's distance prior: a processed box of area A px^2 is sqrt(fx fy 2m x 2m / A) away."""
    area = float(bbox[2] * bbox[3])
    return float(np.sqrt(camera.fx * camera.fy * ROOT_AREA_MM2 / area))


def root_depth_from_size(pose_2d: np.ndarray, relative_depth_mm: np.ndarray, usable: np.ndarray,
                         camera: Camera) -> float | None:
    """The root's distance from the body's size in the image, using only the bones seen.

    A bone of length L whose ends differ by dz in depth (the network's own, metric) spans
    sqrt(L^2 - dz^2) across the line of sight, which at distance Z appears as f/Z times that in
    pixels. Summed over the bones whose two joints are `usable` (inside the image, confident):
    Z = f * sum(across) / sum(pixels). A box cut by the frame's edge or by another person
    shrinks and reads as far away under the box-area prior; the bones still seen keep their
    length. None when fewer than MIN_BONES_FOR_SIZE bones are seen.
    """
    f = float(np.sqrt(camera.fx * camera.fy))
    across, pixels, bones = 0.0, 0.0, 0
    for (a, b), length in BONE_LENGTH_MM.items():
        if not (usable[a] and usable[b]):
            continue
        dz = float(relative_depth_mm[a] - relative_depth_mm[b])
        # a bone pointing at the camera says little; keep at least a fifth of its length
        across += np.sqrt(max(length * length - dz * dz, (0.2 * length) ** 2))
        pixels += float(np.hypot(*(pose_2d[a, :2] - pose_2d[b, :2])))
        bones += 1
    if bones < MIN_BONES_FOR_SIZE or pixels <= 1.0:
        return None
    return f * across / pixels


def joints_in_view(pose_2d: np.ndarray, confidence: np.ndarray, width: int, height: int,
                   min_confidence: float = 0.3, margin_px: float = 2.0) -> np.ndarray:
    """(J,) bool: joints inside the image (a margin from its edges) with enough confidence.
    Joints without a confidence (NaN) count as confident."""
    x, y = pose_2d[:, 0], pose_2d[:, 1]
    inside = (x >= margin_px) & (x < width - margin_px) & (y >= margin_px) & (y < height - margin_px)
    conf = np.asarray(confidence, np.float64)
    return inside & (np.isnan(conf) | (conf >= min_confidence))


# People without an estimated root are shown in a row this far apart, at the others' median
# depth (or this one when nobody has a root), so that they never overlap.
UNPLACED_SPACING_MM = 1000.0
UNPLACED_DEPTH_MM = 3000.0


def root_positions(people: list[Person]) -> list[np.ndarray]:
    """Each person's root (Pelvis) position, (3,) mm in camera coordinates, where their
    root-relative joints are drawn: the estimated one, else a place in a row UNPLACED_SPACING_MM
    apart, centred on the camera axis, at the others' median depth."""
    known = [p.root_cam for p in people if p.root_cam is not None]
    depth = float(np.median([r[2] for r in known])) if known else UNPLACED_DEPTH_MM
    middle = (len(people) - 1) / 2.0
    return [np.asarray(p.root_cam, dtype=np.float64) if p.root_cam is not None
            else np.array([(i - middle) * UNPLACED_SPACING_MM, 0.0, depth]) for i, p in enumerate(people)]
