"""Tracker and One Euro smoothing: stable ids over a short video made from a real photo, new ids
for new people, lost people revived, crops from joints, smoothing that never mixes people. When
to detect is the detection plan's (tests/test_detection_plan.py); here it drives the tracker as
the frame loop does."""

import cv2
import numpy as np
import pytest

from app.detection_plan import DetectionPlan, PlanConfig
from app.detector import PersonDetector
from app.smoothing import JOINTS_PX, OneEuroFilter, OneEuroParams
from app.tracker import Tracker, TrackerConfig
from app.types import Box, Camera, Person
from support import DATA

FPS = 30.0


# ---- One Euro filter --------------------------------------------------------------------------

def test_one_euro_reduces_jitter_and_follows_a_step():
    rng = np.random.default_rng(0)
    t = np.arange(120) / FPS
    clean = np.where(t < 2.0, 100.0, 300.0)                 # still, then a jump at 2 s
    noisy = clean + rng.normal(0, 5.0, size=t.shape)
    f = OneEuroFilter(JOINTS_PX)                            # the default for joints in px
    out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(noisy, t)])
    still = slice(15, 60)
    # Measured: the jitter's standard deviation drops to ~0.55 of the input's.
    assert np.std(out[still] - clean[still]) < 0.65 * np.std(noisy[still] - clean[still])
    # The step is followed: within 2% after 0.5 s.
    assert abs(out[-1] - 300.0) < 6.0
    assert np.all(np.abs(out[int(2.5 * FPS):] - 300.0) < 6.0)


def test_one_euro_vectorized_duplicate_time_and_nan():
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0))
    a = np.zeros((18, 3))
    assert np.array_equal(f(a, 0.0), a)                     # first sample passes through
    b = f(np.ones((18, 3)), 1 / FPS)
    assert b.shape == (18, 3) and np.all((b > 0) & (b < 1))
    assert np.array_equal(f(np.full((18, 3), 9.0), 1 / FPS), b)   # same timestamp: no change
    x = np.ones((18, 3)); x[3] = np.nan
    c = f(x, 2 / FPS)
    assert np.all(np.isfinite(c)) and np.allclose(c[3], b[3])


# ---- tracker logic with real poses ------------------------------------------------------------

@pytest.fixture(scope="module")
def group_people(blazepose, group_boxes):
    """BlazePose on the five ground-truth boxes of group.jpg: five real poses."""
    image = cv2.imread(str(DATA / "group.jpg"))
    meta = group_boxes
    boxes = [Box(*b) for b in meta["bboxes"]]
    people = blazepose.estimate(image, boxes, Camera(*meta["focal"], *meta["princpt"]))
    assert all(p is not None for p in people)
    return boxes, people


def shifted(person, dx):
    """The same person dx pixels to the right (a camera pan)."""
    b = person.box
    return Person(Box(b.x + dx, b.y, b.w, b.h, b.score), person.joints_2d + [dx, 0],
                  person.joints_3d.copy(), person.confidence.copy(),
                  None if person.root_cam is None else person.root_cam.copy())


def test_ids_stable_new_people_new_ids_and_retire(group_people):
    boxes, people = group_people
    tracker = Tracker(TrackerConfig(max_missed=2))
    # the picture stays still while the stand-in detections move: the plan must not judge change
    plan = DetectionPlan(lambda w, h: [], PlanConfig(redetect_every=3, skip_unchanged=False))
    image = cv2.imread(str(DATA / "group.jpg"))
    ids_per_frame = []
    for frame in range(10):
        dx = 4 * frame
        visible = [0, 1, 2] if frame < 5 else [0, 1, 2, 3]   # person 3 walks in at frame 5
        if frame >= 7:
            visible = [0, 2, 3]                               # person 1 leaves at frame 7
        det = None
        if plan.request(frame, image, tracker.tracks).whole_frame:
            det = [Box(boxes[i].x + dx, boxes[i].y, boxes[i].w, boxes[i].h) for i in visible]
        crops = tracker.boxes(det)
        # A stand-in backend: for each box, the real pose of the person whose box it overlaps.
        estimated = []
        for c in crops:
            match = [i for i in visible if Box(boxes[i].x + dx, boxes[i].y, boxes[i].w,
                                                boxes[i].h).iou(c) > 0.3]
            estimated.append(shifted(people[match[0]], dx) if match else None)
        out = tracker.update(estimated, frame / FPS)
        ids_per_frame.append({round(p.box.x - dx): p.track_id for p in out})
    first = ids_per_frame[0]
    assert sorted(first.values()) == [0, 1, 2]
    for ids in ids_per_frame[1:]:
        for x, tid in ids.items():
            if x in first:
                assert tid == first[x]                        # same person, same id
    newcomer = round(boxes[3].x)
    assert newcomer not in ids_per_frame[4]
    # Person 3 appears at the periodic detection of frame 6 with a fresh id.
    assert ids_per_frame[6][newcomer] == 3 and ids_per_frame[9][newcomer] == 3
    # Person 1 is gone from frame 7 and retired after max_missed frames.
    assert round(boxes[1].x) not in ids_per_frame[8]  # lost at 7, retired at 9
    assert 1 not in {t.track_id for t in tracker.tracks}


