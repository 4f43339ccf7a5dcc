"""The detection plan (app/detection_plan.py): when the whole frame is searched, and how a sweep's
tiles are spread over frames, skipped where followed people cover them, and skipped where the
picture has not changed; with the real detector, tracker and fallback on real pictures from
tests/data."""
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from app.detection_plan import DetectionPlan, PlanConfig
from app.tracker import Tracker
from app.types import Box, Camera
from support import DATA, group_boxes


@dataclass
class Followed:
    """A track as the plan reads it (app.tracker.Track's `track_id`, `crop` and `uncertain`)."""
    track_id: int
    crop: Box | None
    uncertain: int = 0


@pytest.fixture(scope="module")
def tiles(detector):
    return detector.tiles


def video_frames(path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    assert all(f is not None for f in frames)
    return frames


def scene_with_person(height_px: int = 110, at=(300, 200)) -> tuple[np.ndarray, np.ndarray, Box]:
    """home.jpg (nobody in it), and the same room with the second skier of group.jpg pasted in,
    scaled to `height_px`: too small for the whole-frame pass, found by the sweep's tiles
    (measured: at 80-140 px the whole frame finds nobody, the sweep finds him)."""
    room = cv2.imread(str(DATA / "home.jpg"))
    group = cv2.imread(str(DATA / "group.jpg"))
    x, y, w, h = (int(v) for v in group_boxes()["bboxes"][1])
    scale = height_px / h
    person = cv2.resize(group[y:y + h, x:x + w], (int(w * scale), height_px), interpolation=cv2.INTER_AREA)
    with_person = room.copy()
    px, py = at
    with_person[py:py + person.shape[0], px:px + person.shape[1]] = person
    return room, with_person, Box(px, py, person.shape[1], height_px)


def drifted(image: np.ndarray, index: int, amplitude: float) -> np.ndarray:
    """The camera drifting as in benchmarks/make_clip.py."""
    shift = np.float32([[1, 0, amplitude * np.sin(index / 25)], [0, 1, amplitude / 2 * np.sin(index / 40)]])
    return cv2.warpAffine(image, shift, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


# ---- when ---------------------------------------------------------------------------------------

def test_whole_frame_first_while_nobody_is_followed_periodically_and_when_someone_is_lost(tiles):
    image = cv2.imread(str(DATA / "group.jpg"))
    plan = DetectionPlan(tiles, PlanConfig(redetect_every=5))
    unsure = [Followed(0, Box(100, 100, 80, 200), uncertain=1)]
    first = plan.request(0, image, [])
    assert first.whole_frame and len(first.tiles) == len(tiles(640, 392)), "the first frame: a whole sweep"
    assert plan.request(1, image, []).whole_frame, "nobody followed: look at the whole frame"
    assert [plan.request(i, image, unsure).whole_frame for i in range(2, 8)] == \
        [False, False, False, False, True, False], "then every 5 frames, to re-anchor the unsure"
    lost = [Followed(0, None)]
    assert plan.request(8, image, lost).whole_frame, "a followed person was lost"


def test_the_periodic_pass_is_skipped_while_nothing_changed_outside_the_people_followed_surely(tiles):
    """A man followed on sure poses in a room: while the room around him stays as it was, the
    whole frame could only find him again, and is not searched; he may move within his own box;
    once someone else appears, it is searched at the next periodic turn."""
    room, with_person, where = scene_with_person(at=(300, 200))
    _, two_people, _ = scene_with_person(at=(100, 150))
    two_people[200:200 + where.h, 300:300 + where.w] = with_person[200:200 + where.h, 300:300 + where.w]
    moved_within = room.copy()   # the man 3 px lower, still inside the box he is followed in
    moved_within[203:203 + where.h, 300:300 + where.w] = with_person[200:200 + where.h, 300:300 + where.w]
    followed = Box(where.x - 20, where.y - 20, where.w + 40, where.h + 40)
    sure = [Followed(0, followed)]
    plan = DetectionPlan(tiles, PlanConfig(redetect_every=5))
    plan.request(0, with_person, [])
    wholes = [plan.request(i, with_person if i < 8 else moved_within, sure).whole_frame for i in range(1, 16)]
    assert wholes == [False] * 15
    assert plan.stats.whole_frame_unchanged == 3
    wholes = [plan.request(i, two_people, sure).whole_frame for i in range(16, 21)]
    assert wholes == [False, False, False, False, True], "the next periodic turn: frame 20"


def test_only_people_followed_on_confident_poses_are_settled(tiles):
    room = cv2.imread(str(DATA / "home.jpg"))
    plan = DetectionPlan(tiles, PlanConfig())
    sure, unsure = Box(50, 50, 60, 150), Box(300, 60, 60, 150)
    request = plan.request(0, room, [Followed(0, sure), Followed(1, unsure, uncertain=2), Followed(2, None)])
    assert request.known == (sure, unsure) and request.settled == (sure,)


def test_a_whole_frame_pass_is_started_ahead_only_where_it_is_certain(tiles):
    """The frame loop may start the next frame's whole-frame pass beside this frame's poses
    (on an accelerator): only when that pass will run whatever the picture shows."""
    image = cv2.imread(str(DATA / "group.jpg"))
    plan = DetectionPlan(tiles, PlanConfig(redetect_every=5))
    plan.request(0, image, [])
    sure, unsure = [Followed(0, Box(100, 100, 80, 200))], [Followed(0, Box(100, 100, 80, 200), uncertain=2)]
    assert plan.whole_frame_certain(1, []), "nobody followed"
    assert plan.whole_frame_certain(1, [Followed(0, None)]), "somebody lost"
    assert not plan.whole_frame_certain(3, unsure), "not yet due"
    assert plan.whole_frame_certain(5, unsure), "due, to re-anchor the unsure"
    assert not plan.whole_frame_certain(5, sure), "due, but skipped where nothing changed"


def test_a_still_image_is_searched_whole_every_time(tiles):
    image = cv2.imread(str(DATA / "group.jpg"))
    plan = DetectionPlan(tiles, PlanConfig(stills=True))
    for index in range(3):
        request = plan.request(index, image, [])
        assert request.whole_frame and len(request.tiles) == len(tiles(640, 392))


# ---- where: the sweep spread over frames --------------------------------------------------------

def test_every_tile_is_visited_once_per_sweep_and_no_frame_pays_a_whole_sweep(tiles):
    """pedestrians.mp4 (a street, people walking everywhere), change detection off: after the
    first frame's whole sweep, each run of `sweep_interval` frames searches every tile exactly
    once, a fifth of them every second frame (`visit_every`)."""
    frames = video_frames(DATA / "pedestrians.mp4", 21)
    all_tiles = sorted(tiles(384, 288))
    plan = DetectionPlan(tiles, PlanConfig(sweep_interval=10, visit_every=2, skip_unchanged=False))
    assert sorted(plan.request(0, frames[0], []).tiles) == all_tiles
    for start in (1, 11):
        searched = []
        for index in range(start, start + 10):
            request = plan.request(index, frames[index], [])
            assert len(request.tiles) <= 2 * -(-len(all_tiles) // 10)
            assert bool(request.tiles) == (index % 2 == 0)
            searched += request.tiles
        assert sorted(searched) == all_tiles


def test_tiles_covered_by_followed_people_are_skipped(tiles):
    """A person filling the left half of the frame: tiles at least 90 % behind them are not
    searched, the others still are, once per sweep."""
    frames = video_frames(DATA / "pedestrians.mp4", 11)
    plan = DetectionPlan(tiles, PlanConfig(sweep_interval=10, skip_unchanged=False))
    plan.request(0, frames[0], [])
    near = [Followed(0, Box(0, 0, 170, 288))]
    searched = [t for i in range(1, 11) for t in plan.request(i, frames[i], near).tiles]
    share = {t: max(0, min(t[0] + t[2], 170) - t[0]) / t[2] for t in tiles(384, 288)}
    assert not [t for t, s in share.items() if 0.87 < s < 0.93], "no tile on the edge of the rule"
    inside = [t for t, s in share.items() if s >= 0.9]
    assert inside, "some tiles lie behind the person"
    assert not set(searched) & set(inside)
    assert sorted(searched) == sorted(set(tiles(384, 288)) - set(inside))
    assert plan.stats.skipped_covered == len(inside)


# ---- where: only what changed ---------------------------------------------------------------

@pytest.mark.parametrize("drift", [0.0, 12.0], ids=["static camera", "drifting camera"])
def test_a_person_walking_in_is_found_within_one_sweep_and_unchanged_tiles_are_not_searched(
        detector, blazepose, drift):
    """An empty room watched for 13 frames, then a man (110 px, too small for the whole-frame
    pass) stands in it. Through the plan, the real detector, tracker and fallback as the frame
    loop runs them: while nothing changes no tile is searched again (the camera's drift is
    followed), and the man is reported within one sweep of his arrival."""
    room, with_person, where = scene_with_person()
    height, width = room.shape[:2]
    arrives, interval = 13, 10
    camera = Camera.from_fov(width, height, 60)
    tracker = Tracker()
    plan = DetectionPlan(detector.tiles, PlanConfig(sweep_interval=interval))
    found_at, searched_later = None, set()
    for index in range(arrives + interval + 2):
        image = drifted(with_person if index >= arrives else room, index, drift)
        request = plan.request(index, image, tracker.tracks)
        if 0 < index < arrives:
            assert not request.tiles, f"frame {index}: nothing changed, yet tiles were searched"
        if index > 0:
            searched_later.update(request.tiles)
        boxes = tracker.boxes(detector.search(image, request.whole_frame, request.tiles, request.known,
                                              settled=request.settled)
                              if request else None)
        people = tracker.update(blazepose.estimate(image, boxes, camera) if boxes else [], index / 30)
        if people and found_at is None:
            found_at = index
            assert people[0].box.iou(where) > 0.3
    assert found_at is not None and arrives <= found_at < arrives + interval, found_at
    # after the first frame's sweep, only tiles where he stands (the drift moves him 12 px), or on
    # the edge, where resampled edges of the room change a little under the drift
    around = Box(where.x - 12, where.y - 6, where.w + 24, where.h + 12)
    for x, y, w, h in searched_later:
        on_edge = drift and (x == 0 or y == 0 or x + w == width or y + h == height)
        assert Box(x, y, w, h).iou(around) > 0 or on_edge, (x, y, w, h)
    assert len(searched_later) < len(detector.tiles(width, height)) / 2


def test_picture_the_camera_brings_in_is_searched_once_wide_enough_to_hold_someone(tiles):
    """A camera looking at a smooth wall: drifting by up to 10 px brings in strips too narrow for
    any body the tiles can find (the finest tile, 160 px, finds bodies ~0.4 of it tall, ~16 px
    wide), so nothing is searched again; turning 80 px brings in a strip that could hold
    someone, and the tiles over it, only those, are searched."""
    rng = np.random.default_rng(0)
    wall = cv2.resize(rng.uniform(0, 255, (12, 18, 3)).astype(np.uint8), (900, 600),
                      interpolation=cv2.INTER_CUBIC)

    def view(x: int) -> np.ndarray:
        return np.ascontiguousarray(wall[60:540, x:x + 640])

    plan = DetectionPlan(tiles, PlanConfig(sweep_interval=10))
    plan.request(0, view(100), [])
    drifting = [t for i in range(1, 31) for t in plan.request(i, view(100 + round(10 * np.sin(i / 5))), []).tiles]
    assert drifting == []
    turned = [t for i in range(31, 41) for t in plan.request(i, view(180), []).tiles]
    assert turned and all(x + w > 640 - 80 for x, y, w, h in turned), turned


def test_what_is_prepared_ahead_gives_the_same_requests(tiles):
    """prepare() makes a frame's thumbnail and change maps ahead (on a helper thread, beside the
    last frame's poses): with them every request is the one made in line, and prepare() itself
    changes nothing in the plan (calling it twice, or not using it, gives the same requests)."""
    room, with_person, person = scene_with_person()
    frames = [drifted(with_person if i >= 7 else room, i, 12.0) for i in range(40)]
    followed = [Followed(0, Box(20, 40, 200, 400))]
    in_line, ahead, unused = (DetectionPlan(tiles, PlanConfig()) for _ in range(3))
    requests, prepared_count = [], 0
    for index, image in enumerate(frames):
        requests.append(in_line.request(index, image, followed))
        ahead.prepare(index, image)   # made twice: the first must have changed nothing
        prepared = ahead.prepare(index, image)
        prepared_count += prepared is not None
        unused.prepare(index, image)
        assert ahead.request(index, image, followed, prepared=prepared) == requests[-1], index
        assert unused.request(index, image, followed) == requests[-1], index
    assert prepared_count >= 15   # every other frame is a visit
    # tiles were judged: searched where the man walked in, skipped elsewhere
    assert 0 < sum(len(r.tiles) for r in requests[1:]) < len(tiles(*room.shape[1::-1]))


def test_tiles_where_a_followed_person_was_lost_are_searched_again_unchanged(tiles):
    """Unchanged pixels normally mean nothing new; but where a followed person was lost, they may
    still stand there, and only the tiles can find a small one again: once the whole-frame pass
    of the frame he was lost in has not found him, every tile around him is searched at the next
    visit (the next frame but one), whatever its slice, and then no more."""
    room = cv2.imread(str(DATA / "home.jpg"))
    plan = DetectionPlan(tiles, PlanConfig(sweep_interval=10, visit_every=2))
    plan.request(0, room, [])
    someone = Box(300, 200, 50, 110)
    assert not [t for i in range(1, 11) for t in plan.request(i, room, [Followed(0, someone)]).tiles]
    requests = [plan.request(i, room, []) for i in range(11, 21)]
    assert requests[0].whole_frame and not requests[0].tiles, "frame 11: the whole frame first"
    overlapping = [t for t in tiles(512, 384) if t[0] < 350 and t[0] + t[2] > 300
                   and t[1] < 310 and t[1] + t[3] > 200]
    assert sorted(requests[1].tiles) == sorted(overlapping), "frame 12: every tile around him"
    assert not [t for r in requests[2:] for t in r.tiles]


def test_tiles_where_a_lost_person_was_found_again_are_not_searched_again(tiles):
    """Lost for one frame, then found again by the whole-frame pass under the same id: the
    tiles around him need no new search."""
    room = cv2.imread(str(DATA / "home.jpg"))
    plan = DetectionPlan(tiles, PlanConfig(sweep_interval=10, visit_every=1))   # frame 11 visits
    plan.request(0, room, [])
    someone = Box(300, 200, 50, 110)
    for i in range(1, 11):
        plan.request(i, room, [Followed(0, someone)])
    while_lost = plan.request(11, room, [Followed(0, None)])
    assert while_lost.whole_frame and not while_lost.tiles
    assert not [t for i in range(12, 31) for t in plan.request(i, room, [Followed(0, someone)]).tiles]


def test_a_lost_person_too_large_for_the_small_tiles_reopens_only_the_large_ones(tiles):
    """A 350 px body cannot be accepted in a 128 or 192 px tile (cut by its edges); losing him
    re-opens only the 288 px tiles around him (the whole frame is searched for him anyway)."""
    room = cv2.imread(str(DATA / "home.jpg"))
    plan = DetectionPlan(tiles, PlanConfig(sweep_interval=10))
    plan.request(0, room, [])
    tall = Box(200, 20, 120, 350)
    for i in range(1, 11):
        plan.request(i, room, [Followed(0, tall)])
    searched = [t for i in range(11, 21) for t in plan.request(i, room, []).tiles]
    assert searched and all(t[2] == 288 for t in searched), searched
