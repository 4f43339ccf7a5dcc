"""The BlazePose fallback on real photos: anatomically plausible 3D joints in mm, sides right,
2D joints in image pixels, a root position in camera space, and robust box handling."""

import cv2
import numpy as np
import pytest

from app.skeleton import JOINT_INDEX as J, NUM_JOINTS
from app.types import Box, Camera
from support import DATA

BASKETBALL_MAN = Box(35, 80, 125, 400)     # hand-measured, left man in basketball1.jpg


@pytest.fixture(scope="module")
def basketball_person(blazepose):
    image = cv2.imread(str(DATA / "basketball1.jpg"))
    camera = Camera.from_fov(image.shape[1], image.shape[0], 60)
    (person,) = blazepose.estimate(image, [BASKETBALL_MAN], camera)
    assert person is not None
    return person


def bone(p, a, b):
    return float(np.linalg.norm(p.joints_3d[J[a]] - p.joints_3d[J[b]]))


def test_shapes_and_root(basketball_person):
    p = basketball_person
    assert p.joints_2d.shape == (NUM_JOINTS, 2) and p.joints_3d.shape == (NUM_JOINTS, 3)
    assert p.confidence.shape == (NUM_JOINTS,)
    assert np.all((p.confidence >= 0) & (p.confidence <= 1))
    assert np.allclose(p.joints_3d[J["Pelvis"]], 0)
    assert p.box == BASKETBALL_MAN and p.track_id == -1
    assert p.pose_score > 0.8   # a clear, whole, frontal person


@pytest.mark.parametrize("a,b,lo,hi", [
    ("L_Hip", "L_Knee", 300, 550), ("R_Hip", "R_Knee", 300, 550),
    ("L_Knee", "L_Ankle", 300, 550), ("R_Knee", "R_Ankle", 300, 550),
    # GHUM puts the shoulder landmark high (acromion): its upper arms measure 170-250 mm here.
    ("L_Shoulder", "L_Elbow", 160, 400), ("R_Shoulder", "R_Elbow", 160, 400),
    ("L_Elbow", "L_Wrist", 180, 350), ("R_Elbow", "R_Wrist", 180, 350),
    ("L_Hip", "R_Hip", 150, 350), ("L_Shoulder", "R_Shoulder", 250, 500),
])
def test_bone_lengths_are_human(basketball_person, a, b, lo, hi):
    assert lo <= bone(basketball_person, a, b) <= hi


def test_sides_and_up(basketball_person):
    p = basketball_person
    # He faces the camera: his left side is on the image's right, in 2D and in 3D (x right).
    for left, right in (("L_Shoulder", "R_Shoulder"), ("L_Hip", "R_Hip"), ("L_Knee", "R_Knee")):
        assert p.joints_2d[J[left], 0] > p.joints_2d[J[right], 0]
        assert p.joints_3d[J[left], 0] > p.joints_3d[J[right], 0]
    # y is down: head above nose above neck above pelvis above ankles.
    y = p.joints_3d[:, 1]
    assert y[J["Head"]] < y[J["Nose"]] < y[J["Neck"]] < y[J["Torso"]] < y[J["Pelvis"]]
    assert y[J["Pelvis"]] < y[J["L_Ankle"]] and y[J["Pelvis"]] < y[J["R_Ankle"]]
    assert 1400 < y[J["L_Ankle"]] - y[J["Head"]] + 100 < 2100   # standing height, roughly
    # 2D joints are full-image pixels inside his box (slightly loose at the head top).
    b = BASKETBALL_MAN
    assert np.all(p.joints_2d[:, 0] > b.x - 20) and np.all(p.joints_2d[:, 0] < b.x + b.w + 20)
    assert np.all(p.joints_2d[:, 1] > b.y - 20) and np.all(p.joints_2d[:, 1] < b.y + b.h + 20)


