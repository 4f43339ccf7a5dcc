"""BlazePose GHUM 3D (pose_landmark_full.tflite): 33 body landmarks of the one person in a given
region of an image, with the decoding of MediaPipe's "PoseLandmarkByRoiCpu" graph written out in
numpy.

The region (hip-centred, upright, square: see PoseDetection.body_roi or PoseLandmarks.next_roi)
is resampled into 256x256 (values in [0, 1], edge pixels repeated outside the image). The
network returns 39 landmarks (33 of the body, 2 auxiliary ones that locate the body for the next
frame, 4 unused) as x, y, z in input pixels plus visibility and presence logits; heatmaps that
refine x and y (confidence-weighted mean over a 9x9 window about each landmark, where the
heatmap is confident); about each landmark; a pose-presence score (already a probability: MediaPipe keeps a pose when >= 0.5);
and 39 world landmarks in metres about the hip centre, upright in the region's frame, which are
turned back by the region's rotation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detector import aligned_square
from .image_to_tensor import Roi, letterbox, warp_to_tensor
from .runtime import MODEL_DIR, TfliteModel

MODEL_FILE = MODEL_DIR / "pose_landmark_full.tflite"
INPUT_SIZE = 256
NUM_LANDMARKS = 33
PRESENCE_THRESHOLD = 0.5     # MediaPipe's: below this the region holds no pose
_RAW_LANDMARKS = 39
# 9x9: what mediapipe 0.10.21 computes (its published graph text says 7, but only 9, the
# calculator's default, reproduces its outputs: tests/test_blazepose_port.py).
_HEATMAP_KERNEL = 9
_HEATMAP_MIN_CONFIDENCE = 0.5
_NEXT_ROI_SCALE = 1.25       # MediaPipe's PoseLandmarksToRoi


@dataclass(frozen=True)
class PoseLandmarks:
    """One region's pose. Pixel coordinates are the whole image's."""
    roi: Roi
    presence: float          # the pose-presence score: is there a person in this region
    image: np.ndarray        # (33, 3) x, y px and z (depth about the hips, same px scale)
    visibility: np.ndarray   # (33,) probability that the landmark is visible (not occluded)
    in_frame: np.ndarray     # (33,) probability that the landmark lies inside the image
    world: np.ndarray        # (33, 3) metres about the hip centre; x right, y down, z away
    auxiliary: np.ndarray    # (2, 2) px: the body's centre and a point fixing its scale

    @property
    def present(self) -> bool:
        return self.presence >= PRESENCE_THRESHOLD

    def next_roi(self, scale: float = _NEXT_ROI_SCALE) -> Roi:
        """The region for this body in the next frame (MediaPipe's PoseLandmarksToRoi)."""
        return aligned_square(self.auxiliary[0], self.auxiliary[1], scale)


class PoseLandmarker:
    """Landmarks of the person in a region. Calls are serialized, so one instance may be
    shared between threads."""

    def __init__(self, model_path: str | Path = MODEL_FILE, num_threads: int | None = None):
        self._model = TfliteModel(model_path, num_threads)
        shapes = self._model.output_shapes
        self._out = {name: next(i for i, s in enumerate(shapes) if s == shape) for name, shape in {
            "landmarks": (1, _RAW_LANDMARKS * 5), "presence": (1, 1),
            "heatmap": (1, 64, 64, _RAW_LANDMARKS), "world": (1, _RAW_LANDMARKS * 3)}.items()}

    def estimate(self, image: np.ndarray, roi: Roi, bgr: bool = False) -> PoseLandmarks:
        """The pose in `roi` of a uint8 (H, W, 3) image (RGB, or BGR when `bgr`). Always
        returns; `present` says whether the model saw a person there."""
        padded, padding = letterbox(roi, INPUT_SIZE, INPUT_SIZE)
        tensor = warp_to_tensor(image, padded, INPUT_SIZE, INPUT_SIZE, "replicate", (0.0, 1.0),
                                bgr)
        outputs = self._model.run(tensor[None])
        raw = outputs[self._out["landmarks"]].reshape(_RAW_LANDMARKS, 5).astype(np.float64)
        presence = float(outputs[self._out["presence"]].reshape(-1)[0])
        heatmap = outputs[self._out["heatmap"]][0]
        world_raw = outputs[self._out["world"]].reshape(_RAW_LANDMARKS, 3).astype(np.float64)

        # In [0, 1] of the tensor; z on x's scale.
        xyz = raw[:, :3] / INPUT_SIZE
        xyz[:, :2] = _refine_from_heatmap(xyz[:, :2], heatmap)
        xyz[:, 0] = padding.remove_x(xyz[:, 0])
        xyz[:, 1] = padding.remove_y(xyz[:, 1])
        xyz[:, 2] /= 1.0 - padding.left - padding.right
        # Region -> image: about the region's centre, turned by its rotation, scaled by its size.
        cos, sin = math.cos(roi.rotation), math.sin(roi.rotation)
        u, v = xyz[:, 0] - 0.5, xyz[:, 1] - 0.5
        image_xyz = np.stack([(cos * u - sin * v) * roi.width + roi.cx,
                              (sin * u + cos * v) * roi.height + roi.cy,
                              xyz[:, 2] * roi.width], axis=1)
        world = world_raw[:NUM_LANDMARKS].copy()
        world[:, 0] = cos * world_raw[:NUM_LANDMARKS, 0] - sin * world_raw[:NUM_LANDMARKS, 1]
        world[:, 1] = sin * world_raw[:NUM_LANDMARKS, 0] + cos * world_raw[:NUM_LANDMARKS, 1]
        return PoseLandmarks(
            roi=roi, presence=presence,
            image=image_xyz[:NUM_LANDMARKS],
            visibility=_sigmoid(raw[:NUM_LANDMARKS, 3]),
            in_frame=_sigmoid(raw[:NUM_LANDMARKS, 4]),
            world=world,
            auxiliary=image_xyz[NUM_LANDMARKS:NUM_LANDMARKS + 2, :2].copy())

    @property
    def last_network_ms(self) -> float:
        """How long the network itself took in the last estimate(): its input set, the model
        run, its outputs taken (not the resampling before it nor the decoding after)."""
        return self._model.last_run_ms

    def close(self) -> None:
        self._model.close()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """x, y (in [0, 1] of the tensor) replaced by the confidence-weighted mean cell of a
    window of the landmark's heatmap about it (9x9), where that window's peak confidence is >= 0.5.
    Cells count from 0 at the heatmap's left/top edge (no half-cell shift), as MediaPipe does."""
    rows, cols, count = heatmap.shape
    half = (_HEATMAP_KERNEL - 1) // 2
    out = xy.copy()
    col, row = (xy[:, 0] * cols).astype(np.int64), (xy[:, 1] * rows).astype(np.int64)  # truncation, as in C++
    inside = np.flatnonzero((col >= 0) & (col < cols) & (row >= 0) & (row < rows))
    if inside.size == 0:
        return out
    # All windows at once: cells beyond the heatmap's edge read confidence 0, which adds nothing
    # to a window's sums and cannot be its peak.
    offsets = np.arange(-half, half + 1)
    grid_r = row[inside, None] + offsets                       # (n, 9)
    grid_c = col[inside, None] + offsets
    valid = ((grid_r >= 0) & (grid_r < rows))[:, :, None] & ((grid_c >= 0) & (grid_c < cols))[:, None, :]
    logits = heatmap[np.clip(grid_r, 0, rows - 1)[:, :, None], np.clip(grid_c, 0, cols - 1)[:, None, :],
                     inside[:, None, None]].astype(np.float64)
    confidence = np.where(valid, _sigmoid(logits), 0.0)        # (n, 9, 9)
    total = confidence.sum(axis=(1, 2))
    refine = (confidence.max(axis=(1, 2)) >= _HEATMAP_MIN_CONFIDENCE) & (total > 0)
    mean_c = (confidence.sum(axis=1) * grid_c).sum(axis=1) / np.where(refine, total, 1.0)
    mean_r = (confidence.sum(axis=2) * grid_r).sum(axis=1) / np.where(refine, total, 1.0)
    out[inside[refine], 0] = mean_c[refine] / cols
    out[inside[refine], 1] = mean_r[refine] / rows
    return out
