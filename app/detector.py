"""Person boxes: BlazePose's person detector (pose_detection.tflite from mediapipe 0.10.21, run by
LiteRT through models/blazepose) finds candidates, its landmark model (pose_landmark_full.tflite)
verifies each one before it becomes a person, and each person's box comes from its landmarks.

Two modes:
- "fast": the whole frame (one detector call, threshold 0.5 as MediaPipe's), plus one landmark
  call per candidate to verify it. For the periodic re-detection of people already tracked.
- "tiled" (a sweep): the whole frame plus overlapping square tiles at three scales (0.75, 1/2 and
  1/3 of the image's short side, half overlapping: 57 detector calls on a 768x576 frame) at a
  lower threshold (0.3), so that people 40-100 px tall are found. For frames where new people may
  have come: when nobody is tracked, periodically, on still images. Candidates on people already
  followed (`known`) are skipped before verification.

Why tiles: the detector sees its input letterboxed into 224x224 and was trained on people within a
few metres of the camera, so a 60 px pedestrian in a 768x576 frame is ~20 px to it and is missed.
A tile of a third of the frame's short side makes that pedestrian ~70 px, which it finds.

Why verification: tiles multiply the detector's false alarms (a tripod, a rock, a jacket on the
grass, fruit) and its part-of-a-body detections (a torso in a tile that cuts a large person).
Each candidate's region goes through the landmark model, whose pose-presence score says whether
a person is there (MediaPipe's own test, >= 0.5). Tile candidates must also be seen by more than
one view (real people are found by the overlapping tiles and scales around them, junk rarely
twice), lie mostly inside the tile that found them (a body cut by a tile's inner edge is a part),
be somewhat upright in their landmarks' extent, and have landmarks the model places in the image.
Measured on the annotated frames (docs/detection.md).

Why the landmarks' box: the detector describes a body as a circle about the hips (its own box is
the FACE); bounds from that circle are loose and ignore the frame's edge. The landmarks' extent is
the body itself, including parts hidden behind others (the model places them), clipped to the
image; their two auxiliary points give the hip-centred region MediaPipe tracks with, so the pose
model that follows crops on this person and not on a neighbour.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

import numpy as np

from app.errors import UserError
from app.types import BodyRegion, Box
from models.blazepose import (ModelUnavailableError, PoseDetection, PoseDetector, PoseLandmarker,
                              PoseLandmarks, Roi)

Mode = Literal["fast", "tiled"]
View = tuple[int, int, int, int]   # x, y, w, h in image pixels
REGION_SCALE = 1.25   # the pose backends crop 1.25x the body's circle (MediaPipe's)


@dataclass(frozen=True)
class DetectorConfig:
    mode: Mode = "fast"
    min_score: float = 0.5           # whole-frame detections: MediaPipe's own threshold
    tile_min_score: float = 0.3      # tile detections: lower, as every one is verified
    # Tile sides as fractions of the image's short side, coarse to fine; tiles overlap by half.
    tile_fractions: tuple[float, ...] = (0.75, 0.5, 1 / 3)
    tile_overlap: float = 0.5
    min_tile_side: int = 96          # px: finer tiles show the detector only blur
    min_presence: float = 0.5        # the landmark model's pose presence (MediaPipe's threshold)
    min_support: int = 2             # tile candidates: raw detections of the body, over all views,
    alone_min_score: float = 0.6     # unless one view alone scores this (a big body fits few tiles)
    min_inside: float = 0.7          # tile candidates: share of the body's box inside their tile
    min_aspect: float = 0.6          # tile candidates: landmarks' extent, height / width
    # Tile candidates: the landmark model's mean probability that the landmarks lie in the image.
    # Measured: 0.94-1.0 on people (0.94 on the man cut by two edges of basketball1.jpg), ~0.2 on
    # the fruit of fruits.jpg that passed the presence test.
    min_in_frame: float = 0.5
    same_body_distance: float = 0.4  # hip centres closer than this x the radius (radii within
    same_body_radius_ratio: float = 1.6  # this ratio) are one body seen by two views
    nms_iou: float = 0.4             # verified boxes overlapping more are one person
    # A box lying this much inside a better one at least 1/contain_area_ratio its size, with its
    # hips within part_hip_distance x that box's height of that body's hips, is a part of it.
    contain_fraction: float = 0.7
    contain_area_ratio: float = 0.6
    part_hip_distance: float = 0.4
    min_box_side: float = 8.0        # px
    # A box overlapping a better one by more than crowd_iou is fitted again on its own region;
    # its shoulders may move at most max_refit_shift body radii (else it spans two people).
    crowd_iou: float = 0.1
    max_refit_shift: float = 0.25
    num_threads: int | None = None   # LiteRT's threads (None: one per core, up to 4)


@dataclass
class Candidate:
    """What the detector model saw in one view, not yet verified."""
    detection: PoseDetection         # in image pixels
    whole: bool                      # found on the whole frame (else in a tile)
    inside: float                    # share of its body box inside the view that found it
    support: int = 1                 # raw detections of this body, over all views


@dataclass
class Sighting:
    """A verified person: the box from its landmarks, and the landmarks."""
    box: Box
    landmarks: PoseLandmarks
    rank: float = 0.0


class PersonDetector:
    """Every person the BlazePose detector finds and its landmark model confirms. The models
    serialize their calls, so one instance may be shared between threads. `detector_calls` and
    `landmark_calls` count model invocations (for the benchmarks)."""

    def __init__(self, config: DetectorConfig | None = None, **overrides):
        """`PersonDetector(DetectorConfig(...))` or `PersonDetector(mode="tiled")`."""
        config = replace(config or DetectorConfig(), **overrides)
        self.config = config
        self.detector_calls = 0
        self.landmark_calls = 0
        try:
            # LiteRT announces its XNNPACK delegate on fd 2: the command keeps that off screen
            # (app/command_scope.py), not this constructor, which may run beside reader threads
            self._model = PoseDetector(num_threads=config.num_threads,
                                       min_score=min(config.min_score, config.tile_min_score))
            self._landmarker = PoseLandmarker(num_threads=config.num_threads)
        except ModelUnavailableError as exc:
            raise UserError(f"the person detector cannot start: {exc}") from exc

    # ---- public API -------------------------------------------------------------------------

    def detect(self, image_bgr: np.ndarray, mode: Mode | None = None,
               known: list[Box] | None = None) -> list[Box]:
        """Full-body boxes in image pixels, best first; [] when nobody is found. `mode`
        overrides the configured one for this call. `known`: boxes of people already followed;
        candidates on them are neither verified nor returned (they are not new)."""
        return [s.box for s in self.find(image_bgr, mode, known)]

    def find(self, image_bgr: np.ndarray, mode: Mode | None = None,
             known: list[Box] | None = None) -> list[Sighting]:
        """As detect(), with each person's landmarks."""
        mode = mode or self.config.mode
        if mode not in ("fast", "tiled"):
            raise ValueError(f"unknown detector mode {mode!r}")
        _check_image(image_bgr)
        height, width = image_bgr.shape[:2]
        tiles = self.tiles(width, height) if mode == "tiled" else []
        return self._search(image_bgr, True, tiles, known or [], skip_known_whole=True)

    def search(self, image_bgr: np.ndarray, whole_frame: bool, tiles: Sequence[View] = (),
               known: Sequence[Box] = (), seen: Sequence[Candidate] = (),
               settled: Sequence[Box] = ()) -> list[Box]:
        """People in the whole frame (when `whole_frame`) and in these tiles (part of a sweep:
        app/detection_plan.py), best first. Tile finds on `known` people are not new and are
        neither verified nor returned; whole-frame finds on them are (they re-anchor tracks),
        except on `settled` people (followed on confident poses), which need no anchor.
        `seen`: candidates() already taken from this image (the whole frame, on a helper
        thread), judged together with this call's own: the answer is the same as searching
        all the views here."""
        _check_image(image_bgr)
        return [s.box for s in self._search(image_bgr, whole_frame, tiles, list(known),
                                            skip_known_whole=False, seen=seen, settled=list(settled))]

    def candidates(self, image_bgr: np.ndarray, whole_frame: bool,
                   tiles: Sequence[View] = ()) -> list[Candidate]:
        """The detector model's unverified finds in these views, for a later search(seen=...)."""
        _check_image(image_bgr)
        return self._candidates(image_bgr, whole_frame, tiles)

    def tiles(self, width: int, height: int) -> list[View]:
        """The sweep's overlapping square tiles, every scale, covering the image."""
        cfg = self.config
        views: list[View] = []
        for fraction in cfg.tile_fractions:
            side = int(round(min(width, height) * fraction))
            if side < cfg.min_tile_side:
                continue
            step = side * (1.0 - cfg.tile_overlap)

            def starts(extent: int) -> list[int]:
                if extent <= side:
                    return [0]
                count = int(np.ceil((extent - side) / step - 1e-9)) + 1
                return [int(round(s)) for s in np.linspace(0, extent - side, count)]

            views += [(x, y, side, side) for y in starts(height) for x in starts(width)]
        return views

    def close(self) -> None:
        self._model.close()
        self._landmarker.close()

    def __enter__(self) -> "PersonDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------------

    def _candidates(self, image_bgr: np.ndarray, whole_frame: bool,
                    tiles: Sequence[View]) -> list[Candidate]:
        height, width = image_bgr.shape[:2]
        if height < 8 or width < 8:
            return []
        cfg = self.config
        found = self._detect_view(image_bgr, (0, 0, width, height), cfg.min_score, True) \
            if whole_frame else []
        for view in tiles:
            found += self._detect_view(image_bgr, view, cfg.tile_min_score, False)
        return found

    def _search(self, image_bgr: np.ndarray, whole_frame: bool, tiles: Sequence[View],
                known: list[Box], skip_known_whole: bool, seen: Sequence[Candidate] = (),
                settled: Sequence[Box] = ()) -> list[Sighting]:
        cfg = self.config
        # copies: merging counts support on them, and `seen` may be judged only once
        candidates = [replace(c) for c in seen] + self._candidates(image_bgr, whole_frame, tiles)
        # finds on followed people are not new: a tile's are dropped, and a whole-frame one too
        # unless it re-anchors someone followed on uncertain poses (not settled)
        known_whole = known if skip_known_whole else list(settled)
        sightings = []
        for cand in self._one_per_body(candidates):
            if _on_known(cand.detection, known_whole if cand.whole else known):
                continue
            if not cand.whole and (cand.inside < cfg.min_inside or (
                    cand.support < cfg.min_support and cand.detection.score < cfg.alone_min_score)):
                continue
            sighting = self._verify(image_bgr, cand)
            if sighting is not None:
                sightings.append(sighting)
        # Whole-frame finds first: a tile's view of a large body is often a part of it.
        return self._suppress(image_bgr, sorted(sightings, key=lambda s: s.rank, reverse=True))

    def _detect_view(self, image_bgr: np.ndarray, view: View, min_score: float,
                     whole: bool) -> list[Candidate]:
        x, y, w, h = view
        crop = image_bgr if whole else image_bgr[y:y + h, x:x + w]
        self.detector_calls += 1
        height, width = image_bgr.shape[:2]
        found = []
        for det in self._model.detect(crop, min_score=min_score, bgr=True):
            det = PoseDetection(det.score, det.face_box + (x, y, x, y), det.keypoints + (x, y))
            if det.body_radius <= 0:
                continue
            inside = 1.0 if whole else _inside_view(det, view, width, height)
            found.append(Candidate(det, whole, inside))
        return found

    def _one_per_body(self, candidates: list[Candidate]) -> list[Candidate]:
        """Detections of one body from several views: the best one (whole frame first) stands
        for all, and counts how many saw it."""
        cfg = self.config
        kept: list[Candidate] = []
        for cand in sorted(candidates, key=lambda c: (c.whole, c.detection.score), reverse=True):
            for best in kept:
                if _same_body(best.detection, cand.detection, cfg.same_body_distance,
                              cfg.same_body_radius_ratio):
                    best.support += 1
                    best.inside = max(best.inside, cand.inside)
                    break
            else:
                kept.append(cand)
        return kept

    def _verify(self, image_bgr: np.ndarray, cand: Candidate) -> Sighting | None:
        """The landmark model on the candidate's region, upright (as the pose backends crop):
        a Sighting when it confirms a person there, else None."""
        cfg = self.config
        roi = cand.detection.body_roi()
        self.landmark_calls += 1
        landmarks = self._landmarker.estimate(image_bgr, Roi(roi.cx, roi.cy, roi.width, roi.height, 0.0),
                                              bgr=True)
        if landmarks.presence < cfg.min_presence:
            return None
        box = landmark_box(landmarks, image_bgr.shape[1], image_bgr.shape[0])
        if box is None or min(box.w, box.h) < cfg.min_box_side:
            return None
        if not cand.whole and (box.h < cfg.min_aspect * box.w
                               or float(landmarks.in_frame.mean()) < cfg.min_in_frame):
            return None
        box.score = cand.detection.score
        rank = (1.0 if cand.whole else 0.0) + cand.detection.score * landmarks.presence
        return Sighting(box, landmarks, rank)

    def _fit_is_stable(self, image_bgr: np.ndarray, landmarks: PoseLandmarks,
                       region: BodyRegion) -> bool:
        """Fit again on the region the landmarks themselves give (the one the pose backend and
        the tracker will crop on): a fit on one body stays put; one spread over two people
        slides towards one of them. Measured: shoulders move <= 0.06 body radii on people, 0.42
        on the fit spread over the blue skier and the skier behind him in group.jpg."""
        self.landmark_calls += 1
        side = 2.0 * region.radius * REGION_SCALE
        refit = self._landmarker.estimate(image_bgr, Roi(region.cx, region.cy, side, side, 0.0),
                                          bgr=True)
        shoulders = landmarks.image[[11, 12], :2].mean(axis=0)
        moved = float(np.hypot(*(refit.image[[11, 12], :2].mean(axis=0) - shoulders)))
        return refit.presence >= self.config.min_presence \
            and moved <= self.config.max_refit_shift * region.radius

    def _suppress(self, image_bgr: np.ndarray, sightings: list[Sighting]) -> list[Sighting]:
        """Best first: a box is dropped when it overlaps a kept one, when it lies inside a much
        larger kept one with its hips near that body's hips (a part of that body: a torso, a
        leg; a neighbour behind has hips of their own), or when it touches a kept one and its
        fit is not stable (spread over two people)."""
        cfg = self.config
        kept: list[Sighting] = []
        for s in sightings:
            box = s.box
            if any(box.iou(k.box) > cfg.nms_iou or _part_of(s, k, cfg) for k in kept):
                continue
            if any(box.iou(k.box) > cfg.crowd_iou for k in kept) and not (
                    box.region is not None and self._fit_is_stable(image_bgr, s.landmarks, box.region)):
                continue
            kept.append(s)
        return kept


