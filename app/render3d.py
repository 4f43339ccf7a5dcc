"""The 3D panel: where its orbit camera (app/orbit_view.py) looks, and the OpenCV drawing.

World coordinates are the real camera's: millimetres, x right, y down, z away from the camera, so
the floor is a plane of constant +y under the people. The panel is drawn with cv2 (anti-aliased
lines and circles) into a preallocated buffer; the parts that depend only on the view (floor grid,
camera marker, axis gizmo) are drawn once per view into a cached layer and copied in each frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from app.drawing import Colour, draw_tag, put_text, size_scale, text_size
from app.skeleton import BONES, JOINT_INDEX, ROOT, SIDE_COLOURS_BGR, bone_side, track_colour
from app.floor import sole
from app.geometry import root_positions
from app.labels import LabelLayout
from app.orbit_view import NEAR_MM, OrbitView, project, project_segments, to_eye_coords
from app.types import Floor, Person


HEAD = JOINT_INDEX["Head"]
_SHIFT = 4              # cv2 fixed-point bits: sub-pixel positions keep moving lines smooth
_ONE = 1 << _SHIFT
_PX_LIMIT = 1.0e5       # clamp projected coordinates so fixed-point values cannot overflow
FRAMING_FILL = 0.75     # the people span about this fraction of the panel's width or height
FRAMING_DEADBAND = 0.06  # framing changes smaller than this fraction of the distance are ignored
MIN_FRAMING_DISTANCE_MM = 1500.0
RING_MM = 250.0         # radius of the ring on the floor under each person
PLANTED_MM = 100.0      # an ankle this close to the lower one's height is on the floor too


def _fixed(px: np.ndarray) -> np.ndarray:
    """Pixels -> cv2 fixed-point integers (see _SHIFT); NaN stays detectable via the mask."""
    return np.rint(np.clip(np.nan_to_num(px, nan=0.0), -_PX_LIMIT, _PX_LIMIT) * _ONE).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Scene framing: where the camera looks when the user has not moved it
# ---------------------------------------------------------------------------------------------

class _Glide:
    """Follows a moving goal lazily: stays still while the goal wanders within `deadband`, then
    eases towards it until close. Keeps the view (and so the cached grid) steady while people
    merely sway, and avoids jumps when they walk."""

    def __init__(self, deadband: float, rate: float = 0.2):
        self.deadband = deadband
        self.rate = rate
        self.value: np.ndarray | None = None
        self._moving = False

    def update(self, goal, deadband: float | None = None, jump: float | None = None) -> np.ndarray:
        """`deadband` overrides the default for this step (e.g. one that scales with the view);
        a goal farther than `jump` is taken at once (a cut, or someone appearing in front)."""
        goal = np.asarray(goal, dtype=np.float64)
        band = self.deadband if deadband is None else deadband
        if self.value is None:
            self.value = goal.copy()
            return self.value
        gap = float(np.linalg.norm(goal - self.value))
        if jump is not None and gap > jump:
            self.value, self._moving = goal.copy(), False
            return self.value
        if self._moving or gap > band:
            self._moving = True
            self.value = self.value + self.rate * (goal - self.value)
            if gap < band * 0.05:
                self.value = goal.copy()
                self._moving = False
        return self.value

    def reset(self) -> None:
        self.value = None
        self._moving = False


@dataclass
class PanelStyle:
    background: Colour = (34, 30, 28)
    grid: Colour = (78, 74, 70)
    grid_major: Colour = (120, 114, 108)
    camera: Colour = (170, 170, 170)
    text: Colour = (225, 225, 225)
    shadow: Colour = (18, 16, 15)
    joint: Colour = (235, 235, 235)
    # Axis gizmo colours: pastel, so they are never mistaken for the skeleton's side colours.
    axis_x: Colour = (140, 140, 255)
    axis_y: Colour = (150, 240, 150)
    axis_z: Colour = (255, 190, 150)
    grid_step_mm: float = 500.0
    bone_thickness: int = 2
    joint_radius: int = 3
    font_scale: float = 0.45


@dataclass
class OrbitState:
    """What the user controls; the target and base distance come from the scene framing."""
    azimuth_deg: float = 0.0
    elevation_deg: float = 12.0
    zoom: float = 1.0            # multiplies the framing distance; > 1 is further away
    centred: bool = False        # True: one person root-relative at the origin

    def clamp(self) -> None:
        self.elevation_deg = float(np.clip(self.elevation_deg, -15.0, 89.0))
        self.azimuth_deg = (self.azimuth_deg + 180.0) % 360.0 - 180.0
        self.zoom = float(np.clip(self.zoom, 0.2, 6.0))


@dataclass
class _PlacedPerson:
    person: Person
    joints_world: np.ndarray      # (J, 3) mm
    colour: Colour
    label: str
    feet_world: np.ndarray | None = None   # (3,) mm, the lower foot's sole: the ring goes here


def choose_centred_person(people: list[Person]) -> Person | None:
    """The person the centred mode shows: the lowest track id (stable from frame to frame),
    else the first one."""
    if not people:
        return None
    tracked = [p for p in people if p.track_id >= 0]
    return min(tracked, key=lambda p: p.track_id) if tracked else people[0]


def place_people(people: list[Person], centred: bool, floor: Floor | None = None) -> list[_PlacedPerson]:
    """World joints per person: root-relative joints moved to the estimated root position and,
    with a floor, turned into level axes (y along gravity, the floor at y = floor.height_mm), so
    the grid lies flat and the real camera's pitch shows in its marker.

    People without a root position stand where geometry.root_positions puts them.
    """
    chosen = [choose_centred_person(people)] if centred and people else list(people)
    offsets = [np.zeros(3) for _ in chosen] if centred else root_positions(chosen)
    level = floor.to_level() if floor is not None and not centred else np.eye(3)
    down = level.T @ np.array([0.0, 1.0, 0.0])     # gravity in the people's (camera) axes
    placed = []
    for p, offset in zip(chosen, offsets):
        joints = np.asarray(p.joints_3d, dtype=np.float64)
        foot = sole(p, down)
        feet = None
        if foot is not None:
            # the ring goes on the floor under the feet that stand on it: between both when both
            # are down, under the lower one when the other is lifted (a stride, a skating push)
            feet = level @ (foot + offset)
            ankles = (joints[[JOINT_INDEX["R_Ankle"], JOINT_INDEX["L_Ankle"]]] + offset) @ level.T
            ankles = ankles[np.isfinite(ankles).all(axis=1)]
            planted = ankles[ankles[:, 1] >= ankles[:, 1].max() - PLANTED_MM] if len(ankles) else ankles
            if len(planted):
                feet[[0, 2]] = planted.mean(axis=0)[[0, 2]]
        label = f"id {p.track_id}" if p.track_id >= 0 else "id ?"
        placed.append(_PlacedPerson(p, (joints + offset) @ level.T, track_colour(max(p.track_id, 0)), label, feet))
    return placed


# ---------------------------------------------------------------------------------------------
# The panel
# ---------------------------------------------------------------------------------------------

class Panel3D:
    """Draws people as 3D skeletons seen through an orbit camera.

    `render(people, out)` draws into `out` (a (height, width, 3) uint8 view, e.g. the right part
    of the composed image) or into the panel's own buffer, and returns it.
    """

    def __init__(self, width: int = 640, height: int = 480, style: PanelStyle | None = None,
                 fov_deg: float = 50.0, min_confidence: float = 0.0):
        self.style = style or PanelStyle()
        self.fov_deg = fov_deg
        self.min_confidence = min_confidence
        self.state = OrbitState()
        self._target = _Glide(deadband=250.0)      # both scale with the distance, see _frame_scene
        self._distance = _Glide(deadband=300.0)
        self._floor = _Glide(deadband=80.0)
        self._static_key: tuple | None = None
        self._buffer = np.empty((0, 0, 3), np.uint8)
        self._static = np.empty((0, 0, 3), np.uint8)
        self.resize(width, height)
        self.last_view = self.current_view()
        self.last_floor_y = 900.0
        self.last_tags: list[tuple[int, int, int, int]] = []   # where the last frame's tags went
        self.last_heads: list[tuple[int, int, int, int]] = []  # ... and the head rings they avoid

    # -- user controls ---------------------------------------------------------------------
    def orbit(self, d_azimuth_deg: float = 0.0, d_elevation_deg: float = 0.0) -> None:
        self.state.azimuth_deg += d_azimuth_deg
        self.state.elevation_deg += d_elevation_deg
        self.state.clamp()

    def zoom_by(self, factor: float) -> None:
        self.state.zoom *= factor
        self.state.clamp()

    def toggle_centred(self) -> bool:
        self.state.centred = not self.state.centred
        self._reset_framing()       # the scene moves to other coordinates: reframe at once
        return self.state.centred

    def reset_view(self) -> None:
        self.state = OrbitState(centred=self.state.centred)
        self._reset_framing()

    def _reset_framing(self) -> None:
        self._target.reset()
        self._distance.reset()
        self._floor.reset()

    # -- geometry ----------------------------------------------------------------------------
    def resize(self, width: int, height: int) -> None:
        if self._buffer.shape[:2] != (height, width):
            self._buffer = np.empty((height, width, 3), np.uint8)
            self._static = np.empty((height, width, 3), np.uint8)
            # Filled once: assigning a colour tuple to a whole image costs ~1 ms, a copy ~0.05 ms.
            self._background = np.empty((height, width, 3), np.uint8)
            self._background[:] = self.style.background
            self._static_key = None
        self.width, self.height = width, height
        # 1 up to 480 rows, never smaller: the panel is the video's height, and its lines, dots
        # and text keep at least their 480-row sizes
        self.scale = size_scale(height, width, minimum=1.0)

    def _px(self, size: float) -> int:
        """A size given for a 480-row panel, in this panel's pixels."""
        return max(1, round(size * self.scale))

    def current_view(self, zoom: float | None = None) -> OrbitView:
        """The view the panel draws with; at `zoom` instead of the user's (1: as framed)."""
        if self._target.value is not None:
            target = self._target.value
        elif self.state.centred:
            target = np.zeros(3)                     # the centred person's root
        else:
            target = np.array([0.0, 0.0, 3000.0])    # nobody framed yet: 3 m in front of the camera
        distance = float(self._distance.value[0]) if self._distance.value is not None else 3500.0
        return OrbitView(azimuth_deg=self.state.azimuth_deg, elevation_deg=self.state.elevation_deg,
                         distance_mm=distance * (self.state.zoom if zoom is None else zoom),
                         target_mm=tuple(float(v) for v in target),
                         width=self.width, height=self.height, fov_deg=self.fov_deg)

    def _frame_scene(self, placed: list[_PlacedPerson], floor: Floor | None) -> float:
        """Update target and framing distance from the people; returns the floor's y: the
        fitted floor's when there is one (placed mode), else just under the lowest joint."""
        if placed:
            pts = np.concatenate([p.joints_world for p in placed])
            pts = pts[np.isfinite(pts).all(axis=1)]
        else:
            pts = np.empty((0, 3))
        level_floor = floor is not None and not self.state.centred
        if len(pts):
            floor_y = floor.height_mm if level_floor else pts[:, 1].max()
            # The floor rings under the feet belong in the picture too.
            feet = np.array([p.feet_world if p.feet_world is not None else p.joints_world[ROOT]
                             for p in placed])
            feet = feet[np.isfinite(feet).all(axis=1)]
            feet[:, 1] = floor_y
            pts = np.concatenate([pts] + [feet + [dx, 0.0, dz] for dx, dz in
                                          ((-RING_MM, 0), (RING_MM, 0), (0, -RING_MM), (0, RING_MM))])
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            centre = (lo + hi) / 2.0
            distance = self.fit_distance(pts, centre)
            # Deadbands relative to the view: swaying people and jittery depth estimates leave
            # the view (and the cached grid) still; walking people are followed smoothly.
            previous = float(self._distance.value[0]) if self._distance.value is not None else distance
            # A scene that moved by more than half the viewing distance would leave people behind
            # the eye while gliding: jump to it.
            self._distance.update([distance], deadband=FRAMING_DEADBAND * previous, jump=0.5 * previous)
            self._target.update(centre, deadband=FRAMING_DEADBAND * previous, jump=0.5 * previous)
            framed = self.current_view(zoom=1.0)
            pixels = project(pts, framed)
            if (to_eye_coords(pts, self.current_view())[:, 2].min() < 4.0 * NEAR_MM
                    or not (np.isfinite(pixels).all() and (pixels >= 0).all()
                            and (pixels < (framed.width, framed.height)).all())):
                # someone would be behind the eye, or outside the panel (a person who just came
                # in), while the view glides: frame them now
                self._distance.update([distance], jump=0.0)
                self._target.update(centre, jump=0.0)
            if not level_floor:
                self._floor.update([floor_y])          # y down: the lowest point has the largest y
        if level_floor:
            return float(floor.height_mm)
        glided = self._floor.value
        return float(glided[0]) if glided is not None else 900.0   # about a standing pelvis height

    def fit_distance(self, points_world: np.ndarray, target: np.ndarray) -> float:
        """The eye distance (at zoom 1, from the current viewing direction) at which the points
        span FRAMING_FILL of the panel's width or height, whichever is tighter, around `target`.

        In eye axes relative to the target a point (x, y, z) projects at f * x / (z + d); it stays
        within the fraction `fill` of the half-width when d >= |x| / (fill * tan(hfov / 2)) - z.
        """
        rot = OrbitView(self.state.azimuth_deg, self.state.elevation_deg).rotation()
        rel = (np.asarray(points_world, np.float64) - target) @ rot.T
        tan_v = math.tan(math.radians(self.fov_deg) / 2.0)
        tan_h = tan_v * self.width / max(self.height, 1)
        need_x = np.abs(rel[:, 0]) / (FRAMING_FILL * tan_h) - rel[:, 2]
        need_y = np.abs(rel[:, 1]) / (FRAMING_FILL * tan_v) - rel[:, 2]
        return max(float(need_x.max()), float(need_y.max()), MIN_FRAMING_DISTANCE_MM)

    # -- drawing -----------------------------------------------------------------------------
    def render(self, people: list[Person], out: np.ndarray | None = None,
               floor: Floor | None = None) -> np.ndarray:
        """`floor`: the floor the people stand on (app/floor.py); without one, the grid lies
        under the lowest joint."""
        if out is None:
            out = self._buffer
        h, w = out.shape[:2]
        self.resize(w, h)
        placed = place_people(people, self.state.centred, floor)
        floor_y = self._frame_scene(placed, floor)
        view = self.current_view()
        self.last_view = view
        self.last_floor_y = floor_y
        level = floor.to_level() if floor is not None and not self.state.centred else np.eye(3)

        self._ensure_static(view, floor_y, level)
        np.copyto(out, self._static)

        # Far people first, so nearer ones are drawn over them.
        self.last_heads = []
        if placed:
            roots_eye = to_eye_coords(np.array([p.joints_world[ROOT] for p in placed]), view)
            order = np.argsort(-roots_eye[:, 2])
            anchors = {i: self._draw_person(out, placed[i], view, floor_y) for i in order}
        caption = self._draw_caption(out, placed)
        self.last_caption = caption
        if placed:
            # tags after every skeleton, nearest person first: none covers the title, a head or
            # another tag
            layout = LabelLayout(w, h, [caption] + self.last_heads)
            self.last_tags = [self._draw_tag(out, placed[i], anchors[i], layout)
                              for i in order[::-1] if anchors[i] is not None]
        else:
            self.last_tags = []
        return out

    def _ensure_static(self, view: OrbitView, floor_y: float, level: np.ndarray) -> None:
        key = (view, round(floor_y, 1), self.state.centred, tuple(np.round(level, 4).ravel()))
        if key == self._static_key:
            return
        img = self._static
        np.copyto(img, self._background)
        self._draw_grid(img, view, floor_y)
        if not self.state.centred:
            self._draw_camera_marker(img, view, level)
        self._draw_axis_gizmo(img, view)
        self._static_key = key

    def _draw_grid(self, img: np.ndarray, view: OrbitView, floor_y: float) -> None:
        step = self.style.grid_step_mm
        tx, _, tz = view.target_mm
        half = max(3000.0, view.distance_mm * 0.9)
        # Lines sit on world multiples of the step so the grid does not slide as the target moves.
        xs = np.arange(math.floor((tx - half) / step), math.ceil((tx + half) / step) + 1) * step
        zs = np.arange(math.floor((tz - half) / step), math.ceil((tz + half) / step) + 1) * step
        x0, x1, z0, z1 = xs[0], xs[-1], zs[0], zs[-1]
        a = np.concatenate([np.stack([xs, np.full_like(xs, floor_y), np.full_like(xs, z0)], 1),
                            np.stack([np.full_like(zs, x0), np.full_like(zs, floor_y), zs], 1)])
        b = np.concatenate([np.stack([xs, np.full_like(xs, floor_y), np.full_like(xs, z1)], 1),
                            np.stack([np.full_like(zs, x1), np.full_like(zs, floor_y), zs], 1)])
        major = np.concatenate([np.isclose(xs % 1000.0, 0.0), np.isclose(zs % 1000.0, 0.0)])
        colours = [self.style.grid_major if m else self.style.grid for m in major]
        _draw_segments(img, a, b, view, colours, self._px(1))

    def _draw_camera_marker(self, img: np.ndarray, view: OrbitView, level: np.ndarray) -> None:
        """The real camera at the world origin, as a small pyramid looking along its +z (turned
        by `level`, camera -> world axes, so its pitch shows)."""
        s = 70.0
        apex = np.zeros(3)
        corners = np.array([[-s, -0.75 * s, 1.6 * s], [s, -0.75 * s, 1.6 * s],
                            [s, 0.75 * s, 1.6 * s], [-s, 0.75 * s, 1.6 * s]])
        corners = corners @ level.T
        a = np.concatenate([np.repeat(apex[None], 4, 0), corners])
        b = np.concatenate([corners, np.roll(corners, -1, axis=0)])
        _draw_segments(img, a, b, view, [self.style.camera] * len(a), self._px(1))
        label = project(np.array([[0.0, -0.75 * s - 60.0, 0.0]]) @ level.T, view)[0]
        if np.isfinite(label).all():
            put_text(img, "camera", (int(label[0]) - self._px(24), int(label[1])), self.style.camera,
                  0.38 * self.scale)

    def _draw_axis_gizmo(self, img: np.ndarray, view: OrbitView) -> None:
        """Orientation of the world axes in the bottom-left corner (rotation only)."""
        rot = view.rotation()
        origin = np.array([34.0 * self.scale, img.shape[0] - 34.0 * self.scale])
        length = 22.0 * self.scale
        axes = (("x", np.array([1.0, 0, 0]), self.style.axis_x),
                ("y", np.array([0, 1.0, 0]), self.style.axis_y),
                ("z", np.array([0, 0, 1.0]), self.style.axis_z))
        # Draw the axis pointing most away from the viewer first.
        for name, axis, colour in sorted(axes, key=lambda a: -(rot @ a[1])[2]):
            d = (rot @ axis)[:2]
            tip = origin + length * d
            cv2.line(img, _pt(origin), _pt(tip), colour, self._px(1), cv2.LINE_AA, _SHIFT)
            lab = origin + (length + 8.0 * self.scale) * d
            put_text(img, name, (int(lab[0]) - self._px(3), int(lab[1]) + self._px(4)), colour, 0.38 * self.scale)

    def _draw_person(self, img: np.ndarray, pp: _PlacedPerson, view: OrbitView,
                     floor_y: float) -> tuple[int, int] | None:
        """Shadow, ring, bones and joints; returns where the tag belongs (None: not seen)."""
        style = self.style
        joints = pp.joints_world
        conf = np.asarray(pp.person.confidence, dtype=np.float64)
        ok = np.isfinite(joints).all(axis=1)
        if conf.shape == (len(joints),):
            ok &= conf >= self.min_confidence
        # Shadow on the floor: the skeleton flattened onto y = floor, helps read depth.
        shadow = joints.copy()
        shadow[:, 1] = floor_y
        px = project(np.concatenate([joints, shadow]), view)
        n = len(joints)
        ok_px = ok & np.isfinite(px[:n]).all(axis=1)
        ok_shadow = ok & np.isfinite(px[n:]).all(axis=1)
        fx = _fixed(px)
        for a, b in BONES:
            if ok_shadow[a] and ok_shadow[b]:
                cv2.line(img, tuple(fx[n + a]), tuple(fx[n + b]), style.shadow, self._px(3), cv2.LINE_AA, _SHIFT)
        feet = pp.feet_world if pp.feet_world is not None else joints[ROOT]
        self._draw_floor_ring(img, feet, floor_y, view, pp.colour)
        for bone in BONES:
            a, b = bone
            if ok_px[a] and ok_px[b]:
                cv2.line(img, tuple(fx[a]), tuple(fx[b]), SIDE_COLOURS_BGR[bone_side(bone)],
                         self._px(style.bone_thickness), cv2.LINE_AA, _SHIFT)
        # Joints are neutral dots: several track colours are close to the side colours, so the
        # person's own colour goes on the head ring, the floor ring and the label instead.
        for j in np.flatnonzero(ok_px):
            cv2.circle(img, tuple(fx[j]), self._px(style.joint_radius) * _ONE, style.joint, -1, cv2.LINE_AA, _SHIFT)
        if ok_px[HEAD]:
            cv2.circle(img, tuple(fx[HEAD]), self._px(style.joint_radius + 4) * _ONE, pp.colour, self._px(2),
                       cv2.LINE_AA, _SHIFT)
            r = self._px(style.joint_radius + 4) + self._px(2)
            hx, hy = (int(round(v)) for v in px[HEAD])
            self.last_heads.append((hx - r, hy - r, 2 * r + 1, 2 * r + 1))
        # The tag goes above the highest joint (smallest y), once everybody is drawn.
        if ok_px.any():
            top = px[:n][ok_px][:, 1].argmin()
            x, y = px[:n][ok_px][top]
            return int(x), int(y) - self._px(14)
        return None

    def _draw_tag(self, img: np.ndarray, pp: _PlacedPerson, anchor: tuple[int, int],
                  layout: LabelLayout) -> tuple[int, int, int, int]:
        """The person's tag centred above `anchor`, or the nearest free place; returns it."""
        scale = self.style.font_scale * self.scale
        (tw, th), base = text_size(pp.label, scale)
        w, h = tw + 6, th + base + 4
        x, y = anchor[0] - w // 2, anchor[1] - h + base
        rect = layout.place((w, h), [(x, y), (x - w // 2 - 4, y), (x + w // 2 + 4, y)])
        draw_tag(img, pp.label, rect, pp.colour, scale)
        return rect

    def _draw_floor_ring(self, img: np.ndarray, centre: np.ndarray, floor_y: float, view: OrbitView,
                         colour: Colour) -> None:
        ring = floor_ring(centre, floor_y)
        px = project(ring, view)
        if np.isfinite(px).all():
            cv2.polylines(img, [_fixed(px)], True, colour, self._px(2), cv2.LINE_AA, _SHIFT)

    def _draw_caption(self, img: np.ndarray, placed: list[_PlacedPerson]) -> tuple[int, int, int, int]:
        """The panel's title (and "no people"); returns the title's rectangle."""
        if self.state.centred:
            who = placed[0].label if placed else "nobody"
            caption = f"3D  centred on {who} (root-relative)"
        else:
            caption = "3D  placed on one floor fitted to the feet"
        scale = 0.45 * self.scale
        org = (self._px(10), self._px(20))
        put_text(img, caption, org, self.style.text, scale)
        (tw, th), base = text_size(caption, scale)
        if not placed:
            put_text(img, "no people", (self.width // 2 - self._px(40), self.height // 2), self.style.text,
                  0.55 * self.scale)
        return (org[0] - 2, org[1] - th - 2, tw + 4, th + base + 4)


def floor_ring(centre: np.ndarray, floor_y: float, points: int = 25) -> np.ndarray:
    """(points, 3) world mm: the ring on the floor about `centre`'s x, z (a person's feet)."""
    angles = np.linspace(0.0, 2.0 * np.pi, points)
    return np.stack([centre[0] + RING_MM * np.cos(angles), np.full_like(angles, floor_y),
                     centre[2] + RING_MM * np.sin(angles)], axis=1)


def _draw_segments(img: np.ndarray, a_world: np.ndarray, b_world: np.ndarray, view: OrbitView,
                   colours: list[Colour], thickness: int = 1) -> None:
    """World segments a[i]-b[i] as thin anti-aliased lines, clipped at the near plane."""
    pa, pb, visible = project_segments(a_world, b_world, view)
    fa, fb = _fixed(pa), _fixed(pb)
    for i in np.flatnonzero(visible):
        cv2.line(img, tuple(fa[i]), tuple(fb[i]), colours[i], thickness, cv2.LINE_AA, _SHIFT)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return (int(round(p[0] * _ONE)), int(round(p[1] * _ONE)))
