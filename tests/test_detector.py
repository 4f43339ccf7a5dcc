"""PersonDetector on real photos: tests/data/group.jpg (ground-truth boxes in boxes.json) and
photos from Debian's opencv-doc examples (basketball1, messi5; fruits, home have nobody)."""

import cv2
import numpy as np
import pytest

from app.detector import PersonDetector
from app.types import Box
from support import DATA



def load(name):
    image = cv2.imread(str(DATA / name))
    assert image is not None, name
    return image


@pytest.fixture(scope="module")
def group_truth(group_boxes):
    return [Box(*b) for b in group_boxes["bboxes"]]


def best_ious(truth, boxes):
    return [max((t.iou(b) for b in boxes), default=0.0) for t in truth]


def test_fast_mode_finds_the_near_skier_snugly(detector, group_truth):
    boxes = detector.detect(load("group.jpg"), mode="fast")
    assert len(boxes) == 1
    # The one person a whole-image pass finds is the nearest skier (ground-truth box 3).
    assert group_truth[3].iou(boxes[0]) > 0.6
    assert 0.5 <= boxes[0].score <= 1.0


def test_tiled_mode_recall_on_group(detector, group_truth):
    boxes = detector.detect(load("group.jpg"), mode="tiled")
    ious = best_ious(group_truth, boxes)
    # Measured: 4 of 5 people with IoU > 0.5 (the fifth, the blue skier, only gets poorer boxes).
    assert sum(iou > 0.5 for iou in ious) >= 4, ious
    # Nothing in the snow: every box overlaps a real person.
    for b in boxes:
        assert max(t.iou(b) for t in group_truth) > 0.15, b
    # NMS left no near-duplicates.
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a.iou(b) <= detector.config.nms_iou
    h, w = load("group.jpg").shape[:2]
    for b in boxes:   # clipped to the image
        assert b.x >= 0 and b.y >= 0 and b.x + b.w <= w + 1e-3 and b.y + b.h <= h + 1e-3


def test_basketball_player_found(detector):
    boxes = detector.detect(load("basketball1.jpg"))
    # Hand-measured box of the man on the left (head to shoes).
    truth = Box(35, 80, 125, 400)
    assert max(truth.iou(b) for b in boxes) > 0.5


def test_a_whole_frame_find_on_a_settled_person_costs_no_verification(detector):
    """The periodic whole-frame pass re-anchors people followed on uncertain poses: their finds
    are verified and returned. A person followed on confident poses (settled) needs no anchor:
    the find on them is dropped before the landmark model is asked."""
    image = cv2.imread(str(DATA / "basketball1.jpg"))
    player = detector.detect(image)[0]
    calls = detector.landmark_calls
    assert [b.iou(player) for b in detector.search(image, True, known=[player])] == [pytest.approx(1.0, abs=0.05)]
    assert detector.landmark_calls == calls + 1
    assert detector.search(image, True, known=[player], settled=[player]) == []
    assert detector.landmark_calls == calls + 1


def test_footballer_found_around_his_torso(detector):
    boxes = detector.detect(load("messi5.jpg"))
    assert len(boxes) == 1
    b = boxes[0]
    torso = (250, 170)   # the shirt's centre, hand-measured
    assert b.x < torso[0] < b.x + b.w and b.y < torso[1] < b.y + b.h


@pytest.mark.parametrize("name", ["fruits.jpg", "home.jpg"])
@pytest.mark.parametrize("mode", ["fast", "tiled"])
def test_nobody_gives_empty_list(detector, name, mode):
    assert detector.detect(load(name), mode=mode) == []


def test_tiny_or_blank_image(detector):
    assert detector.detect(np.zeros((4, 4, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_sweep_finds_each_skier_once_and_drops_body_parts(detector, group_truth):
    """In group.jpg's tiles the left skier's head and shoulder is found as a small person of its
    own (a 34x32 box, pose presence 0.98); it lies inside that skier's box with its hips near his:
    a part of him, dropped. The skier on the right, whose box lies mostly inside the front
    skier's, has hips of his own: kept. A fit spread over the crouching blue skier and the skier
    behind him slides onto the latter when fitted again: dropped; the blue skier's own box is
    then a poorer one (IoU 0.29 with his box, which holds his skis and poles). At most one box
    per skier, and nothing else."""
    boxes = detector.detect(load("group.jpg"), mode="tiled")
    owners = [max(range(len(group_truth)), key=lambda i: group_truth[i].iou(b)) for b in boxes]
    assert all(group_truth[i].iou(b) > 0.25 for i, b in zip(owners, boxes)), boxes
    assert len(set(owners)) == len(owners) >= 4, boxes


def test_close_then_detect_raises():
    det = PersonDetector()
    det.close()
    det.close()   # idempotent
    with pytest.raises(RuntimeError):
        det.detect(load("group.jpg"))
