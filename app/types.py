"""Small dataclasses that cross module lines. Arrays are numpy, float32 unless said."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class BodyRegion:
    """Where a body is, the way BlazePose describes it: a circle about the hip centre that holds
    the whole body, and the body's tilt (radians, 0 = upright, clockwise positive in the image).
    A crop centred on the hips says whose body is meant when people overlap; a box does not."""
    cx: float
    cy: float
    radius: float
    rotation: float = 0.0

    @classmethod
    def along(cls, hip_xy, toward_head_xy, radius: float) -> "BodyRegion":
        """The region about `hip_xy` whose "up" points at `toward_head_xy` (any point on the
        body axis above the hips), in MediaPipe's convention: clockwise angle from upright."""
        dx, dy = float(toward_head_xy[0] - hip_xy[0]), float(toward_head_xy[1] - hip_xy[1])
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return cls(float(hip_xy[0]), float(hip_xy[1]), float(radius), rotation)


@dataclass
class Box:
    """A person box in image pixels, (x, y) its top-left corner; `region`, when known, is the
    body's hip-centred region (from the detector, or from the last frame's joints)."""
    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    region: BodyRegion | None = None

    def as_xywh(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> float:
        return max(0.0, self.w) * max(0.0, self.h)

    def intersection(self, other: "Box") -> float:
        """The area both boxes cover, pixels squared."""
        w = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        h = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(0.0, w) * max(0.0, h)

    def iou(self, other: "Box") -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clipped(self, width: int, height: int) -> "Box | None":
        """The part of the box inside a width x height image (score and region kept), or None
        when nothing of it is inside."""
        x0, y0 = max(0.0, self.x), max(0.0, self.y)
        x1, y1 = min(float(width), self.x + self.w), min(float(height), self.y + self.h)
        if x1 <= x0 or y1 <= y0:
            return None
        return replace(self, x=x0, y=y0, w=x1 - x0, h=y1 - y0)


@dataclass
class Camera:
    """Pinhole intrinsics in pixels."""
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> "Camera":
        """Horizontal field of view in degrees; principal point at the image centre."""
        f = (width / 2.0) / np.tan(np.radians(fov_deg) / 2.0)
        return cls(f, f, width / 2.0, height / 2.0)

    @classmethod
    def from_focal(cls, width: int, height: int, focal: float) -> "Camera":
        return cls(focal, focal, width / 2.0, height / 2.0)


@dataclass
class Person:
    """One person in one frame, as every pose backend reports it."""
    box: Box                     # the box the pose was estimated in
    joints_2d: np.ndarray        # (J, 2) image pixels
    joints_3d: np.ndarray        # (J, 3) mm, root-relative; x right, y down, z away from camera
    confidence: np.ndarray       # (J,) in [0, 1]
    root_cam: np.ndarray | None = None  # (3,) mm, the root joint in camera coordinates
    track_id: int = -1

    @property
    def detection_score(self) -> float:
        """The person detector's score for the box this pose came from (exported as "score")."""
        return float(self.box.score)

    @property
    def pose_score(self) -> float:
        """The mean joint confidence (exported as "pose_score")."""
        return float(np.mean(self.confidence)) if self.confidence.size else 0.0


@dataclass(frozen=True)
class Floor:
    """The ground plane in camera coordinates: the camera is `height_mm` above it and pitched
    `pitch_rad` down (0: looking level, positive: looking down; no roll). Gravity ("down") in
    camera axes is (0, cos pitch, sin pitch), and a point X is on the floor when down . X =
    height_mm."""
    pitch_rad: float
    height_mm: float

    @property
    def down(self) -> np.ndarray:
        return np.array([0.0, math.cos(self.pitch_rad), math.sin(self.pitch_rad)])

    def to_level(self) -> np.ndarray:
        """3x3 rotation from camera axes to level axes (x right, y along gravity, z forward
        along the floor), in which the floor is the plane y = height_mm."""
        c, s = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


@dataclass
class Frame:
    """A frame as read from a source."""
    index: int
    time: float                 # seconds: media time for files, wall time since start for cameras
    image: np.ndarray           # BGR uint8, H x W x 3
    captured: float = 0.0       # time.monotonic() when the frame arrived from the device or decoder


@dataclass
class FrameResult:
    """What the frame loop hands to renderers and sinks."""
    frame: Frame
    people: list[Person] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)
    floor: Floor | None = None   # the floor the people stand on (app/floor.py), camera axes
    model_ms: float = 0.0      # the model's own share of stages_ms["pose"] (benchmarks)
    processed_at: float | None = None   # time.perf_counter() when processing ended (benchmarks)


class PoseBackend:
    """What the frame loop needs of a pose model; ConvNeXtPose and the BlazePose fallback both
    implement it, so the loop does not care which one runs."""

    name: str = "?"       # e.g. "ConvNeXtPose-L" or "BlazePose GHUM (fallback)"
    device: str = "cpu"
    # ms the network itself took in the last estimate(), without preparing its input or decoding
    # its output (benchmarks weigh the rest against it); None where it cannot be told apart
    # from the rest of estimate()
    last_model_ms: float | None = None

    @property
    def detects_beside(self) -> bool:
        """Whether the frame loop detects people in frame t+1 on a helper thread while this
        backend estimates frame t's poses: on an accelerator, yes (the CPU is free meanwhile);
        on the CPU only for a backend whose frame rate was measured no lower so
        (docs/benchmarks.md: the fallback's was not, ConvNeXtPose-L's fell)."""
        return not str(self.device).startswith("cpu")

    def estimate(self, image_bgr: np.ndarray, boxes: list[Box], camera: Camera) -> list[Person | None]:
        """One Person per box (None where nothing could be estimated), aligned with `boxes`."""
        raise NotImplementedError
