"""The 3D panel's virtual camera: an orbit view around a target, and numpy perspective
projection into its pixels (pure functions: everything the tests check by hand).

World coordinates are the real camera's: millimetres, x right, y down, z away from the camera."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEAR_MM = 50.0          # points closer than this to the eye (or behind it) are not drawn


@dataclass(frozen=True)
class OrbitView:
    """A virtual pinhole camera orbiting `target_mm` at `distance_mm`.

    azimuth 0, elevation 0 puts the eye straight in front of the target on the real camera's
    side, looking along +z: the panel then shows the people as the video does (not mirrored).
    Positive elevation raises the eye (towards -y) so it looks down on the floor.
    """
    azimuth_deg: float = 0.0
    elevation_deg: float = 12.0
    distance_mm: float = 3500.0
    target_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    width: int = 640
    height: int = 480
    fov_deg: float = 50.0   # vertical field of view

    @property
    def focal_px(self) -> float:
        return (self.height / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)

    @property
    def centre_px(self) -> tuple[float, float]:
        return (self.width / 2.0, self.height / 2.0)

    def rotation(self) -> np.ndarray:
        """3x3 matrix whose rows are the eye's right, down and forward axes in world coords."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        # Unit vector from the target to the eye.
        to_eye = np.array([math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)])
        forward = -to_eye
        world_up = np.array([0.0, -1.0, 0.0])
        right = np.cross(forward, world_up)
        right /= np.linalg.norm(right)          # elevation is clamped below 90, so never zero
        down = np.cross(forward, right)
        return np.stack([right, down, forward])

    def eye(self) -> np.ndarray:
        return np.asarray(self.target_mm, float) - self.distance_mm * self.rotation()[2]


def to_eye_coords(points_world: np.ndarray, view: OrbitView) -> np.ndarray:
    """(N, 3) world mm -> (N, 3) eye coordinates (x right, y down, z depth along the view)."""
    pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    return (pts - view.eye()) @ view.rotation().T


def project_eye(eye_pts: np.ndarray, view: OrbitView) -> np.ndarray:
    """(N, 3) eye coordinates -> (N, 2) pixels; NaN for points nearer than NEAR_MM."""
    f = view.focal_px
    cx, cy = view.centre_px
    z = eye_pts[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = np.where(z >= NEAR_MM, 1.0 / z, np.nan)
    return np.stack([cx + f * eye_pts[:, 0] * inv_z, cy + f * eye_pts[:, 1] * inv_z], axis=1)


def project(points_world: np.ndarray, view: OrbitView) -> np.ndarray:
    """(N, 3) world points in mm -> (N, 2) panel pixels (x right, y down), perspective.

    Points behind the eye or closer than NEAR_MM come back as NaN.
    """
    return project_eye(to_eye_coords(points_world, view), view)


def project_segments(a_world: np.ndarray, b_world: np.ndarray, view: OrbitView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project segments, clipping them at the near plane so lines that pass beside or behind
    the eye (a grid seen from low down, a zoomed-in view) are cut instead of dropped or flipped.

    Returns (pa, pb, visible): pixels of the clipped ends and a mask of segments left to draw.
    """
    ea, eb = to_eye_coords(a_world, view), to_eye_coords(b_world, view)
    za, zb = ea[:, 2:3], eb[:, 2:3]
    visible = (za[:, 0] >= NEAR_MM) | (zb[:, 0] >= NEAR_MM)
    # Cut a hair in front of the near plane, so rounding cannot put the cut end behind it.
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((NEAR_MM * 1.001 - za) / (zb - za), 0.0, 1.0)
    cut = ea + t * (eb - ea)
    # Only one end can be cut on a visible segment, and it moves to where the line meets the plane.
    ea_cut = np.where(za < NEAR_MM, cut, ea)
    eb_cut = np.where(zb < NEAR_MM, cut, eb)
    pa, pb = project_eye(ea_cut, view), project_eye(eb_cut, view)
    visible &= np.isfinite(pa).all(axis=1) & np.isfinite(pb).all(axis=1)
    return pa, pb, visible
