"""The BlazePose person detector (pose_detection.tflite): every person it finds in an image,
with the decoding of MediaPipe's "PoseDetectionCpu" graph written out in numpy.

The network looks at the whole image letterboxed into 224x224 (black bars, values in [-1, 1]),
scores 2254 fixed anchors (SSD layout: strides 8, 16 and 32, two anchors per cell at stride 8
and 16, six at stride 32, all of unit size) and regresses, per anchor, a box and 4 keypoints as
offsets from the anchor's centre in input pixels. Scores are logits (clipped to +-100, then a
sigmoid). Overlapping detections (IoU > 0.3) are merged by weighted non-max suppression: the
best one's score, the score-weighted mean of their boxes and keypoints.

What a detection means: its box is the FACE. Its keypoints are
    0 the hip centre, 1 a point at the full-body radius from it (above the head),
    2 the shoulder centre, 3 a point at the upper-body radius from it.
The hip centre, the full-body radius and the hip -> point-1 direction (the body's "up") make the
region the landmark model wants (`PoseDetection.body_roi`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_to_tensor import Roi, letterbox, warp_to_tensor
from .runtime import MODEL_DIR, TfliteModel

MODEL_FILE = MODEL_DIR / "pose_detection.tflite"
INPUT_SIZE = 224
DEFAULT_MIN_SCORE = 0.5       # MediaPipe's own threshold
DEFAULT_NMS_IOU = 0.3         # MediaPipe's own
BODY_ROI_SCALE = 1.25         # the landmark model's crop is 1.25x the full-body circle


def ssd_anchors(input_size: int = INPUT_SIZE,
                strides: tuple[int, ...] = (8, 16, 32, 32, 32)) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the network's output order: consecutive layers of
    one stride share a grid, each layer adding two anchors per cell."""
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        count = 0
        while layer < len(strides) and strides[layer] == stride:
            count += 2
            layer += 1
        cells = math.ceil(input_size / stride)
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells,
                             indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, count, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class PoseDetection:
    """One person, in image pixels."""
    score: float
    face_box: np.ndarray    # (4,) x0, y0, x1, y1
    keypoints: np.ndarray   # (4, 2): hip centre, full-body radius point, shoulder centre,
    #                         upper-body radius point

    @property
    def hip_centre(self) -> np.ndarray:
        return self.keypoints[0]

    @property
    def body_radius(self) -> float:
        """Radius of the circle about the hip centre that holds the whole body, in px."""
        return float(np.hypot(*(self.keypoints[1] - self.keypoints[0])))

    def body_roi(self, scale: float = BODY_ROI_SCALE) -> Roi:
        """The region the landmark model wants (MediaPipe's PoseDetectionToRoi): a square about
        the hip centre, `scale` x the full-body circle's diameter, turned so that the body's
        up axis points up."""
        return aligned_square(self.keypoints[0], self.keypoints[1], scale)


def aligned_square(centre: np.ndarray, toward_top: np.ndarray, scale: float) -> Roi:
    """The square about `centre` whose half-side is the distance to `toward_top`, x `scale`,
    rotated so that `toward_top` lies straight above `centre`."""
    dx, dy = float(toward_top[0] - centre[0]), float(toward_top[1] - centre[1])
    rotation = math.pi / 2 - math.atan2(-dy, dx)
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    side = 2.0 * math.hypot(dx, dy) * scale
    return Roi(float(centre[0]), float(centre[1]), side, side, rotation)


class PoseDetector:
    """Every person pose_detection.tflite finds in an image. Calls are serialized, so one
    instance may be shared between threads."""

    def __init__(self, model_path: str | Path = MODEL_FILE, num_threads: int | None = None,
                 min_score: float = DEFAULT_MIN_SCORE, nms_iou: float = DEFAULT_NMS_IOU):
        self.min_score = min_score
        self.nms_iou = nms_iou
        self._model = TfliteModel(model_path, num_threads)
        self._anchors = ssd_anchors()
        shapes = self._model.output_shapes
        self._box_output = next(i for i, s in enumerate(shapes) if s[-1] == 12)
        self._score_output = next(i for i, s in enumerate(shapes) if s[-1] == 1)

    def detect(self, image: np.ndarray, min_score: float | None = None,
               bgr: bool = False) -> list[PoseDetection]:
        """People in a uint8 (H, W, 3) image (RGB, or BGR when `bgr`), best score first."""
        height, width = image.shape[:2]
        roi, padding = letterbox(Roi.whole_image(width, height), INPUT_SIZE, INPUT_SIZE)
        tensor = warp_to_tensor(image, roi, INPUT_SIZE, INPUT_SIZE, "zero", (-1.0, 1.0), bgr)
        outputs = self._model.run(tensor[None])
        raw = outputs[self._box_output].reshape(-1, 12)
        logits = outputs[self._score_output].reshape(-1).astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        threshold = self.min_score if min_score is None else min_score
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            return []
        boxes, keypoints = _decode(raw[keep], self._anchors[keep])
        valid = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
        boxes, keypoints, scores = boxes[valid], keypoints[valid], scores[keep][valid]
        found = []
        for score, box, points in weighted_nms(scores, boxes, keypoints, self.nms_iou):
            # From the letterboxed square back to this image's pixels.
            box = np.array([padding.remove_x(box[0]) * width, padding.remove_y(box[1]) * height,
                            padding.remove_x(box[2]) * width, padding.remove_y(box[3]) * height])
            points = np.stack([padding.remove_x(points[:, 0]) * width,
                               padding.remove_y(points[:, 1]) * height], axis=1)
            found.append(PoseDetection(float(score), box, points))
        return found

    def close(self) -> None:
        self._model.close()


def _decode(raw: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw rows (x, y, w, h, then 4 keypoints x, y; input pixels relative to the anchor) ->
    boxes (N, 4) x0, y0, x1, y1 and keypoints (N, 4, 2), in [0, 1] of the input square."""
    scaled = raw.astype(np.float64) / INPUT_SIZE
    centre = scaled[:, 0:2] + anchors
    half = scaled[:, 2:4] / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = scaled[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
    return boxes, keypoints


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray,
                 iou_threshold: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(score, box, keypoints) per cluster: the best remaining detection gathers every
    remaining one overlapping it by more than `iou_threshold` (itself included); the cluster
    keeps the best score and the score-weighted mean box and keypoints."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        overlaps = _iou(boxes[best], boxes[order])
        members = order[overlaps > iou_threshold]
        if members.size == 0:   # a degenerate box overlaps nothing, not even itself
            members = order[:1]
        weights = scores[members][:, None]
        total = float(weights.sum())
        box = (boxes[members] * weights).sum(axis=0) / total
        points = (keypoints[members] * weights[:, :, None]).sum(axis=0) / total
        out.append((float(scores[best]), box, points))
        order = order[~np.isin(order, members)]
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
