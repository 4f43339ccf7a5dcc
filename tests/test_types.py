"""Box arithmetic the stages share: clipping to the image, intersection, IoU."""
from app.types import BodyRegion, Box


def test_clipped_keeps_the_inside_part_with_score_and_region():
    region = BodyRegion(10.0, 20.0, 5.0, 0.0)
    box = Box(-20.0, 50.0, 100.0, 500.0, 0.8, region).clipped(640, 480)
    assert (box.x, box.y, box.w, box.h) == (0.0, 50.0, 80.0, 430.0)
    assert box.score == 0.8 and box.region == region


def test_clipped_is_none_when_nothing_is_inside():
    assert Box(700.0, 10.0, 50.0, 50.0).clipped(640, 480) is None
    assert Box(10.0, -60.0, 50.0, 60.0).clipped(640, 480) is None   # ends on the top edge
    assert Box(0.0, 0.0, 640.0, 480.0).clipped(640, 480) == Box(0.0, 0.0, 640.0, 480.0)


def test_intersection_and_iou():
    a, b = Box(0.0, 0.0, 10.0, 10.0), Box(5.0, 5.0, 10.0, 10.0)
    assert a.intersection(b) == b.intersection(a) == 25.0
    assert a.iou(b) == 25.0 / 175.0
    assert a.intersection(Box(20.0, 0.0, 5.0, 5.0)) == 0.0 and a.iou(Box(20.0, 0.0, 5.0, 5.0)) == 0.0