def _check_image(image_bgr: np.ndarray) -> None:
    if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError("the person detector needs a BGR image of shape (H, W, 3)")


def _part_of(small: Sighting, large: Sighting, cfg: DetectorConfig) -> bool:
    a, b = small.box, large.box
    if not (a.area < cfg.contain_area_ratio * b.area
            and a.intersection(b) >= cfg.contain_fraction * a.area):
        return False
    hips_a = small.landmarks.image[[23, 24], :2].mean(axis=0)
    hips_b = large.landmarks.image[[23, 24], :2].mean(axis=0)
    return float(np.hypot(*(hips_a - hips_b))) < cfg.part_hip_distance * b.h


def landmark_box(landmarks: PoseLandmarks, width: int, height: int) -> Box | None:
    """The body's box from its 33 landmarks (the model places hidden ones too, so a partly
    hidden body gets its whole extent), padded because landmarks are joint centres and the eyes
    lie below the top of the head, clipped to the image. Its region is the landmarks' own
    hip-centred tracking region (MediaPipe's auxiliary landmarks)."""
    points = landmarks.image[:, :2]
    if not np.all(np.isfinite(points)):
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    size = max(x1 - x0, y1 - y0)
    x0, x1 = x0 - 0.08 * size, x1 + 0.08 * size
    y0, y1 = y0 - 0.1 * size, y1 + 0.03 * size
    # clipped here in the landmarks' float32, not by Box.clipped (float64): the boxes, and so
    # every crop after them, stay bit for bit what they were measured with
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
    if x1 <= x0 or y1 <= y0:
        return None
    centre, scale_point = landmarks.auxiliary
    radius = float(np.hypot(*(scale_point - centre)))
    region = BodyRegion.along(centre, scale_point, radius) if radius > 1.0 else None
    return Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0), 1.0, region)