def test_crops_follow_the_joints_and_a_lost_person_is_revived(group_people):
    boxes, people = group_people
    tracker = Tracker()
    assert tracker.boxes(None) == []                         # nobody followed yet
    tracker.boxes([boxes[0]])
    tracker.update([people[0]], 0.0)
    crops = tracker.boxes(None)
    assert len(crops) == 1
    # The crop comes from the joints: it holds every confident joint, with a margin.
    j = people[0].joints_2d[people[0].confidence >= 0.3]
    c = crops[0]
    assert np.all(j[:, 0] > c.x) and np.all(j[:, 0] < c.x + c.w)
    assert np.all(j[:, 1] > c.y) and np.all(j[:, 1] < c.y + c.h)
    # A lost pose (nothing found) leaves nothing to follow ...
    tracker.update([None], 1 / FPS)
    assert tracker.boxes(None) == []
    # ... and re-detecting the person revives the same id.
    tracker.boxes([boxes[0]])
    (p,) = tracker.update([people[0]], 2 / FPS)
    assert p.track_id == 0


def test_poses_must_answer_the_boxes_handed_out(group_people):
    boxes, people = group_people
    tracker = Tracker()
    assert len(tracker.boxes([boxes[1], boxes[2]])) == 2
    with pytest.raises(ValueError, match="2 boxes"):
        tracker.update([people[1]], 0.0)
    tracker.boxes([boxes[1], boxes[2]])
    assert {p.track_id for p in tracker.update([people[1], people[2]], 0.0)} == {0, 1}


def test_smoothing_never_mixes_ids(group_people):
    boxes, people = group_people
    tracker = Tracker()
    rng = np.random.default_rng(1)
    a, b = people[0], people[2]
    tracker.boxes([a.box, b.box])
    for frame in range(12):
        noisy = []
        for p in (a, b):
            q = shifted(p, 0)
            q.joints_2d = q.joints_2d + rng.normal(0, 2, q.joints_2d.shape)
            noisy.append(q)
        if frame:
            crops = tracker.boxes(None)
            assert len(crops) == 2
        out = {p.track_id: p for p in tracker.update(noisy, frame / FPS)}
        # Each smoothed person stays on its own raw joints (the two are ~300 px apart).
        assert np.abs(out[0].joints_2d - a.joints_2d).max() < 10
        assert np.abs(out[1].joints_2d - b.joints_2d).max() < 10
        assert np.allclose(out[0].joints_3d, a.joints_3d, atol=1e-3)
    # A brand-new track starts from its own raw pose, not from anybody's filter state.
    tracker.boxes([a.box, b.box, boxes[4]])
    out = {p.track_id: p for p in tracker.update([a, b, people[4]], 12 / FPS)}
    assert np.allclose(out[2].joints_2d, people[4].joints_2d)


def test_smoothing_off_passes_poses_through(group_people):
    boxes, people = group_people
    tracker = Tracker(TrackerConfig(smoothing=False))
    tracker.boxes([boxes[0]])
    tracker.update([people[0]], 0.0)
    tracker.boxes(None)
    moved = shifted(people[0], 7)
    (p,) = tracker.update([moved], 1 / FPS)
    assert np.array_equal(p.joints_2d, moved.joints_2d)


# ---- end to end on a short real video ---------------------------------------------------------

