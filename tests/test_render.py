"""Drawing: projection by hand, colours where the skeleton projects, composition, HUD, plots."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from app.orbit_view import NEAR_MM, OrbitView, project, project_segments
from app.render2d import draw_people, hud_lines
from app.render3d import Panel3D, place_people
from app.skeleton import BONES, JOINT_INDEX, SIDE_COLOURS_BGR, bone_side
from app.types import Frame, FrameResult
from app.view import SceneInfo, SceneRenderer
from panel_checks import (assert_nearer_drawn_over_farther, colour_near, eye_depths,
                          grid_shown, ring_shown)
from support import standing_person

# A standing adult of about 1.75 m, facing the camera, in mm relative to the pelvis:
# x right (so the person's right side has x < 0), y down, z away from the camera.
# --- projection ------------------------------------------------------------------------------

def test_point_on_optical_axis_lands_at_panel_centre():
    view = OrbitView(azimuth_deg=0, elevation_deg=0, distance_mm=3000, target_mm=(0, 0, 5000), width=640, height=480)
    assert np.allclose(project(np.array([[0, 0, 5000.0]]), view), [[320, 240]])
    assert np.allclose(project(np.array([[0, 0, 9000.0]]), view), [[320, 240]])


def test_point_one_metre_right_lands_at_focal_offset():
    view = OrbitView(azimuth_deg=0, elevation_deg=0, distance_mm=4000, target_mm=(0, 0, 0),
                     width=640, height=480, fov_deg=60)
    f = 240 / math.tan(math.radians(30))          # vertical fov 60 over 480 rows: 415.69 px
    assert view.focal_px == pytest.approx(f)
    # Eye at z = -4000 looking along +z: 1 m right, 4 m deep -> u = 320 + f / 4, not mirrored.
    px = project(np.array([[1000.0, 0, 0], [0, 500.0, 0], [0, 0, -5000.0]]), view)
    assert px[0] == pytest.approx([320 + f * 1000 / 4000, 240])
    assert px[1] == pytest.approx([320, 240 + f * 500 / 4000])     # y down stays down
    assert np.isnan(px[2]).all()                                      # behind the eye


def test_orbit_azimuth_and_elevation_by_hand():
    # Azimuth 90: the eye sits on the +x side looking along -x; a point at +z (away from the
    # real camera) is then on the eye's right.
    side = OrbitView(azimuth_deg=90, elevation_deg=0, distance_mm=2000, target_mm=(0, 0, 0), width=640, height=480)
    assert np.allclose(side.eye(), [2000, 0, 0])
    u, v = project(np.array([[0, 0, 500.0]]), side)[0]
    assert u == pytest.approx(320 + side.focal_px * 500 / 2000) and v == pytest.approx(240)
    # Elevation 90 would be degenerate; 60 puts the eye above (y < 0) and the floor point under
    # the target appears below the centre.
    high = OrbitView(azimuth_deg=0, elevation_deg=60, distance_mm=2000, target_mm=(0, 0, 0), width=640, height=480)
    assert high.eye()[1] == pytest.approx(-2000 * math.sin(math.radians(60)))
    assert project(np.array([[0, 900.0, 0]]), high)[0][1] > 240


def test_segments_are_clipped_at_the_near_plane_not_dropped():
    view = OrbitView(azimuth_deg=0, elevation_deg=0, distance_mm=1000, target_mm=(0, 0, 0), width=640, height=480)
    a = np.array([[500.0, 0, -3000]])        # behind the eye (eye at z = -1000)
    b = np.array([[500.0, 0, 1000]])
    pa, pb, visible = project_segments(a, b, view)
    assert visible[0] and np.isfinite(pa).all()
    assert pb[0] == pytest.approx(project(b, view)[0])
    # The cut end sits on the near plane, far to the right, where the line leaves the view.
    assert pa[0][0] == pytest.approx(320 + view.focal_px * 500 / NEAR_MM, rel=1e-2)


# --- 3D panel ----------------------------------------------------------------------------------

def _bone_midpoints(view: OrbitView, world: np.ndarray):
    px = project(world, view)
    for bone in BONES:
        a, b = bone
        yield bone, (px[a] + px[b]) / 2.0


def test_panel_paints_side_colours_at_projected_bones():
    people = [standing_person((-900, 200, 3500), 1), standing_person((0, 150, 3000), 2),
              standing_person((1000, 250, 4200), 3, yaw_deg=30)]
    panel = Panel3D(640, 480)
    img = panel.render(people)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    view = panel.last_view
    placed = place_people(people, centred=False)
    for pp in placed:
        for bone, mid in _bone_midpoints(view, pp.joints_world):
            assert colour_near(img, mid, SIDE_COLOURS_BGR[bone_side(bone)]), (pp.label, bone)
    # Front view, not mirrored: person 1 (x = -0.9 m) is left of person 3 (x = +1 m), and each
    # person's right side (red) is on the image's left, as in the video.
    roots = project(np.array([p.joints_world[0] for p in placed]), view)
    assert roots[0][0] < roots[1][0] < roots[2][0]
    r_hip, l_hip = project(placed[1].joints_world[[JOINT_INDEX["R_Hip"], JOINT_INDEX["L_Hip"]]], view)
    assert r_hip[0] < l_hip[0]


def test_big_panels_draw_proportionally_not_in_hairlines():
    """An HD-sized panel, shrunk back to 640x480, looks like the 640x480 one: its strokes, dots
    and text grow with it (fixed 1-2 px strokes would wash out to a third of the ink)."""
    people = [standing_person((-600, 200, 3500), 1), standing_person((500, 150, 3000), 2)]
    small = Panel3D(640, 480).render(people)
    big = Panel3D(1920, 1440).render(people)
    shrunk = cv2.resize(big, (640, 480), interpolation=cv2.INTER_AREA)
    background = np.array(Panel3D(640, 480).style.background, np.int16)

    def ink(img):   # how far from the background colour, summed over the picture
        return float(np.abs(img.astype(np.int16) - background).sum())
    assert 0.7 < ink(shrunk) / ink(small) < 1.4


def assert_standing_on_the_drawn_floor(img: np.ndarray, panel: Panel3D, pp) -> None:
    """The placed person `pp` stands upright on the floor the panel drew: head above the feet,
    their ring around the feet and the grid on the floor below them."""
    head, feet = project(np.array([pp.joints_world[JOINT_INDEX["Head"]], pp.feet_world]), panel.last_view)
    assert head[1] < feet[1]                                   # head above the feet
    # most of the ring and of the grid lines around it show (the legs and shadow hide some)
    assert ring_shown(img, panel, pp.feet_world, pp.colour) > 0.5, pp.label
    assert grid_shown(img, panel, pp.feet_world) > 0.5, pp.label


def test_panel_is_upright_with_floor_below_and_centred_mode():
    person = standing_person((500, 200, 3000), 4)
    panel = Panel3D(640, 480)
    img = panel.render([person])
    assert_standing_on_the_drawn_floor(img, panel, place_people([person], False)[0])
    assert panel.toggle_centred()
    img = panel.render([person, standing_person((-500, 200, 3000), 7)])
    placed = place_people([person], True)[0]
    assert np.allclose(placed.joints_world[0], 0)       # root-relative at the origin
    for bone, mid in _bone_midpoints(panel.last_view, placed.joints_world):
        assert colour_near(img, mid, SIDE_COLOURS_BGR[bone_side(bone)])
    # the floor lies under the lowest joint here, and the person stands on it all the same
    assert panel.last_floor_y == pytest.approx(placed.joints_world[:, 1].max(), abs=1.0)
    assert_standing_on_the_drawn_floor(img, panel, placed)


def test_the_nearer_of_two_overlapping_people_is_drawn_over_the_farther():
    """Two people one behind the other, their heads a few pixels apart on the panel: where their
    head rings cross, the nearer one's colour shows, whichever order they are listed in."""
    near, far = standing_person((0, 200, 3000), 4), standing_person((40, 200, 4500), 2)
    for people in ([near, far], [far, near]):
        panel = Panel3D(640, 480)
        img = panel.render(people)
        placed = place_people(people, centred=False)
        depth = eye_depths(panel, placed)
        assert placed[int(np.argmin(depth))].label == "id 4"          # 1.5 m nearer in the view too
        assert assert_nearer_drawn_over_farther(img, panel, placed) == 1, "the head rings should cross"


