"""Pixel checks of the drawn 3D panel, shared by tests/test_render.py and tests/test_floor.py:
what the panel shows where the view says a skeleton, a floor ring or the grid lies."""
from __future__ import annotations

import math

import numpy as np

from app.orbit_view import project, to_eye_coords
from app.render3d import Panel3D, floor_ring
from app.skeleton import JOINT_INDEX, ROOT


def colour_near(img: np.ndarray, xy, colour, radius: int = 3, tol: int = 40) -> bool:
    """Is a pixel of about `colour` (BGR) within `radius` pixels of `xy`?"""
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = img[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].astype(int)
    return bool((np.abs(patch - np.array(colour)).max(axis=2) <= tol).any())


# Track colours differ from each other by 50 or more in some channel (orange and yellow), so a
# tolerance of 20 tells them apart, anti-aliased blends included.
TRACK_TOL = 20


def ring_shown(img: np.ndarray, panel: Panel3D, feet_world: np.ndarray, colour) -> float:
    """Fraction of the floor ring about `feet_world` (floor_ring, on the panel's floor, seen
    through its last view) along which the picture shows `colour`: the ring drawn under the feet.
    Others standing across it may hide part of it, so callers ask for a majority, not all."""
    ring = project(floor_ring(feet_world, panel.last_floor_y), panel.last_view)[:-1]   # closed: last = first
    return float(np.mean([colour_near(img, p, colour, radius=2, tol=TRACK_TOL) for p in ring]))


def grid_shown(img: np.ndarray, panel: Panel3D, centre_world) -> float:
    """Fraction of the floor grid's lines within 1 m of `centre_world`'s x, z (on the panel's
    floor, clear of the ring and shadow under a person standing there) along which the panel
    shows a grid colour; NaN if none of them is on the panel.

    The lines lie on the floor at world multiples of the style's grid step (so the grid does not
    slide as the view moves): where they are is known without asking the panel."""
    step, floor_y = panel.style.grid_step_mm, panel.last_floor_y
    cx, cz = centre_world[0], centre_world[2]
    along = np.arange(-1000.0, 1001.0, 50.0)            # every 5 cm of 2 m of each line
    points = [np.stack([np.full_like(along, x), np.full_like(along, floor_y), cz + along], 1)
              for x in step * np.arange(math.ceil((cx - 1000) / step), math.floor((cx + 1000) / step) + 1)]
    points += [np.stack([cx + along, np.full_like(along, floor_y), np.full_like(along, z)], 1)
               for z in step * np.arange(math.ceil((cz - 1000) / step), math.floor((cz + 1000) / step) + 1)]
    points = np.concatenate(points)
    # 400 mm: beyond the 250 mm ring (and its anti-aliasing) and the shadow of a standing person
    points = points[np.hypot(points[:, 0] - cx, points[:, 2] - cz) > 400.0]
    px = project(points, panel.last_view)
    h, w = img.shape[:2]
    px = px[np.isfinite(px).all(axis=1) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)]
    if not len(px):
        return float("nan")
    # lines are 1 px wide and anti-aliased: look one pixel around, with a tolerance for the blend
    return float(np.mean([colour_near(img, p, panel.style.grid, radius=1, tol=12)
                          or colour_near(img, p, panel.style.grid_major, radius=1, tol=12) for p in px]))


def eye_depths(panel: Panel3D, placed) -> np.ndarray:
    """Each placed person's root depth in the panel's last view (eye coordinates): smaller is nearer."""
    return to_eye_coords(np.array([pp.joints_world[ROOT] for pp in placed]), panel.last_view)[:, 2]


def crossing_pixels(img: np.ndarray, head_a: np.ndarray, head_b: np.ndarray, radius: float) -> np.ndarray:
    """(N, 3) pixels where two head rings of `radius` px about `head_a` and `head_b` cross.

    Head rings have the same pixel size for everybody, so every pixel on both rings lies on the
    perpendicular bisector of the two heads, within `radius` of both: whichever ring's colour
    shows there was drawn last. Empty if the rings are too far apart to cross."""
    half = float(np.linalg.norm(head_b - head_a)) / 2.0
    if not half < radius:                       # too far apart, or a head out of sight (NaN)
        return np.empty((0, 3), int)
    along = np.array([-(head_b - head_a)[1], (head_b - head_a)[0]]) / (2.0 * half)
    reach = math.sqrt(radius ** 2 - half ** 2)
    # sampled every half pixel or finer along the (at most 2 * radius long) stretch where they cross
    points = (head_a + head_b) / 2.0 + np.linspace(-reach, reach, 41)[:, None] * along
    points = np.unique(np.rint(points).astype(int), axis=0)
    inside = (points >= 0).all(axis=1) & (points[:, 0] < img.shape[1]) & (points[:, 1] < img.shape[0])
    return img[points[inside, 1], points[inside, 0]].astype(int)


def assert_nearer_drawn_over_farther(img: np.ndarray, panel: Panel3D, placed) -> int:
    """Wherever two people's head rings cross on the panel, the nearer one's colour (by depth in
    the view's eye coordinates) shows and the farther one's does not: nearer people are drawn
    over farther ones. Returns how many crossing pairs there were to check."""
    heads = project(np.array([pp.joints_world[JOINT_INDEX["Head"]] for pp in placed]), panel.last_view)
    # a head ring's radius: half the side of the square the panel keeps free of tags around it
    radius = panel.last_heads[0][2] / 2.0
    depth = eye_depths(panel, placed)
    pairs = 0
    for i in range(len(placed)):
        for j in range(len(placed)):
            if depth[i] >= depth[j] or placed[i].colour == placed[j].colour:
                continue
            crossing = crossing_pixels(img, heads[i], heads[j], radius)
            near = (np.abs(crossing - placed[i].colour).max(axis=1) <= TRACK_TOL).sum()
            far = (np.abs(crossing - placed[j].colour).max(axis=1) <= TRACK_TOL).sum()
            if near or far:
                pairs += 1
                assert near > 0 and far == 0, (placed[i].label, "in front of", placed[j].label, near, far)
    return pairs
