"""Track ids across frames, where to look in the next frame, and per-track smoothing.

How the frame loop uses it (one Tracker per video/camera stream), with the detection plan
(app/detection_plan.py), which decides when and where to detect from the tracks:

    request = plan.request(frame.index, frame.image, tracker.tracks)
    detections = detector.search(frame.image, request.whole_frame, request.tiles, request.known,
                                 settled=request.settled) \
        if request else None
    boxes = tracker.boxes(detections)                                 # where to estimate
    people = tracker.update(backend.estimate(frame.image, boxes, camera), frame.time)

Design:
- A Track remembers its id, its next crop (from its latest 2D joints), how many frames it has
  gone unseen, and its own One Euro filters. Filters live in the track, so smoothing can never
  mix two people.
- Frames with detections: detections are matched to tracks by IoU with the tracks' crops
  (greedy, best IoU first). A matched track is re-anchored on its detection box (stops a crop drifting). A track
  the detector missed keeps its own crop (the detector misses people often, see detector.py);
  an unmatched detection becomes a new person if the backend finds a pose in it.
- Other frames: each live track's crop = bounding box of its confident 2D joints from the
  previous frame, expanded by a margin.
- A track whose pose came back None, with low mean confidence, or with a degenerate crop is
  "lost": no crop next frame (the plan then asks for a whole-frame detection), and a detection
  overlapping its last crop revives it under the same id. Tracks unseen for more than `max_missed` frames are retired.
- Two tracks whose crops overlap heavily are one person estimated twice: the younger one goes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import numpy as np

from app.smoothing import JOINTS_MM, JOINTS_PX, ROOT_MM, OneEuroFilter, OneEuroParams
from app.skeleton import JOINT_INDEX, ROOT
from app.types import BodyRegion, Box, Person


@dataclass(frozen=True)
class TrackerConfig:
    match_iou: float = 0.3            # detection <-> track crop IoU to call them one person
    duplicate_iou: float = 0.6        # two tracks' crops overlapping this much: same person
    max_missed: int = 5               # frames a track may go unseen before it is retired
    min_mean_confidence: float = 0.3  # below this a pose is uncertain: the crop is kept as it was
    max_uncertain: int = 5            # uncertain poses in a row before the track counts as lost
    joint_confidence: float = 0.3     # joints at least this confident define the next crop
    min_crop_joints: int = 4
    crop_margin: float = 0.15         # fraction of the joints' box height added on each side
    min_crop_side: float = 16.0       # px
    smoothing: bool = True            # on for video/camera; off for still images
    smooth_2d: OneEuroParams = JOINTS_PX
    smooth_3d: OneEuroParams = JOINTS_MM
    smooth_root: OneEuroParams = ROOT_MM


@dataclass
class Track:
    track_id: int
    crop: Box | None                  # where to look next frame; None while lost
    last_box: Box                     # last box it was estimated in (for re-matching)
    missed: int = 0                   # consecutive frames without a usable pose
    uncertain: int = 0                # consecutive frames with a low-confidence pose
    age: int = 0                      # frames with a usable pose
    filter_2d: OneEuroFilter | None = None
    filter_3d: OneEuroFilter | None = None
    filter_root: OneEuroFilter | None = None

    @property
    def lost(self) -> bool:
        return self.crop is None


@dataclass
class _Slot:
    """One box handed to the backend this frame, and the track it belongs to (None: new)."""
    box: Box
    track: Track | None


class Tracker:
    def __init__(self, config: TrackerConfig | None = None, **overrides):
        """`Tracker(TrackerConfig(...))` or `Tracker(max_missed=3, smoothing=False)`."""
        self.config = dataclasses.replace(config or TrackerConfig(), **overrides)
        self.tracks: list[Track] = []   # read by the detection plan; changed only here
        # The boxes handed out for the current frame, set by boxes(), consumed by update().
        self._slots: list[_Slot] = []
        self._next_id = 0

    # ---- where to look ----------------------------------------------------------------------

    def boxes(self, detections: list[Box] | None = None) -> list[Box]:
        """The boxes to estimate poses in this frame: with fresh `detections`, each matched to
        the track it re-anchors or left as a new person, plus the followed people the detector
        missed; without (None), the followed people's crops. update() takes the poses found in
        them, in this order."""
        if detections is None:
            self._slots = [_Slot(t.crop, t) for t in self.tracks if t.crop is not None]
            return [s.box for s in self._slots]
        anchors = [(t, t.crop if t.crop is not None else t.last_box) for t in self.tracks]
        pairs = sorted(
            ((anchor.iou(det), ti, di)
             for ti, (_, anchor) in enumerate(anchors) for di, det in enumerate(detections)),
            reverse=True)
        track_of_detection: dict[int, Track] = {}
        matched_tracks: set[int] = set()
        for iou, ti, di in pairs:
            if iou < self.config.match_iou:
                break
            if ti in matched_tracks or di in track_of_detection:
                continue
            matched_tracks.add(ti)
            track_of_detection[di] = anchors[ti][0]
            anchors[ti][0].uncertain = 0   # a fresh detection vouches for the track again
        self._slots = [_Slot(det, track_of_detection.get(di)) for di, det in enumerate(detections)]
        # Live tracks the detector missed keep following their own crops.
        self._slots += [_Slot(t.crop, t) for ti, t in enumerate(self.tracks)
                        if ti not in matched_tracks and t.crop is not None]
        return [s.box for s in self._slots]

    # ---- what was seen ----------------------------------------------------------------------

    def update(self, people: list[Person | None], time: float) -> list[Person]:
        """Give each estimated person its track id and smoothed joints. `people` must be aligned
        with the boxes last returned by boxes(); `time` is in seconds (media time or wall
        time). Returns the people (copies) that were found, best-established tracks first."""
        if len(people) != len(self._slots):
            raise ValueError(f"got {len(people)} people for {len(self._slots)} boxes")
        seen: set[int] = set()
        out: list[Person] = []
        for slot, person in zip(self._slots, people):
            track = slot.track
            if track is not None and track.track_id in seen:
                track = None   # cannot happen through the public API; never merge two people
            if person is None:   # the box was empty after clipping: nothing was estimated
                if track is not None:
                    self._mark_lost(track, slot.box)
                    seen.add(track.track_id)
                continue
            confident = person.pose_score >= self.config.min_mean_confidence
            crop = self._crop_from_joints(person) if confident else None
            if track is None:
                track = self._new_track(person.box)
            seen.add(track.track_id)
            track.last_box = person.box
            if crop is not None:
                track.crop, track.missed, track.uncertain = crop, 0, 0
            else:
                # An uncertain pose (occlusion, motion blur, a weak model) says little about where
                # the person went: look in the same place again, and after a few such frames in
                # a row ask the detector. The person is still reported, with their confidences.
                track.uncertain += 1
                if track.uncertain > self.config.max_uncertain:
                    self._mark_lost(track, person.box)
                else:
                    track.crop, track.missed = person.box, 0
            track.age += 1
            out.append(self._smoothed(track, person, time))
        for track in self.tracks:
            if track.track_id not in seen:
                track.missed += 1
        self._drop_duplicates(out)
        self.tracks = [t for t in self.tracks if t.missed <= self.config.max_missed]
        self._slots = []
        age = {t.track_id: t.age for t in self.tracks}
        return sorted(out, key=lambda p: (-age.get(p.track_id, 0), p.track_id))

    # ---- internals --------------------------------------------------------------------------

    def _new_track(self, box: Box) -> Track:
        track = Track(track_id=self._next_id, crop=None, last_box=box)
        self._next_id += 1
        if self.config.smoothing:
            track.filter_2d = OneEuroFilter(self.config.smooth_2d)
            track.filter_3d = OneEuroFilter(self.config.smooth_3d)
            track.filter_root = OneEuroFilter(self.config.smooth_root)
        self.tracks.append(track)
        return track

    @staticmethod
    def _mark_lost(track: Track, box: Box) -> None:
        track.crop = None
        track.last_box = box
        track.missed += 1

    def _crop_from_joints(self, person: Person) -> Box | None:
        cfg = self.config
        joints = np.asarray(person.joints_2d, dtype=np.float64)
        good = (np.asarray(person.confidence) >= cfg.joint_confidence) & np.all(
            np.isfinite(joints), axis=1)
        if good.sum() < cfg.min_crop_joints:
            return None
        (x0, y0), (x1, y1) = joints[good].min(axis=0), joints[good].max(axis=0)
        # Joints are centres (ankles, wrists, head top), not the body's outline: pad by a
        # fraction of the body's size, the same on every side so the crop stays centred.
        pad = cfg.crop_margin * max(x1 - x0, y1 - y0)
        x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
        if min(x1 - x0, y1 - y0) < cfg.min_crop_side * 0.5 or max(x1 - x0, y1 - y0) < cfg.min_crop_side:
            return None
        return Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0), person.box.score,
                   _region_from_joints(joints, good))

    def _smoothed(self, track: Track, person: Person, time: float) -> Person:
        joints_2d, joints_3d, root = person.joints_2d, person.joints_3d, person.root_cam
        if self.config.smoothing and track.filter_2d is not None:
            joints_2d = track.filter_2d(joints_2d, time).astype(np.float32)
            joints_3d = track.filter_3d(joints_3d, time).astype(np.float32)
            if root is not None:
                root = track.filter_root(root, time).astype(np.float32)
        return dataclasses.replace(person, joints_2d=joints_2d, joints_3d=joints_3d,
                                   root_cam=root, track_id=track.track_id)

    def _drop_duplicates(self, people: list[Person]) -> None:
        """Two live tracks on one person (a detection that did not match a drifting crop): keep
        the older track, retire the younger."""
        live = sorted((t for t in self.tracks if t.crop is not None), key=lambda t: t.track_id)
        for i, older in enumerate(live):
            for younger in live[i + 1:]:
                if older.crop is not None and younger.crop is not None and \
                        older.crop.iou(younger.crop) > self.config.duplicate_iou:
                    younger.missed = self.config.max_missed + 1
                    younger.crop = None
        retired = {t.track_id for t in self.tracks if t.missed > self.config.max_missed}
        people[:] = [p for p in people if p.track_id not in retired]


def _region_from_joints(joints: np.ndarray, good: np.ndarray) -> BodyRegion | None:
    """The body's hip-centred region from last frame's joints, as the detector would give it:
    up along pelvis -> neck, radius the farthest trusted joint from the pelvis (on real photos
    the detector's radius is 0.8-1.4x that, about 1.0x typically). None without pelvis or neck."""
    neck = JOINT_INDEX["Neck"]
    if not (good[ROOT] and good[neck]):
        return None
    pelvis = joints[ROOT]
    radius = float(np.linalg.norm(joints[good] - pelvis, axis=1).max()) * 1.05
    if radius < 1.0:
        return None
    return BodyRegion.along(pelvis, joints[neck], radius)
