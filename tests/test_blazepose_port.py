"""The LiteRT port of BlazePose (models/blazepose) against MediaPipe 0.10.21's own graphs, on real
photos and video frames: tests/data/blazepose_reference.npz, made by
tests/data/make_blazepose_reference.py (which needs mediapipe; these tests do not).

Tolerances (issue 9): detection keypoints within 1 px and scores within 0.01 at the image's
resolution; landmarks within 1 px; world landmarks within 2 mm."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from blazepose_media import reference_images
from support import DATA, ROOT
from models.blazepose import (ModelUnavailableError, PoseDetector, PoseLandmarker, Roi, ssd_anchors,
                              weighted_nms)

REFERENCE = DATA / "blazepose_reference.npz"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def images(reference):
    built = reference_images()
    assert [name for name, _ in built] == list(reference["image_names"])
    for (name, rgb), digest in zip(built, reference["image_sha256"]):
        # The video frames must decode to the very pixels MediaPipe saw.
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == digest, f"{name} decodes differently"
    return built


@pytest.fixture(scope="module")
def port_detector():
    detector = PoseDetector(num_threads=2)
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def port_landmarker():
    landmarker = PoseLandmarker(num_threads=2)
    yield landmarker
    landmarker.close()


def test_fixture_covers_enough(reference, images):
    assert len({name.split("[")[0] for name, _ in images}) >= 6
    assert len(reference["detections"]) >= 15
    assert np.sum(~np.isnan(reference["landmarks"][:, 0, 0])) >= 25


def test_detections_match_mediapipe(reference, images, port_detector):
    rows = reference["detections"]
    checked = 0
    for index, (name, rgb) in enumerate(images):
        height, width = rgb.shape[:2]
        expected = rows[rows[:, 0] == index]
        found = port_detector.detect(rgb)
        assert len(found) == len(expected), name
        for row in expected:
            keypoints = row[6:14].reshape(4, 2) * [width, height]
            box = np.array([row[2], row[3], row[2] + row[4], row[3] + row[5]]) * np.tile([width, height], 2)
            match = min(found, key=lambda d: np.abs(d.keypoints - keypoints).max())
            assert np.abs(match.keypoints - keypoints).max() < 1.0, name
            assert np.abs(match.face_box - box).max() < 1.0, name
            assert abs(match.score - row[1]) < 0.01, name
            checked += 1
    assert checked == len(rows)


def test_bgr_input_gives_the_same_detections(images, port_detector):
    name, rgb = images[1]   # basketball1.jpg
    from_rgb = port_detector.detect(rgb)
    from_bgr = port_detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]), bgr=True)
    assert len(from_rgb) == len(from_bgr) == 1
    assert np.allclose(from_rgb[0].keypoints, from_bgr[0].keypoints)


def test_lower_threshold_finds_more_and_keeps_the_confident(images, port_detector):
    rgb = dict(images)["group.jpg"]   # MediaPipe's 0.5 finds 1 of the 5 skiers
    default = port_detector.detect(rgb)
    lower = port_detector.detect(rgb, min_score=0.3)
    assert len(lower) > len(default) >= 1
    assert all(d.score >= 0.3 for d in lower)
    assert max(d.score for d in lower) == pytest.approx(max(d.score for d in default), abs=1e-6)


def _reference_roi(values, width, height):
    # MediaPipe's NormalizedRect holds float32, and the graph scaled it to pixels in float32.
    xc, yc, w, h, rotation = np.asarray(values, np.float32)
    f = np.float32
    return Roi(float(xc * f(width)), float(yc * f(height)), float(w * f(width)),
               float(h * f(height)), float(rotation))


def test_landmarks_match_mediapipe(reference, images, port_landmarker):
    compared = 0
    for k, image_index in enumerate(reference["roi_image"]):
        name, rgb = images[image_index]
        height, width = rgb.shape[:2]
        result = port_landmarker.estimate(rgb, _reference_roi(reference["rois"][k], width, height))
        expected = reference["landmarks"][k]
        present = not np.isnan(expected[0, 0])
        assert result.present == present, (name, k, result.presence)
        if not present:
            continue
        assert np.abs(result.image[:, :2] - expected[:, :2] * [width, height]).max() < 1.0, (name, k)
        assert np.abs(result.world - reference["world_landmarks"][k]).max() < 0.002, (name, k)
        assert np.abs(result.visibility - expected[:, 3]).max() < 0.01, (name, k)
        assert np.abs(result.in_frame - expected[:, 4]).max() < 0.01, (name, k)
        compared += 1
    assert compared >= 25


def _roi_error(roi, expected, width, height):
    """(largest centre/size difference in px, rotation difference in radians)."""
    xc, yc, w, h, rotation = expected
    px = max(abs(roi.cx - xc * width), abs(roi.cy - yc * height),
             abs(roi.width - w * width), abs(roi.height - h * height))
    turn = abs((roi.rotation - rotation + np.pi) % (2 * np.pi) - np.pi)
    return px, turn


def test_body_region_from_detection_matches_mediapipe(reference, images, port_detector):
    """PoseDetection.body_roi against MediaPipe's PoseDetectionToRoi for each best detection."""
    for image_index, *expected in reference["detection_rois"]:
        name, rgb = images[int(image_index)]
        height, width = rgb.shape[:2]
        best = port_detector.detect(rgb)[0]
        px, turn = _roi_error(best.body_roi(), expected, width, height)
        assert px < 1.0 and turn < 0.01, (name, px, turn)
    assert len(reference["detection_rois"]) >= 15