def test_root_positions_on_group_match_ground_truth(blazepose, group_boxes):
    image = cv2.imread(str(DATA / "group.jpg"))
    meta = group_boxes
    camera = Camera(*meta["focal"], *meta["princpt"])
    people = blazepose.estimate(image, [Box(*b) for b in meta["bboxes"]], camera)
    assert all(p is not None for p in people)
    depths = np.array([p.root_cam[2] for p in people])
    truth = np.array(meta["root_depths"])
    # Measured: 8-26% short of the ground truth (weak perspective from GHUM's skeleton).
    assert np.all(np.abs(depths / truth - 1) < 0.35), depths
    assert np.argmin(depths) == np.argmin(truth)          # the near skier is nearest
    xs = np.array([p.root_cam[0] for p in people])
    assert np.argmin(xs) == 4 and np.argmax(xs) == 2      # leftmost and rightmost people


def test_the_model_time_reported_is_the_networks_alone(blazepose, group_boxes):
    """The fallback reports its landmark network's time per estimate() (the benchmarks weigh
    the rest of the frame against it, as against ConvNeXtPose's network): each person's run,
    not the crop's resampling nor the decoding, and nothing for a box too small to run on."""
    import time
    image = cv2.imread(str(DATA / "group.jpg"))
    camera = Camera(*group_boxes["focal"], *group_boxes["princpt"])
    boxes = [Box(*b) for b in group_boxes["bboxes"]]
    spans = []
    for some in (boxes[:1], boxes):
        start = time.perf_counter()
        blazepose.estimate(image, some, camera)
        spans.append(((time.perf_counter() - start) * 1000.0, blazepose.last_model_ms))
    (one_wall, one_model), (all_wall, all_model) = spans
    assert 0 < one_model < one_wall and 0 < all_model < all_wall
    assert all_model > 3 * one_model   # five people: five runs of the network, summed
    blazepose.estimate(image, [Box(10, 10, 5, 5)], camera)   # below the smallest box it runs on
    assert blazepose.last_model_ms == 0.0


def test_detected_people_each_get_their_own_skeleton(blazepose, detector, group_boxes):
    """In group.jpg the skiers overlap: a box centred between two people made the model fit the
    clearer one twice (the front skier got the skier behind him). Cropping on the detector's
    hip-centred region gives every detected person a skeleton inside their own true box, and
    no two skeletons on one person."""
    image = cv2.imread(str(DATA / "group.jpg"))
    meta = group_boxes
    camera = Camera(*meta["focal"], *meta["princpt"])
    boxes = detector.detect(image, mode="tiled")
    assert all(b.region is not None for b in boxes)
    people = [p for p in blazepose.estimate(image, boxes, camera) if p is not None]
    assert len(people) >= 4

    def owner(person):   # the true box whose centre is nearest the pelvis, if it holds it
        x, y = person.joints_2d[J["Pelvis"]]
        inside = [i for i, (bx, by, bw, bh) in enumerate(meta["bboxes"])
                  if bx <= x <= bx + bw and by <= y <= by + bh]
        return min(inside, key=lambda i: np.hypot(x - meta["bboxes"][i][0] - meta["bboxes"][i][2] / 2,
                                                  y - meta["bboxes"][i][1] - meta["bboxes"][i][3] / 2),
                   default=None)
    owners = [owner(p) for p in people]
    assert None not in owners and len(set(owners)) == len(owners), owners


def test_boxes_at_border_tiny_and_alignment(blazepose):
    image = cv2.imread(str(DATA / "basketball1.jpg"))
    camera = Camera.from_fov(image.shape[1], image.shape[0], 60)
    boxes = [Box(2, 2, 8, 8),                     # tiny: nothing to see
             Box(-60, 60, 230, 440),              # runs off the left and bottom edges
             Box(5000, 5000, 100, 100),           # entirely outside
             BASKETBALL_MAN]
    people = blazepose.estimate(image, boxes, camera)
    assert len(people) == len(boxes)
    assert people[0] is None and people[2] is None
    assert people[1] is not None and people[3] is not None
    assert np.linalg.norm(people[1].joints_2d[J["Pelvis"]] - people[3].joints_2d[J["Pelvis"]]) < 25
    assert blazepose.estimate(image, [], camera) == []


def test_litert_uses_the_cores_it_may(monkeypatch):
    """LiteRT's own default is one thread; the models run on one per core (up to 4), or on the
    share a batch worker sets in OMP_NUM_THREADS."""
    import os
    from models.blazepose.runtime import default_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == min(4, len(os.sched_getaffinity(0)))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})   # a one-core share (taskset)
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert default_threads() == 4