def test_panel_renders_empty_and_handles_nan_and_zoom_extremes():
    panel = Panel3D(640, 480)
    img = panel.render([])
    # with nobody to stand on it the floor grid is still drawn: on the floor under the view's target
    assert grid_shown(img, panel, panel.last_view.target_mm) > 0.5
    bad = standing_person()
    bad.joints_3d[3] = np.nan
    panel.render([bad])
    panel.zoom_by(0.01)
    panel.orbit(0, -90)
    panel.render([bad])
    panel.orbit(720, 500)
    assert -180 <= panel.state.azimuth_deg < 180 and panel.state.elevation_deg <= 89
    panel.reset_view()
    assert panel.state.azimuth_deg == 0 and panel.state.zoom == 1


# --- 2D overlay and composition ------------------------------------------------------------------

def test_draw_people_and_low_confidence_joints_are_skipped():
    img = np.full((480, 640, 3), 90, np.uint8)
    p = standing_person((0, 200, 3000), 1)
    p.confidence[JOINT_INDEX["L_Wrist"]] = 0.05
    draw_people(img, [p])
    uv = p.joints_2d
    for bone in BONES:
        a, b = bone
        mid = (uv[a] + uv[b]) / 2
        drawn = colour_near(img, mid, SIDE_COLOURS_BGR[bone_side(bone)], radius=2)
        assert drawn == (JOINT_INDEX["L_Wrist"] not in bone), bone


