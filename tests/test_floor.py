"""One floor under everybody: fitted to the feet, steady over a video, and what the 3D view draws
of it (feet on the grid, rings under the feet, nearest people nearest) on real pictures."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from app.floor import SOLE_BELOW_ANKLE_MM, FloorFitter, fit_floor, sole
from app.orbit_view import project
from app.render3d import Panel3D, floor_ring, place_people
from app.skeleton import JOINT_INDEX, NUM_JOINTS
from app.types import Box, Camera, Floor, Person
from support import STANDING
# the 3D panel's pixel checks (rings, grid, drawing order), kept with the drawing tests
from panel_checks import assert_nearer_drawn_over_farther, eye_depths, grid_shown, ring_shown

DATA_CAMERA = Camera.from_fov(640, 480, 60.0)
FEET = [JOINT_INDEX["R_Ankle"], JOINT_INDEX["L_Ankle"]]


def person_on_floor(floor: Floor, x_mm: float, distance_mm: float, track_id: int,
                    depth_error: float = 1.0, feet_visible: bool = True) -> tuple[Person, np.ndarray]:
    """A standing person on `floor` (camera axes), `distance_mm` ahead along the floor; returns
    (the person with their root moved along the line of sight by `depth_error`, the true root)."""
    level = floor.to_level()
    joints = STANDING.astype(np.float64) @ level            # upright in the world, camera axes
    feet = joints[FEET] + SOLE_BELOW_ANKLE_MM * floor.down
    lowest = feet[np.argmax(feet @ floor.down)]
    world_root = np.array([x_mm, floor.height_mm, distance_mm]) - level @ lowest
    root = level.T @ world_root
    cam = joints + root * depth_error
    uv = np.stack([DATA_CAMERA.fx * cam[:, 0] / cam[:, 2] + DATA_CAMERA.cx,
                   DATA_CAMERA.fy * cam[:, 1] / cam[:, 2] + DATA_CAMERA.cy], 1)
    confidence = np.full(NUM_JOINTS, 0.9, np.float32)
    if not feet_visible:
        confidence[FEET] = 0.0
        uv[FEET, 1] = 480 + 50.0
    lo, hi = uv.min(0), uv.max(0)
    box = Box(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]), 0.9)
    return Person(box, uv.astype(np.float32), joints.astype(np.float32), confidence,
                  (root * depth_error).astype(np.float32), track_id), root


def on_floor_mm(person: Person, floor: Floor) -> float:
    """How far the person's lower sole is above (-) or below (+) the floor."""
    foot = np.asarray(person.root_cam, np.float64) + sole(person, floor.down)
    return float(floor.down @ foot - floor.height_mm)


def test_floor_is_fitted_to_the_feet_and_wrong_depths_are_corrected():
    truth = Floor(math.radians(30.0), 3000.0)   # a camera 3 m up looking down 30 degrees
    errors = (0.8, 1.25, 1.1, 0.9, 1.0)
    people, roots = zip(*[person_on_floor(truth, x, d, i, e) for i, (x, d, e) in
                          enumerate(zip((-2000, 1500, 0, 2500, -800), (4000, 5000, 7000, 8000, 10000), errors))])
    placed, floor = FloorFitter(steady=False).update(list(people), (640, 480))
    assert math.degrees(floor.pitch_rad) == pytest.approx(30.0, abs=3.0)
    assert floor.height_mm == pytest.approx(3000.0, rel=0.12)

    def errors_of(people):
        return np.array([np.linalg.norm(p.root_cam - r) / np.linalg.norm(r) for p, r in zip(people, roots)])

    for person in placed:
        assert abs(on_floor_mm(person, floor)) < 1.0
    # moved along their lines of sight, people end up nearer where they stand: depths that were
    # up to 25 % off (13 % on average) are within 10 % (about 4 % on average)
    assert errors_of(placed).max() < 0.1 and errors_of(placed).mean() < 0.5 * errors_of(people).mean()


