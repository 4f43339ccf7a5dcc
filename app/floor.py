"""One floor for everybody: the ground plane fitted to the people's feet, and each person moved
along their line of sight until their feet stand on it.

Every person's distance is an estimate of its own (from their size in the image), so people drawn
where those estimates put them hang at different heights. Feet seen in the image say more: the
floor is a plane through them, and the camera's height and pitch follow from it. A person is then
slid along the ray from the camera through their pelvis (which keeps them exactly where they are
in the picture) until their lower foot touches the floor; a person whose feet are out of view is
stood on it by the feet the pose model predicts for them. Over a video the floor moves slowly, so
it stays steady while people come and go.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .skeleton import JOINT_INDEX
from .types import Floor, Person

FEET = (JOINT_INDEX["R_Ankle"], JOINT_INDEX["L_Ankle"])
SOLE_BELOW_ANKLE_MM = 80.0       # the ankle joint sits about this far above the sole
MIN_FOOT_CONFIDENCE = 0.5        # an ankle under this is not "seen"
PITCH_LIMITS_DEG = (-30.0, 60.0)  # a camera looking up a little to steeply down
PITCH_PRIOR_WEIGHT = 0.1         # a level camera is worth one person's depth 5 % off at 13
                                 # degrees of tilt: one person cannot tilt the floor, two can
TYPICAL_HEIGHT_MM = 1600.0       # a camera held or mounted at about eye level ...
HEIGHT_PRIOR_WEIGHT = 0.01       # ... a weak pull, which matters only when the feet leave the
                                 # pitch open (one person) and a level camera would put them
                                 # at an impossible height (feet above the lens)
OUTLIER_LOG = 0.2                # feet whose depth is off by more than ~20 % count less
STEADY_RATE = 0.15               # share of a new frame's fit taken into the floor (video)
MIN_RAY_SCALE, MAX_RAY_SCALE = 0.33, 3.0   # beyond these, a person is lifted or lowered instead


def sole(person: Person, down: np.ndarray) -> np.ndarray | None:
    """The lower foot's sole, root-relative, mm: the ankle lowest along `down`, one sole below."""
    ankles = np.asarray(person.joints_3d, np.float64)[list(FEET)]
    ankles = ankles[np.isfinite(ankles).all(axis=1)]
    if not len(ankles):
        return None
    return ankles[int(np.argmax(ankles @ down))] + SOLE_BELOW_ANKLE_MM * down


def feet_seen(person: Person, image_size: tuple[int, int]) -> bool:
    """True when at least one ankle is confidently inside the image."""
    width, height = image_size
    for j in FEET:
        x, y = (float(v) for v in person.joints_2d[j][:2])
        conf = float(person.confidence[j]) if np.size(person.confidence) > j else 0.0
        if conf >= MIN_FOOT_CONFIDENCE and 0.0 <= x < width and 0.0 <= y < height:
            return True
    return False


def fit_floor(points: np.ndarray, prior_pitch_rad: float = 0.0,
              prior_weight: float = PITCH_PRIOR_WEIGHT) -> Floor | None:
    """The plane (no roll) through foot points in camera mm, pulled towards `prior_pitch_rad`.

    With down = (0, cos p, sin p), a foot X is h_i = X . down below the camera. Depth estimates
    are wrong by a factor (a person's size in the image), which moves a foot along its line of
    sight and scales its h_i: so for each pitch p on a 0.1 degree grid the floor height is the
    geometric mean of the h_i and the cost the spread of log h_i about it, plus the prior
    `prior_weight` sin^2(p - p0) (one person's depth off by |sin(p - p0)|, times the weight)
    and a weak pull of the height towards TYPICAL_HEIGHT_MM.
    A search, not a solve: no sign trouble, and the pitch limits are the grid's ends. Feet far
    off the first fit count less in a second.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return None
    pitches = np.radians(np.arange(PITCH_LIMITS_DEG[0], PITCH_LIMITS_DEG[1] + 1e-9, 0.1))
    heights = np.outer(np.cos(pitches), pts[:, 1]) + np.outer(np.sin(pitches), pts[:, 2])  # (P, N)
    usable = (heights > 1.0).all(axis=1)          # every foot below the camera at this pitch
    if not usable.any():
        return None
    logs = np.log(np.where(usable[:, None], heights, 1.0))
    prior = prior_weight * np.sin(pitches - prior_pitch_rad) ** 2
    log_typical = math.log(TYPICAL_HEIGHT_MM)
    weights = np.ones(len(pts))
    best = 0
    for _ in range(2):
        log_height = logs @ weights / weights.sum()
        spread = ((logs - log_height[:, None]) ** 2) @ weights
        cost = spread + prior + HEIGHT_PRIOR_WEIGHT * (log_height - log_typical) ** 2
        best = int(np.argmin(np.where(usable, cost, np.inf)))
        weights = 1.0 / (1.0 + ((logs[best] - log_height[best]) / OUTLIER_LOG) ** 2)
    return Floor(float(pitches[best]), float(np.exp(logs[best] @ weights / weights.sum())))


def stand_on(person: Person, floor: Floor) -> Person:
    """The person moved so that their lower foot's sole is on the floor: along their line of
    sight when that is a sane move, else straight up or down."""
    if person.root_cam is None:
        return person
    down = floor.down
    root = np.asarray(person.root_cam, np.float64)
    foot = sole(person, down)
    if foot is None:
        return person
    along = float(down @ root)
    scale = (floor.height_mm - float(down @ foot)) / along if along > 1e-6 else -1.0
    if MIN_RAY_SCALE <= scale <= MAX_RAY_SCALE:
        placed = root * scale
    else:
        placed = root + (floor.height_mm - float(down @ (root + foot))) * down
    return dataclasses.replace(person, root_cam=placed.astype(np.float32))


class FloorFitter:
    """Fits the floor frame by frame and stands everybody on it.

    `steady`: frames are consecutive (a video, a camera), so the floor glides towards each new
    fit instead of jumping; off for unrelated photos, each of which gets its own floor."""

    def __init__(self, steady: bool = True):
        self.steady = steady
        self.floor: Floor | None = None

    def reset(self) -> None:
        self.floor = None

    def update(self, people: list[Person], image_size: tuple[int, int]) -> tuple[list[Person], Floor | None]:
        """(the people standing on the floor, the floor) for one frame."""
        if not self.steady:
            self.floor = None
        placed = [p for p in people if p.root_cam is not None]
        if placed:
            prior = self.floor.pitch_rad if self.floor is not None else 0.0
            down = self.floor.down if self.floor is not None else np.array([0.0, 1.0, 0.0])
            seen = [p for p in placed if feet_seen(p, image_size)] or placed
            feet = [np.asarray(p.root_cam, np.float64) + f for p in seen
                    if (f := sole(p, down)) is not None]
            fit = fit_floor(np.array(feet), prior) if feet else None
            if fit is not None:
                self.floor = fit if self.floor is None else _glide(self.floor, fit, STEADY_RATE)
        if self.floor is None:
            return list(people), None
        return [stand_on(p, self.floor) for p in people], self.floor


def _glide(old: Floor, new: Floor, rate: float) -> Floor:
    pitch = old.pitch_rad + rate * (new.pitch_rad - old.pitch_rad)
    height = old.height_mm * (new.height_mm / old.height_mm) ** rate
    return Floor(pitch, height)
