"""A person's distance from the size of the body seen, which survives a cut by the frame's edge
(the box-area prior does not)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app import geometry
from app.skeleton import JOINT_INDEX
from app.types import Box, Camera
from support import CAMERA, standing_person

HIPS = [JOINT_INDEX["R_Hip"], JOINT_INDEX["L_Hip"]]


def box_prior(pose_2d: np.ndarray, rows: int) -> float:
    """RootNet's box-area prior on the box around the joints inside the first `rows` rows."""
    seen = pose_2d[pose_2d[:, 1] < rows]
    lo, hi = seen.min(0), seen.max(0)
    box = geometry.process_box((lo[0] - 10, lo[1] - 20, hi[0] - lo[0] + 20, hi[1] - lo[1] + 30), 640, rows)
    return geometry.root_depth_prior(box, CAMERA)


@pytest.mark.parametrize("distance", [2500.0, 4000.0, 7000.0])
def test_distance_from_the_bones_seen_whole_and_cut_at_the_hips(distance):
    person = standing_person((300.0, 150.0, distance), yaw_deg=30.0)
    pose_2d = person.joints_2d.astype(np.float64)
    relative_depth = person.joints_3d[:, 2].astype(np.float64)
    whole = geometry.root_depth_from_size(pose_2d, relative_depth, np.ones(len(pose_2d), bool), CAMERA)
    assert whole == pytest.approx(distance, rel=0.08)
    # the frame ends just below the hips: legs out of view
    rows = int(pose_2d[HIPS, 1].max()) + 3
    seen = geometry.joints_in_view(pose_2d, person.confidence, 640, rows)
    assert not seen[JOINT_INDEX["R_Knee"]] and seen[JOINT_INDEX["Neck"]]
    cut = geometry.root_depth_from_size(pose_2d, relative_depth, seen, CAMERA)
    assert cut == pytest.approx(distance, rel=0.12)
    # the box-area prior reads the cut person as much farther away than they are
    assert box_prior(pose_2d, rows) > 1.4 * distance


def test_too_few_bones_seen_gives_no_distance():
    person = standing_person()
    usable = np.zeros(len(person.joints_2d), bool)
    usable[[0, 7, 8]] = True        # two bones
    assert geometry.root_depth_from_size(person.joints_2d, person.joints_3d[:, 2], usable, CAMERA) is None


def test_real_skier_cut_at_the_knees_keeps_his_distance(blazepose, group_boxes, group_photo_path):
    """BlazePose on the photo, then on the same photo cut just below one skier's knees (same
    camera): his distance moves little, by the backend's own estimate and by the bones seen."""
    image = cv2.imread(str(group_photo_path))
    h, w = image.shape[:2]
    camera = Camera.from_fov(w, h, 60.0)
    boxes = [Box(*b) for b in group_boxes["bboxes"]]
    # the skier on the right, seen whole (BlazePose's region from a box cut at the knees loses
    # the two big skiers in front: half a body in it; this one it keeps)
    skier = blazepose.estimate(image, [boxes[2]], camera)[0]
    assert skier.confidence[[3, 6]].min() > 0.5 and skier.joints_2d[[3, 6], 1].max() < h - 5
    rows = int(skier.joints_2d[[2, 5], 1].max()) + 5      # below the knees: shins and feet gone
    cut_people = blazepose.estimate(np.ascontiguousarray(image[:rows]), [skier.box], camera)
    cut = cut_people[0]
    assert cut is not None
    assert cut.root_cam[2] == pytest.approx(skier.root_cam[2], rel=0.15)

    def by_bones(p, rows_seen):
        seen = geometry.joints_in_view(p.joints_2d, p.confidence, w, rows_seen)
        return geometry.root_depth_from_size(p.joints_2d, p.joints_3d[:, 2], seen, camera)

    assert by_bones(cut, rows) == pytest.approx(by_bones(skier, h), rel=0.15)
    assert by_bones(skier, h) == pytest.approx(skier.root_cam[2], rel=0.3)