def test_a_person_whose_feet_are_out_of_view_still_stands_on_the_floor():
    truth = Floor(math.radians(10.0), 1500.0)
    seen = [person_on_floor(truth, x, d, i)[0] for i, (x, d) in enumerate(((-1500, 4000), (1500, 6000)))]
    cut, _ = person_on_floor(truth, 0.0, 2500.0, 7, depth_error=1.3, feet_visible=False)
    placed, floor = FloorFitter(steady=False).update(seen + [cut], (640, 480))
    assert math.degrees(floor.pitch_rad) == pytest.approx(10.0, abs=2.0)
    assert abs(on_floor_mm(placed[2], floor)) < 1.0
    # alone, with nobody's feet to fit, a person still gets a floor under them
    alone, floor_alone = FloorFitter(steady=False).update([cut], (640, 480))
    assert floor_alone is not None and abs(on_floor_mm(alone[0], floor_alone)) < 1.0


def test_floor_stays_steady_while_depth_estimates_jitter():
    truth = Floor(math.radians(25.0), 2500.0)
    rng = np.random.default_rng(3)
    fitter = FloorFitter(steady=True)
    steady, single = [], []
    for _ in range(40):
        people = [person_on_floor(truth, x, d, i, float(rng.uniform(0.85, 1.15)))[0]
                  for i, (x, d) in enumerate(((-1500, 5000), (800, 7000), (2000, 9000)))]
        steady.append(math.degrees(fitter.update(people, (640, 480))[1].pitch_rad))
        single.append(math.degrees(FloorFitter(steady=False).update(people, (640, 480))[1].pitch_rad))
    steady_jumps = np.abs(np.diff(steady[10:])).max()
    single_jumps = np.abs(np.diff(single[10:])).max()
    assert steady_jumps < 0.35 * single_jumps
    assert np.mean(steady[10:]) == pytest.approx(25.0, abs=3.0)


def test_one_persons_feet_leave_the_camera_about_level_unless_that_is_impossible():
    floor = fit_floor(np.array([[0.0, 1500.0, 3000.0]]))
    assert math.degrees(floor.pitch_rad) == pytest.approx(0.0, abs=2.0)
    assert floor.height_mm == pytest.approx(1500.0, rel=0.05)
    # feet above the lens at 10 m: a level camera would be under the floor; it looks down instead
    floor = fit_floor(np.array([[0.0, -400.0, 10000.0]]))
    assert 5.0 < math.degrees(floor.pitch_rad) < 20.0 and 800.0 < floor.height_mm < 2500.0


# --- on real pictures ---------------------------------------------------------------------------

def assert_feet_on_the_drawn_floor(people: list[Person], floor: Floor, panel: Panel3D, img: np.ndarray) -> int:
    """In the drawn panel `img`: the grid lies on the fitted floor and no foot pokes through it;
    each person's lower foot projects inside their ring and, for everyone whose ring is on the
    panel, the picture shows that ring (in their colour) and the grid on the floor around it.
    Returns how many people's pixels were checked."""
    assert panel.last_floor_y == pytest.approx(floor.height_mm)
    placed = place_people(people, centred=False, floor=floor)
    view = panel.last_view
    h, w = img.shape[:2]
    checked = 0
    for pp in placed:
        feet_y = pp.joints_world[FEET, 1]
        # the lower ankle is one sole above the floor, never below it
        assert feet_y.max() == pytest.approx(floor.height_mm - SOLE_BELOW_ANKLE_MM, abs=1.0)
        ring = project(floor_ring(pp.feet_world, panel.last_floor_y), view).astype(np.float32)
        foot = project(pp.feet_world[None], view)[0]
        assert cv2.pointPolygonTest(ring.reshape(-1, 1, 2), (float(foot[0]), float(foot[1])), False) > 0
        if (ring >= 0).all() and (ring[:, 0] < w).all() and (ring[:, 1] < h).all():
            # people standing across a ring may hide part of it, never most of it
            assert ring_shown(img, panel, pp.feet_world, pp.colour) > 0.5, pp.label
            assert grid_shown(img, panel, pp.feet_world) > 0.5, pp.label
            checked += 1
    return checked