def test_hud_lines_list_stages_in_order():
    lines = hud_lines({"pose": 31.0, "detect": 9.5, "render": 1.2, "track": 0.3}, "ConvNeXtPose-S", "cpu", 24.6, 2)
    text = "\n".join(lines)
    assert "ConvNeXtPose-S" in text and "cpu" in text and "24.6" in text and "people 2" in text
    assert text.index("detect 9.5") < text.index("pose 31.0") < text.index("track 0.3") < text.index("render 1.2")
    assert "FPS   -" in "\n".join(hud_lines({}, "m", "cpu", None, 0))


def test_scene_composition_layout_and_no_people():
    scene = SceneRenderer()
    frame = Frame(0, 0.0, np.full((360, 480, 3), 120, np.uint8))
    people = [standing_person((0, 200, 3000), 1)]
    out = scene.render(FrameResult(frame, people, {"detect": 8.0, "pose": 30.0}), SceneInfo("ConvNeXtPose-XS", "cpu", 20.0))
    assert out.shape == (360, 960, 3)
    _, panel = scene.layout(frame.image.shape)
    assert panel.x == 480 and panel.w == 480
    right = out[:, 480:]
    for colour in SIDE_COLOURS_BGR.values():
        assert (np.abs(right.astype(int) - colour).max(axis=2) < 30).sum() > 20
    assert out[:, :480].mean() != 120               # annotated
    # HUD is dark and translucent: top-left darker than the frame but not black.
    assert 20 < out[15:30, 15:100].mean() < 110
    empty = scene.render(FrameResult(frame, [], {}), None).copy()
    assert empty.shape == (360, 960, 3)
    for colour in SIDE_COLOURS_BGR.values():
        assert (np.abs(empty[:, 480:].astype(int) - colour).max(axis=2) < 30).sum() == 0


# --- matplotlib ----------------------------------------------------------------------------------