def test_real_video_ids_stable_with_detector_and_fallback(blazepose):
    """basketball1.jpg panned 3 px per frame; the detection plan asks for the whole frame every
    4 frames and for slices of the sweep, the tracker's crops are followed in between. The man on
    the left keeps one id the whole time."""
    image = cv2.imread(str(DATA / "basketball1.jpg"))
    h, w = image.shape[:2]
    camera = Camera.from_fov(w, h, 60)
    tracker = Tracker()
    with PersonDetector() as detector:
        plan = DetectionPlan(detector.tiles, PlanConfig(redetect_every=4))
        seen = []
        for frame in range(10):
            m = np.float32([[1, 0, 3 * frame], [0, 1, 0]])
            img = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            request = plan.request(frame, img, tracker.tracks)
            boxes = tracker.boxes(detector.search(img, request.whole_frame, request.tiles, request.known,
                                              settled=request.settled)
                                  if request else None)
            people = tracker.update(blazepose.estimate(img, boxes, camera), frame / FPS)
            left = [p for p in people if p.joints_2d[0, 0] < w / 2]
            assert len(left) == 1, frame
            seen.append(left[0].track_id)
            # The smoothed pelvis follows the pan (lag of a few px at most).
            assert abs(left[0].joints_2d[0, 0] - (92 + 3 * frame)) < 12
    assert len(set(seen)) == 1


def test_uncertain_pose_is_reported_and_looked_for_in_place(group_people):
    """A low-confidence pose (occlusion, a weak model) keeps the person and their crop; only a
    run of them makes the track lost, and a fresh detection restores it."""
    person = group_people[1][0]
    weak = Person(box=person.box, joints_2d=person.joints_2d, joints_3d=person.joints_3d,
                  confidence=np.full(18, 0.1, np.float32), root_cam=person.root_cam)
    tracker = Tracker(max_uncertain=3, smoothing=False)
    plan = DetectionPlan(lambda w, h: [], PlanConfig(redetect_every=100))
    image = cv2.imread(str(DATA / "group.jpg"))
    assert plan.request(0, image, tracker.tracks).whole_frame
    boxes = tracker.boxes([person.box])
    first = tracker.update([weak], 0.0)
    assert len(first) == 1 and np.allclose(first[0].confidence, 0.1)
    track_id = first[0].track_id
    for frame in range(1, 3):
        assert not plan.request(frame, image, tracker.tracks).whole_frame
        assert tracker.boxes(None) == boxes, "looks in the same place again"
        assert [p.track_id for p in tracker.update([weak], frame / 30)] == [track_id]
    assert not plan.request(3, image, tracker.tracks).whole_frame
    tracker.boxes(None)
    tracker.update([weak], 3 / 30)
    assert plan.request(4, image, tracker.tracks).whole_frame, \
        "four uncertain frames in a row: the person counts as lost, the plan asks the detector"
    tracker.boxes([person.box])
    assert [p.track_id for p in tracker.update([weak], 4 / 30)] == [track_id]
    assert not plan.request(5, image, tracker.tracks).whole_frame, \
        "the fresh detection vouched for the track"


def test_next_crop_carries_the_body_region_from_the_joints():
    """A tracked person's next crop says where their hips are and which way is up, so the
    fallback's crop stays on them where people overlap (BlazePose's own convention: clockwise
    angle from upright)."""
    from app.skeleton import JOINT_INDEX, NUM_JOINTS
    trusted = ("Pelvis", "Neck", "Head", "R_Ankle", "L_Ankle")

    def next_region(joints: np.ndarray, pelvis_trusted: bool = True):
        """The region of the crop the tracker hands out for the frame after this pose."""
        confidence = np.full(NUM_JOINTS, 0.29, np.float32)   # not trusted (< 0.3), yet a sure pose on average
        confidence[[JOINT_INDEX[n] for n in trusted]] = 0.9
        if not pelvis_trusted:
            confidence[JOINT_INDEX["Pelvis"]] = 0.29
        tracker = Tracker(smoothing=False)
        box = Box(200, 100, 200, 400)
        tracker.boxes([box])
        tracker.update([Person(box, joints.astype(np.float32), np.zeros((NUM_JOINTS, 3), np.float32), confidence)], 0.0)
        return tracker.boxes(None)[0].region

    joints = np.full((NUM_JOINTS, 2), 300.0)
    for name, (x, y) in {"Pelvis": (300, 300), "Neck": (300, 200), "Head": (300, 160),
                         "R_Ankle": (290, 460), "L_Ankle": (310, 460)}.items():
        joints[JOINT_INDEX[name]] = (x, y)
    region = next_region(joints)
    assert (region.cx, region.cy) == (300, 300)
    assert region.radius == pytest.approx(1.05 * np.hypot(10, 160))
    assert region.rotation == pytest.approx(0.0, abs=1e-6)
    # lying down, head to the image's right: up is turned a quarter clockwise
    turned = joints.copy()
    turned[:, 0], turned[:, 1] = 300 + (300 - joints[:, 1]), 300 + (joints[:, 0] - 300)
    assert next_region(turned).rotation == pytest.approx(np.pi / 2)
    # without a trusted pelvis there is no region (the crop is then a plain box)
    assert next_region(joints, pelvis_trusted=False) is None