def _same_body(a: PoseDetection, b: PoseDetection, distance: float, ratio: float) -> bool:
    ra, rb = a.body_radius, b.body_radius
    return (float(np.hypot(*(a.hip_centre - b.hip_centre))) < distance * max(ra, rb)
            and 1.0 / ratio < rb / ra < ratio)


def _on_known(det: PoseDetection, known: list[Box]) -> bool:
    """The detection's hip centre lies in a followed person's box and its body is about that
    box's size: the same person, not a new one beside or behind them."""
    hx, hy = det.hip_centre
    body = 2.0 * det.body_radius
    return any(box.x <= hx <= box.x + box.w and box.y <= hy <= box.y + box.h
               and 0.5 < body / max(box.h, 1.0) < 2.0 for box in known)


def _inside_view(det: PoseDetection, view: View, width: int, height: int) -> float:
    """How much of the body's box (hip centre +- radius tall, one radius wide) a tile saw. A
    tile edge on the image's edge cuts nobody (the image is cut there too): it counts as open."""
    hx, hy = det.hip_centre
    r = det.body_radius
    x0, y0 = max(hx - 0.5 * r, 0.0), max(hy - r, 0.0)
    x1, y1 = min(hx + 0.5 * r, float(width)), min(hy + r, float(height))
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area <= 0:
        return 0.0
    vx, vy, vw, vh = view
    left = -np.inf if vx <= 0 else vx
    top = -np.inf if vy <= 0 else vy
    right = np.inf if vx + vw >= width else vx + vw
    bottom = np.inf if vy + vh >= height else vy + vh
    iw = max(0.0, min(x1, right) - max(x0, left))
    ih = max(0.0, min(y1, bottom) - max(y0, top))
    return float(iw * ih / area)
