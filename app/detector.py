"""Person boxes from BlazePose's person detector (pose_detection.tflite from mediapipe 0.10.21, run
by LiteRT through models/blazepose, which returns every detection with MediaPipe's own decoding).

What a detection means: its bounding box is the FACE. Its 4 keypoints are
    0 hip centre, 1 a point at the full-body radius from the hip centre (above the head),
    2 shoulder centre, 3 the upper-body radius point.
The hip centre plus the radius define MediaPipe's "Vitruvian" circle around the whole body;
the hip -> radius-point direction is the body's up axis. We turn that into a body-aligned
rectangle (top/bottom/half-width as fractions of the radius, tuned on tests/data/group.jpg and
two opencv-doc photos), then take its axis-aligned bounds. The pose estimator squares the box
and enlarges it by 1.25 itself, so the box here is meant to be snug.

Recall: the detector works on a 224x224 letterboxed copy of its input and was trained for people
within a few metres of the camera, so small people in a wide frame are missed. Two modes:
- "fast": one whole-frame pass (~7 ms per 640x480 frame on 2 cores). For the per-frame path;
  the frame loop re-detects only periodically and the tracker carries boxes between.
- "tiled": the whole frame plus overlapping square tiles (side = 0.75 x the short image side,
  50% overlap), each tile upscaled by the detector's own resize. Results are merged with
  non-max suppression. Several times slower, much better recall on groups.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from app.errors import UserError
from app.native_logs import native_stderr_silenced
from app.types import BodyRegion, Box
from models.blazepose import ModelUnavailableError, PoseDetector

Mode = Literal["fast", "tiled"]


@dataclass(frozen=True)
class BoxShape:
    """Body-aligned rectangle around the hip centre, in units of the full-body radius."""
    top: float = 0.9          # from the hip centre towards the head
    bottom: float = 0.9       # from the hip centre towards the feet
    half_width: float = 0.35  # to each side of the body axis


@dataclass(frozen=True)
class DetectorConfig:
    mode: Mode = "fast"
    # Detector score threshold (MediaPipe's own default).
    min_score: float = 0.5
    # Tiles multiply the chances of a false alarm (fruit, furniture): a tile's detection must
    # score higher, after the penalty for being cut off by the tile's edge.
    tile_min_score: float = 0.6
    nms_iou: float = 0.45          # boxes overlapping more than this are one person
    # A box lying this much inside a higher-ranked box at least 1/contain_area_ratio its size
    # is a body part (a leg, a torso) detected as a small person in a tile: drop it.
    contain_fraction: float = 0.8
    contain_area_ratio: float = 0.6
    tile_fraction: float = 0.75    # tile side as a fraction of the image's short side
    tile_overlap: float = 0.5      # fraction of a tile shared with its neighbour
    min_box_side: float = 12.0     # px; smaller boxes are noise
    shape: BoxShape = BoxShape()
    num_threads: int | None = None  # LiteRT's threads (None: its default)


@dataclass
class _Candidate:
    box: Box
    rank_score: float   # the detector score, lowered for people cut off by a tile's edge


class PersonDetector:
    """Every person box the BlazePose detector finds. The model serializes its calls, so one
    instance may be shared between threads."""

    def __init__(self, config: DetectorConfig | None = None, **overrides):
        """`PersonDetector(DetectorConfig(...))` or `PersonDetector(mode="tiled")`."""
        config = replace(config or DetectorConfig(), **overrides)
        self.config = config
        try:
            with native_stderr_silenced():   # LiteRT announces its XNNPACK delegate on fd 2
                self._model = PoseDetector(num_threads=config.num_threads,
                                           min_score=config.min_score)
        except ModelUnavailableError as exc:
            raise UserError(f"the person detector cannot start: {exc}") from exc

    # ---- public API -------------------------------------------------------------------------

    def detect(self, image_bgr: np.ndarray, mode: Mode | None = None) -> list[Box]:
        """Full-body boxes in image pixels, best score first; [] when nobody is found.
        `mode` overrides the configured one for this call ("fast" or "tiled")."""
        mode = mode or self.config.mode
        if mode not in ("fast", "tiled"):
            raise ValueError(f"unknown detector mode {mode!r}")
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError("detect() needs a BGR image of shape (H, W, 3)")
        height, width = image_bgr.shape[:2]
        if height < 8 or width < 8:
            return []
        views = [(0, 0, width, height)]
        if mode == "tiled":
            views += self._tiles(width, height)
        candidates: list[_Candidate] = []
        for view in views:
            candidates += self._detect_view(image_bgr, view, is_whole=(view == views[0]))
        return self._merge(candidates)

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> "PersonDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------------

    def _tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Overlapping square tiles covering the image, as (x, y, w, h)."""
        side = int(round(min(width, height) * self.config.tile_fraction))
        if side < 32:
            return []
        step = max(1, int(side * (1.0 - self.config.tile_overlap)))

        def starts(extent: int) -> list[int]:
            if extent <= side:
                return [0]
            count = int(np.ceil((extent - side) / step)) + 1
            return [int(round(s)) for s in np.linspace(0, extent - side, count)]

        return [(x, y, side, side) for y in starts(height) for x in starts(width)]

    def _detect_view(self, image_bgr: np.ndarray, view: tuple[int, int, int, int],
                     is_whole: bool) -> list[_Candidate]:
        vx, vy, vw, vh = view
        crop = image_bgr if is_whole else image_bgr[vy:vy + vh, vx:vx + vw]
        image_h, image_w = image_bgr.shape[:2]
        found = []
        for detection in self._model.detect(crop, min_score=self.config.min_score, bgr=True):
            keypoints = detection.keypoints + (vx, vy)
            score = detection.score
            x0, y0, x1, y1 = self._body_bounds(keypoints)
            if not np.all(np.isfinite([x0, y0, x1, y1])):
                continue
            if is_whole:
                rank, threshold = score, self.config.min_score
            else:
                rank = score * _fraction_inside_view((x0, y0, x1, y1), view, image_w, image_h)
                threshold = max(self.config.min_score, self.config.tile_min_score)
            if rank < threshold:
                continue
            # Clip to the image: the estimator clips too, and a clipped box is what the
            # person actually occupies in this frame.
            cx0, cy0 = max(0.0, x0), max(0.0, y0)
            cx1, cy1 = min(float(image_w), x1), min(float(image_h), y1)
            if min(cx1 - cx0, cy1 - cy0) < self.config.min_box_side:
                continue
            hip, axis_point = keypoints[0], keypoints[1]
            region = BodyRegion.along(hip, axis_point, float(np.hypot(*(axis_point - hip))))
            found.append(_Candidate(Box(cx0, cy0, cx1 - cx0, cy1 - cy0, score, region), rank))
        return found

    def _body_bounds(self, keypoints: np.ndarray) -> tuple[float, float, float, float]:
        """Axis-aligned bounds (x0, y0, x1, y1) of the body-aligned rectangle."""
        hip, radius_point = keypoints[0], keypoints[1]
        up = radius_point - hip
        radius = float(np.hypot(*up))
        if radius < 1e-6:
            return (np.nan,) * 4
        up /= radius
        side = np.array([-up[1], up[0]])
        s = self.config.shape
        corners = np.array([hip + up * radius * a + side * radius * b
                            for a in (s.top, -s.bottom) for b in (s.half_width, -s.half_width)])
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def _merge(self, candidates: list[_Candidate]) -> list[Box]:
        """Greedy non-max suppression by rank: a candidate is dropped when it overlaps a
        better-ranked kept box (IoU), or lies mostly inside a much larger better-ranked box (a
        body part seen as a person in a tile)."""
        cfg = self.config
        kept: list[Box] = []
        for cand in sorted(candidates, key=lambda c: c.rank_score, reverse=True):
            box = cand.box
            duplicate = any(box.iou(k) > cfg.nms_iou for k in kept)
            part = any(box.area < cfg.contain_area_ratio * k.area
                       and _intersection(box, k) >= cfg.contain_fraction * box.area
                       for k in kept)
            if not (duplicate or part):
                kept.append(box)
        return sorted(kept, key=lambda b: b.score, reverse=True)


def _intersection(a: Box, b: Box) -> float:
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return max(0.0, w) * max(0.0, h)


def _fraction_inside_view(bounds: tuple[float, float, float, float],
                          view: tuple[int, int, int, int], image_w: int, image_h: int) -> float:
    """How much of a body box a tile saw. A tile edge that is also the image edge does not cut
    anybody off (the whole image is cut there too), so it counts as open."""
    x0, y0, x1, y1 = bounds
    vx, vy, vw, vh = view
    left = -np.inf if vx <= 0 else vx
    top = -np.inf if vy <= 0 else vy
    right = np.inf if vx + vw >= image_w else vx + vw
    bottom = np.inf if vy + vh >= image_h else vy + vh
    # Measure within the image only, so a box hanging off the image is not penalized.
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image_w), min(y1, image_h)
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area <= 0:
        return 0.0
    iw = max(0.0, min(x1, right) - max(x0, left))
    ih = max(0.0, min(y1, bottom) - max(y0, top))
    return float(iw * ih / area)