def test_plot_frame_and_trajectory_write_pngs(tmp_path):
    from app.plot import plot_frame, plot_trajectory

    people = [standing_person((-600, 200, 3000), 1), standing_person((700, 200, 3600), 2, yaw_deg=40)]
    path = plot_frame(people, tmp_path / "frame.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 300 and img.std() > 5
    frames = [[standing_person((-600 + 30 * t, 200, 3000 + 20 * t), 1),
               standing_person((700, 200, 3600 - 25 * t), 2)] for t in range(20)]
    path = plot_trajectory(frames, JOINT_INDEX["Head"], tmp_path / "traj.png")
    img = cv2.imread(str(path))
    assert img is not None and img.std() > 5


# --- framing --------------------------------------------------------------------------------------

def _extent(panel: Panel3D, people) -> tuple[float, float, np.ndarray]:
    """Fractions of the panel's width and height the people's joints span, and their pixels."""
    px = np.concatenate([project(pp.joints_world, panel.last_view) for pp in place_people(people, False)])
    span = px.max(axis=0) - px.min(axis=0)
    return span[0] / panel.width, span[1] / panel.height, px


@pytest.mark.parametrize("roots", [
    [(-900, 200, 3500), (0, 150, 3000), (1000, 250, 4200)],                                # three, varied depth
    [(-2200, 200, 4000), (-1100, 150, 3600), (0, 200, 4300), (1100, 250, 3500), (2300, 180, 4100)],  # a row of five
    [(500, 200, 3000)],                                                                     # one person
])
def test_default_framing_fills_the_panel(roots):
    people = [standing_person(r, i + 1, yaw_deg=10 * i) for i, r in enumerate(roots)]
    panel = Panel3D(640, 480)
    for _ in range(3):
        panel.render(people)
    w, h, px = _extent(panel, people)
    # The tighter direction is filled to about 3/4 (the floor rings and labels need the rest).
    assert 0.55 <= max(w, h) <= 0.8, (w, h)
    assert (px >= 0).all() and (px[:, 0] < 640).all() and (px[:, 1] < 480).all()
    # Centred, front view with the floor below.
    centre = (px.max(axis=0) + px.min(axis=0)) / 2
    assert abs(centre[0] - 320) < 0.1 * 640
    assert panel.last_view.azimuth_deg == 0 and 5 <= panel.last_view.elevation_deg <= 20


def test_framing_ignores_jitter_and_glides_after_walkers():
    rng = np.random.default_rng(0)
    base = [(-900, 200, 3500), (0, 150, 3000), (1000, 250, 4200)]
    panel = Panel3D(640, 480)
    views = []
    for _ in range(40):      # noisy root estimates: +-40 mm
        people = [standing_person(tuple(np.add(r, rng.uniform(-40, 40, 3))), i + 1) for i, r in enumerate(base)]
        panel.render(people)
        views.append(panel.last_view)
    assert all(v == views[0] for v in views[1:]), "the view moved with the jitter"
    # One person walks 2.5 m to the right over 50 frames: the view follows without jumps.
    distances, targets = [], []
    for t in range(90):
        x = 1000 + 2500 * min(t, 50) / 50
        people = [standing_person(base[0], 1), standing_person(base[1], 2), standing_person((x, 250, 4200), 3)]
        panel.render(people)
        distances.append(panel.last_view.distance_mm)
        targets.append(panel.last_view.target_mm[0])
    steps = np.abs(np.diff(distances)) / np.array(distances[:-1])
    assert steps.max() < 0.06, steps.max()                     # at most a few % per frame
    assert np.abs(np.diff(targets)).max() < 150
    assert distances[-1] > distances[0] * 1.15 and targets[-1] > targets[0] + 500   # it did follow
    w, h, _ = _extent(panel, people)
    assert 0.55 <= max(w, h) <= 0.8


# --- text layout and unsure people ----------------------------------------------------------------

def test_tags_cover_neither_the_hud_nor_faces_nor_each_other():
    """A crowd in the top-left corner, heads together: every tag (2D and 3D) finds free room."""
    from app.labels import overlap
    from app.render2d import face_rect
    people = [standing_person((x, 300.0, z), i) for i, (x, z) in
              enumerate(((-1400, 2600), (-1150, 2800), (-900, 3000), (-1300, 3300), (-600, 2700)))]
    scene = SceneRenderer()
    frame = Frame(0, 0.0, np.full((480, 640, 3), 120, np.uint8))
    scene.render(FrameResult(frame, people, {"read": 1.0, "detect": 8.0, "pose": 30.0, "track": 0.2}),
                 SceneInfo("BlazePose GHUM (fallback)", "cpu", 20.0))
    tags, hud = scene.last_tags, scene.last_hud
    assert len(tags) == len(people) and hud is not None
    # without the layout every tag would sit on its box's top edge, several on the HUD
    assert sum(overlap((int(p.box.x), int(p.box.y) - 20, 150, 20), hud) > 0 for p in people) >= 2
    faces = [face_rect(p, 0.3) for p in people]
    for i, tag in enumerate(tags):
        assert overlap(tag, hud) == 0
        assert all(overlap(tag, face) == 0 for face in faces)
        assert all(overlap(tag, other) == 0 for other in tags[i + 1:])
        assert 0 <= tag[0] and tag[0] + tag[2] <= 640 and 0 <= tag[1] and tag[1] + tag[3] <= 480
    panel_tags = scene.panel.last_tags
    assert len(panel_tags) == len(people)
    assert len(scene.panel.last_heads) == len(people)
    for i, tag in enumerate(panel_tags):
        assert overlap(tag, scene.panel.last_caption) == 0
        assert all(overlap(tag, head) == 0 for head in scene.panel.last_heads)
        assert all(overlap(tag, other) == 0 for other in panel_tags[i + 1:])


def test_a_person_with_every_joint_unsure_is_drawn_faded_and_says_so():
    from app.render2d import FADED_COLOUR, person_label
    img = np.full((480, 640, 3), 90, np.uint8)
    p = standing_person((0, 200, 3000), 1)
    p.confidence[:] = 0.1           # under the drawing threshold everywhere
    draw_people(img, [p])
    uv = p.joints_2d
    for a, b in BONES:
        mid = (uv[a] + uv[b]) / 2
        assert colour_near(img, mid, FADED_COLOUR, radius=2, tol=20)
        assert not colour_near(img, mid, SIDE_COLOURS_BGR[bone_side((a, b))], radius=2, tol=20)
    assert "low confidence" in person_label(p, low_confidence=True)
    # its tag says so: dark text on the track colour, wider than a sure person's tag
    sure = standing_person((0, 200, 3000), 1)
    assert draw_people(np.full_like(img, 90), [p])[0][2] > draw_people(np.full_like(img, 90), [sure])[0][2]


def test_label_and_export_name_the_same_scores():
    from app.render2d import person_label
    p = standing_person((0, 200, 3000), 4)
    p.confidence[:] = 0.25
    assert person_label(p) == "id 4  score 0.93  pose 0.25"
    assert p.detection_score == pytest.approx(0.93) and p.pose_score == pytest.approx(0.25)


def test_people_without_a_root_stand_in_the_same_row_in_the_panel_and_the_plot():
    """One rule places people whose root is unknown: a row 1 m apart at the others' median
    depth, in the live panel and in --plot alike."""
    import dataclasses

    from app.plot import world_joints
    known = [standing_person((-500, 200, 2000), 1), standing_person((500, 200, 4000), 2)]
    unknown = [dataclasses.replace(standing_person(track_id=3), root_cam=None),
               dataclasses.replace(standing_person(track_id=4), root_cam=None)]
    people = known + unknown
    panel = [pp.joints_world for pp in place_people(people, centred=False)]
    plot = world_joints(people)
    for a, b in zip(panel, plot):
        np.testing.assert_allclose(a, b)
    roots = np.array([joints[JOINT_INDEX["Pelvis"]] for joints in plot])
    np.testing.assert_allclose(roots[:2], [[-500, 200, 2000], [500, 200, 4000]], atol=1e-3)
    np.testing.assert_allclose(roots[2:, 2], 3000.0)                    # the others' median depth
    np.testing.assert_allclose(roots[3, 0] - roots[2, 0], 1000.0)      # 1 m apart, not overlapping


def test_scene_composes_gray_and_bgra_frames_like_bgr():
    scene = SceneRenderer()
    bgr = np.full((120, 160, 3), 90, np.uint8)
    expected = scene.render(FrameResult(Frame(0, 0.0, bgr), [], {}), SceneInfo()).copy()
    for image in (np.full((120, 160), 90, np.uint8), np.dstack([bgr, np.full((120, 160), 255, np.uint8)])):
        out = scene.render(FrameResult(Frame(0, 0.0, image), [], {}), SceneInfo())
        assert np.array_equal(out, expected)