def test_next_frame_region_matches_mediapipe(reference, images, port_landmarker):
    """PoseLandmarks.next_roi against MediaPipe's PoseLandmarksToRoi (auxiliary landmarks)."""
    compared = 0
    for k, image_index in enumerate(reference["roi_image"]):
        if np.isnan(reference["next_rois"][k][0]):
            continue
        name, rgb = images[image_index]
        height, width = rgb.shape[:2]
        result = port_landmarker.estimate(rgb, _reference_roi(reference["rois"][k], width, height))
        px, turn = _roi_error(result.next_roi(), reference["next_rois"][k], width, height)
        assert px < 1.0 and turn < 0.01, (name, k, px, turn)
        compared += 1
    assert compared >= 25


def test_detection_region_then_next_frame_region_track_the_body(images, port_detector,
                                                               port_landmarker):
    rgb = dict(images)["basketball1.jpg"]
    (detection,) = port_detector.detect(rgb)
    first = port_landmarker.estimate(rgb, detection.body_roi())
    assert first.present
    # On the same frame, the region from the landmarks finds the same pose again.
    again = port_landmarker.estimate(rgb, first.next_roi())
    assert again.present
    assert np.median(np.linalg.norm(again.image[:, :2] - first.image[:, :2], axis=1)) < 6.0
    # Both regions are centred near the hips.
    hips = (first.image[23, :2] + first.image[24, :2]) / 2
    assert np.linalg.norm(np.array([first.next_roi().cx, first.next_roi().cy]) - hips) < 25


def test_empty_region_reports_no_pose(port_landmarker):
    grey = np.full((300, 300, 3), 128, np.uint8)
    assert not port_landmarker.estimate(grey, Roi(150, 150, 200, 200)).present


def test_anchor_layout_matches_the_model(port_detector):
    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2)
    # The first cell at stride 8 (two anchors), the last at stride 32 (six anchors).
    assert np.allclose(anchors[:2], 0.5 / 28) and np.allclose(anchors[-6:], 6.5 / 7)


def test_weighted_nms_merges_by_score_and_keeps_the_best_score():
    scores = np.array([0.6, 0.9, 0.3])
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.4, 0.4], [0.7, 0.7, 0.9, 0.9]])
    keypoints = np.array([[[0.2, 0.2]], [[0.1, 0.1]], [[0.8, 0.8]]])
    merged = weighted_nms(scores, boxes, keypoints, iou_threshold=0.3)
    assert [round(score, 6) for score, _, _ in merged] == [0.9, 0.3]
    # The first two overlap (IoU 0.39): one person, at the score-weighted mean of both.
    assert np.allclose(merged[0][1], (0.9 * boxes[1] + 0.6 * boxes[0]) / 1.5)
    assert np.allclose(merged[0][2], [[(0.9 * 0.1 + 0.6 * 0.2) / 1.5] * 2])
    assert np.allclose(merged[1][1], boxes[2])


def test_missing_or_broken_model_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match="missing"):
        PoseDetector(model_path=tmp_path / "nowhere.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelUnavailableError, match="cannot load"):
        PoseLandmarker(model_path=broken)


def test_closed_model_refuses():
    detector = PoseDetector()
    detector.close()
    with pytest.raises(RuntimeError, match="after close"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


def test_importing_the_port_does_not_import_torch_or_mediapipe():
    code = ("import sys, models.blazepose; "
            "print(sorted(m for m in ('torch', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