def test_group_photo_everyone_stands_on_one_floor_nearest_drawn_nearest(blazepose, detector, group_photo_path):
    image = cv2.imread(str(group_photo_path))
    h, w = image.shape[:2]
    camera = Camera.from_fov(w, h, 60.0)
    boxes = detector.detect(image, mode="tiled")
    people = [p for p in blazepose.estimate(image, boxes, camera) if p is not None]
    assert len(people) >= 4
    for i, p in enumerate(people):
        p.track_id = i
    placed, floor = FloorFitter(steady=False).update(people, (w, h))
    panel = Panel3D(640, 392)
    img = panel.render(placed, floor=floor)
    assert assert_feet_on_the_drawn_floor(placed, floor, panel, img) == len(placed)   # all on the panel
    # The skier in front (lowest feet in the photo) is the nearest to the camera, and to the
    # panel's eye as well.
    front = max(range(len(placed)), key=lambda i: placed[i].joints_2d[FEET, 1].max())
    assert min(range(len(placed)), key=lambda i: placed[i].root_cam[2]) == front
    in_view = place_people(placed, centred=False, floor=floor)
    assert np.argmin(eye_depths(panel, in_view)) == front
    # The view draws nearer people over farther ones: in this photo at least two heads are close
    # enough on the panel for their rings to cross.
    assert assert_nearer_drawn_over_farther(img, panel, in_view) >= 1


def hog_boxes(image: np.ndarray) -> list[Box]:
    """People in the small street clip (OpenCV's HOG detector on the frame at twice its size),
    standing in for the person detector so this test does not depend on its recall."""
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    found, weights = hog.detectMultiScale(cv2.resize(image, None, fx=2, fy=2), winStride=(8, 8),
                                          padding=(8, 8), scale=1.1)
    return [Box(*(float(v) / 2 for v in b), score=float(s)) for b, s in zip(found, np.ravel(weights))
            if s > 0.5 and b[3] < image.shape[0]]


def test_street_clip_floor_is_steady_and_seen_from_above(blazepose):
    capture = cv2.VideoCapture("tests/data/pedestrians.mp4")
    fitter = FloorFitter(steady=True)
    panel = Panel3D(384, 288)
    pitches, multi, seen, drawn = [], 0, 0, 0
    for index in range(30):
        ok, image = capture.read()
        assert ok
        h, w = image.shape[:2]
        people = [p for p in blazepose.estimate(image, hog_boxes(image), Camera.from_fov(w, h, 60.0))
                  if p is not None]
        placed, floor = fitter.update(people, (w, h))
        if not placed:
            continue
        multi += len(placed) >= 2
        img = panel.render(placed, floor=floor)
        seen += len(placed)
        drawn += assert_feet_on_the_drawn_floor(placed, floor, panel, img)
        pitches.append(math.degrees(floor.pitch_rad))
        # on a floor seen from above, feet clearly lower in the picture are nearer
        rows = [float(p.joints_2d[FEET, 1].max()) for p in placed]
        ahead = [float(f[2]) for f in (pp.feet_world for pp in place_people(placed, False, floor))]
        for i in range(len(placed)):
            for j in range(len(placed)):
                if rows[i] > rows[j] + 8.0:
                    assert ahead[i] < ahead[j]
    capture.release()
    assert multi >= 5
    # the view glides after people, but frames at once anyone it would draw beyond the panel's
    # edge (someone who turns up much nearer): every ring is on it
    assert drawn == seen, (drawn, seen)
    # the camera looks down on the square from a first floor (about 20 degrees by the horizon;
    # the fit, from small people's uncertain depths, says 7-12); the floor barely moves
    assert 5.0 < np.median(pitches) < 45.0
    assert np.abs(np.diff(pitches)).max() < 3.0


def test_the_ring_is_under_the_feet_on_the_floor_not_under_a_lifted_one():
    floor = Floor(math.radians(15.0), 1600.0)
    standing, _ = person_on_floor(floor, 0.0, 4000.0, 1)
    placed = place_people([standing], centred=False, floor=floor)[0]
    ankles = placed.joints_world[FEET]
    np.testing.assert_allclose(placed.feet_world[[0, 2]], ankles.mean(axis=0)[[0, 2]], atol=1.0)
    # the left foot lifted 30 cm and swung 40 cm forward (in the person's own, upright axes)
    stepping = standing.joints_3d.copy()
    stepping[JOINT_INDEX["L_Ankle"]] += (np.array([0.0, -300.0, 400.0]) @ floor.to_level()).astype(np.float32)
    stepping_person = Person(standing.box, standing.joints_2d, stepping, standing.confidence,
                             standing.root_cam, 1)
    placed = place_people([stepping_person], centred=False, floor=floor)[0]
    right = placed.joints_world[JOINT_INDEX["R_Ankle"]]
    np.testing.assert_allclose(placed.feet_world[[0, 2]], right[[0, 2]], atol=1.0)
    assert placed.feet_world[1] == pytest.approx(right[1] + SOLE_BELOW_ANKLE_MM, abs=1.0)
