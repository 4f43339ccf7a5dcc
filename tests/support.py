"""What the tests share, in one place: where things are, videos made from the photos in
tests/data, the annotated boxes, a fake camera, and a synthetic standing person. Plain code;
pytest fixtures are in conftest.py. The benchmarks use it too (`from tests.support import ...`)."""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from app.skeleton import JOINT_INDEX, NUM_JOINTS
from app.types import Box, Camera, Person

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
# The conformance data for XS and L is large and lives beside the project, not in it.
SHARED = Path(os.environ.get("CONVNEXTPOSE_SHARED", ROOT.parent / "shared"))
SHARED_CONVNEXTPOSE = SHARED / "convnextpose"


# ---- media ----

def video_frames(path) -> Iterator[np.ndarray]:
    """Every frame of a video that decodes, in order (BGR)."""
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()


def decoded_frames(path) -> int:
    """How many frames of a written video really decode (what a player would show)."""
    return sum(1 for _ in video_frames(path))


def video_properties(path) -> tuple[int, tuple[int, int], float]:
    """(frames that decode, (width, height), frames per second) of a written video."""
    capture = cv2.VideoCapture(str(path))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return decoded_frames(path), size, fps


def write_video(path: Path, frames: list, fps: float = 10.0, fourcc: str = "mp4v") -> Path:
    """`frames` (BGR images of one size) as a video file."""
    h, w = frames[0].shape[:2]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return Path(path)


def drifting_clip(path: Path, photo: Path = DATA / "group.jpg", frames: int = 12, fps: float = 20.0,
                  width: int | None = None, mirrored: bool = False,
                  drift: tuple[float, float, float, float] = (4, 3, 2, 4)) -> Path:
    """A clip from a real photo (optionally shrunk to `width`, or mirrored), the camera drifting
    a few pixels per frame: x = a sin(i / p), y = b cos(i / q) for drift = (a, p, b, q)."""
    image = cv2.imread(str(photo))
    if mirrored:
        image = np.ascontiguousarray(image[:, ::-1])
    if width is not None:
        height = int(round(image.shape[0] * width / image.shape[1])) // 2 * 2
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    a, p, b, q = drift
    shots = []
    for i in range(frames):
        shift = np.float32([[1, 0, a * np.sin(i / p)], [0, 1, b * np.cos(i / q)]])
        shots.append(cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    return write_video(path, shots, fps)


def group_boxes() -> dict:
    """tests/data/boxes.json: the people of group.jpg (and other photos), annotated by hand."""
    return json.loads((DATA / "boxes.json").read_text())


# ---- a video and a camera ----

class BlankVideo:
    """A file source of `frames` black 64x48 frames, each taking `delay_s` to decode."""

    is_live = False
    is_still = False
    fps = 30.0
    frame_count = None

    def __init__(self, frames: int = 100, delay_s: float = 0.0):
        self.frames, self.delay_s = frames, delay_s

    def __iter__(self):
        from app.types import Frame
        for i in range(self.frames):
            time.sleep(self.delay_s)
            yield Frame(i, i / self.fps, np.zeros((48, 64, 3), np.uint8), time.monotonic())

    def frame_ready(self) -> bool:
        return False

    def close(self):
        pass


class FakeCamera:
    """cv2.VideoCapture's reading interface as a camera driver behaves: a frame every `period`
    seconds (default 1 / fps) in real time, `count` of them (None: forever), then read() fails.
    Each frame is `image` (default a black 64x48 one) with its number (from `first` + 1) painted
    into pixel (0, 0), so a consumer can tell frames apart (`frame_number`)."""

    def __init__(self, image: np.ndarray | None = None, fps: float = 25.0, count: int | None = None,
                 period: float | None = None, first_delay: float = 0.0, first: int = 0):
        self.image = image if image is not None else np.zeros((48, 64, 3), np.uint8)
        self.fps, self.count, self.first_delay, self.first = fps, count, first_delay, first
        self.period = period if period is not None else 1.0 / fps
        self.delivered = 0
        self.released = threading.Event()
        self._next_due: float | None = None

    def read(self):
        if self._next_due is None:
            if self.first_delay:
                time.sleep(self.first_delay)
            self._next_due = time.monotonic()
        if self.count is not None and self.delivered >= self.count:
            return False, None
        self._next_due += self.period
        time.sleep(max(0.0, self._next_due - time.monotonic()))
        self.delivered += 1
        image = self.image.copy()
        number = self.first + self.delivered
        image[0, 0] = (number % 256, number // 256, 0)
        return True, image

    def get(self, prop):
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released.set()


def frame_number(image: np.ndarray) -> int:
    """The number FakeCamera painted into a frame."""
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])


# ---- a synthetic person ----

STANDING_MM = {
    "Pelvis": (0, 0, 0), "R_Hip": (-125, 10, 0), "R_Knee": (-115, 450, 15), "R_Ankle": (-110, 870, 50),
    "L_Hip": (125, 10, 0), "L_Knee": (115, 450, 15), "L_Ankle": (110, 870, 50),
    "Torso": (0, -230, -10), "Neck": (0, -490, -20), "Nose": (0, -590, -100), "Head": (0, -760, -30),
    "L_Shoulder": (190, -450, 0), "L_Elbow": (225, -170, 10), "L_Wrist": (240, 70, -30),
    "R_Shoulder": (-190, -450, 0), "R_Elbow": (-225, -170, 10), "R_Wrist": (-240, 70, -30),
    "Thorax": (0, -420, -10),
}
STANDING = np.array([STANDING_MM[name] for name in sorted(STANDING_MM, key=JOINT_INDEX.get)], np.float32)

CAMERA = Camera.from_fov(640, 480, 60.0)


def standing_person(root_mm=(0.0, 200.0, 3000.0), track_id: int = 1, yaw_deg: float = 0.0) -> Person:
    """A realistic standing person at `root_mm` (camera coords), with consistent 2D joints
    (projected through a 60-degree camera) and box."""
    yaw = math.radians(yaw_deg)
    rot = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    joints = (STANDING @ rot.T).astype(np.float32)
    cam = joints + np.asarray(root_mm, np.float32)
    uv = np.stack([CAMERA.fx * cam[:, 0] / cam[:, 2] + CAMERA.cx, CAMERA.fy * cam[:, 1] / cam[:, 2] + CAMERA.cy], 1)
    lo, hi = uv.min(0), uv.max(0)
    box = Box(float(lo[0] - 20), float(lo[1] - 30), float(hi[0] - lo[0] + 40), float(hi[1] - lo[1] + 50), 0.93)
    return Person(box, uv.astype(np.float32), joints, np.full(NUM_JOINTS, 0.9, np.float32),
                  np.asarray(root_mm, np.float32), track_id)
