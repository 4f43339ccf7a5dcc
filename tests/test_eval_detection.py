"""The detection yardstick: annotations lie on their images, and the scoring counts what it says."""
import json

import cv2

from app.types import Box
from benchmarks.eval_detection import GROUND_TRUTH, score_frame
from support import DATA



def test_annotated_boxes_lie_on_their_images():
    files = json.loads(GROUND_TRUTH.read_text())["files"]
    for name in ("group.jpg", "basketball1.jpg", "messi5.jpg", "home.jpg", "fruits.jpg", "pedestrians.mp4"):
        if name.endswith(".mp4"):
            capture = cv2.VideoCapture(str(DATA / name))
            size = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            capture.release()
        else:
            image = cv2.imread(str(DATA / name))
            size = (image.shape[1], image.shape[0])
        for boxes in files[name]["frames"].values():
            for x, y, w, h in boxes:
                assert w > 0 and h > 0 and x >= 0 and y >= 0
                assert x + w <= size[0] + 1 and y + h <= size[1] + 1, (name, x, y, w, h)


def test_scoring_matches_one_to_one_by_height_bucket_and_ignores_the_crowd():
    truth = [[0, 0, 50, 120], [100, 0, 30, 80], [200, 0, 10, 30]]
    exact = [Box(*t) for t in truth]
    score = score_frame(exact, truth)
    assert (score.tall, score.tall_found, score.small, score.small_found) == (1, 1, 1, 1)
    assert (score.tiny_found, score.reported, score.reported_real) == (1, 3, 3)
    # Two reports on one person: one is real, the other a duplicate. A far-off box is false.
    score = score_frame([Box(0, 0, 50, 120), Box(2, 2, 50, 118), Box(400, 400, 20, 50)], truth)
    assert (score.tall_found, score.small_found, score.reported, score.reported_real) == (1, 0, 3, 1)
    # Reports inside an ignore region count neither way.
    score = score_frame([Box(400, 400, 20, 50)], truth, ignore=[[380, 380, 100, 100]])
    assert score.reported == 0
