"""The pose stage's plumbing around the network: crops uploaded as bytes and normalized where
the network runs, big groups split into warmed-up batch sizes, warm-up on the inferring thread,
and detection of the next frame beside this frame's poses. The CUDA path shares this code; what
needs no GPU is checked here on the CPU."""
import json
import threading

import cv2
import numpy as np
import torch

from app import estimator, frame_loop
from app.cli import main
from app.estimator import MAX_BATCH, CropUploader, estimate_poses, warm_up_batches
from support import DATA
from models import load_convnextpose

TINY = str(DATA / "ConvNeXtPose_TINY.tar")


def _reference_normalization(crops_bgr):
    batch = np.stack(crops_bgr)[..., ::-1].astype(np.float64) / 255.0
    batch = (batch - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return batch.transpose(0, 3, 1, 2)


def test_uploader_normalizes_bytes_into_channels_last_rgb():
    photo = cv2.imread(str(DATA / "group.jpg"))
    crops = [np.ascontiguousarray(photo[y:y + 256, x:x + 256]) for x, y in ((0, 0), (200, 40), (384, 136))]
    images = CropUploader("cpu")(crops)
    assert images.shape == (3, 3, 256, 256) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(images.numpy(), _reference_normalization(crops), atol=1e-5)


def test_warm_up_plan_covers_every_batch_a_run_can_meet():
    assert warm_up_batches("cuda") == list(range(1, MAX_BATCH + 1))
    assert warm_up_batches("cuda:1", max_batch=3) == [1, 2, 3]
    assert warm_up_batches("cpu") == [1]


class _Recording(torch.nn.Module):
    """Wraps a network and records the batch sizes and threads it was run with, and whether
    its input was blank (one value per colour channel: a warm-up's picture, not a person)."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.config = network.config
        self.calls = []
        self.blank = []

    def forward_with_confidence(self, images):
        self.calls.append((images.shape[0], threading.current_thread().name))
        self.blank.append(bool((images.amax(dim=(2, 3)) == images.amin(dim=(2, 3))).all()))
        return self.network.forward_with_confidence(images)


def test_more_people_than_one_batch_go_through_in_several_passes_with_the_same_answers(group_boxes):
    photo = cv2.imread(str(DATA / "group.jpg"))
    network = load_convnextpose(TINY)
    people = [tuple(b) for b in group_boxes["bboxes"]]
    boxes = (people * MAX_BATCH)[:MAX_BATCH + 3]
    recording = _Recording(network)
    timing = {}
    split = estimate_poses(recording, photo, boxes, (1000, 1000), (photo.shape[1] / 2, photo.shape[0] / 2),
                           timing=timing)
    assert [n for n, _ in recording.calls] == [MAX_BATCH, len(boxes) - MAX_BATCH]
    assert timing["network_ms"] > 0
    for box, estimate in zip(boxes, split):
        alone = estimate_poses(network, photo, [box], (1000, 1000), (photo.shape[1] / 2, photo.shape[0] / 2))[0]
        np.testing.assert_allclose(estimate.pose_3d_rel, alone.pose_3d_rel, atol=1e-2)


def test_warm_up_runs_on_the_thread_that_infers(tmp_path, monkeypatch):
    recordings = []
    real_backend = estimator.ConvNeXtPoseBackend

    def recording_backend(model, **kwargs):
        wrapped = _Recording(model)
        wrapped.compute_path = "fp32"
        recordings.append(wrapped)
        return real_backend(wrapped, **kwargs)
    monkeypatch.setattr(estimator, "ConvNeXtPoseBackend", recording_backend)
    assert main(["--input", str(DATA / "basketball1.jpg"), "--model", TINY, "--no-display",
                 "--output", str(tmp_path / "out.jpg")]) == 0
    calls = recordings[0]
    assert {name for _, name in calls.calls} == {"infer"}
    # warmed up before the photo: blank pictures first, the person after
    assert calls.blank[0] and not calls.blank[-1], calls.blank


# on the CPU, whose answers repeat to the bit (cuDNN's autotuning may pick other kernels per run)
TINY_ON_CPU = ("--model", TINY, "--detect-every", "2", "--device", "cpu")


def _export(tmp_path, clip_path, name, model_options=TINY_ON_CPU):
    """The joints of the clip's 20 frames, as exported."""
    export = tmp_path / name
    assert main(["--input", str(clip_path), *model_options, "--no-display", "--max-frames", "20",
                 "--export", str(export)]) == 0
    return json.loads(export.read_text())["frames"]


def _assert_same_answers(expected, got):
    """The same frames, the same people in the same order, the same 3D joints."""
    assert [f["index"] for f in got] == [f["index"] for f in expected] == list(range(20))
    for a, b in zip(expected, got):
        assert [p["id"] for p in a["people"]] == [p["id"] for p in b["people"]]
        for pa, pb in zip(a["people"], b["people"]):
            np.testing.assert_allclose(pa["joints_3d"], pb["joints_3d"], atol=1e-3)


def test_detecting_the_next_frame_beside_this_frames_poses_changes_no_answer(tmp_path, monkeypatch):
    from support import drifting_clip
    clip_path = drifting_clip(tmp_path / "clip.mp4", frames=20)
    serial = _export(tmp_path, clip_path, "serial.json")
    from app.detection_plan import DetectionPlan
    from app.detector import PersonDetector
    ahead = {"candidates": 0, "prepared": 0}   # made on the helper thread
    real_candidates, real_prepare = PersonDetector.candidates, DetectionPlan.prepare

    def candidates(self, *args, **kwargs):
        ahead["candidates"] += threading.current_thread().name.startswith("detect")
        return real_candidates(self, *args, **kwargs)

    def prepare(self, *args, **kwargs):
        made = real_prepare(self, *args, **kwargs)
        ahead["prepared"] += made is not None and threading.current_thread().name.startswith("detect")
        return made
    monkeypatch.setattr(frame_loop, "overlaps_detection", lambda backend: True)
    monkeypatch.setattr(PersonDetector, "candidates", candidates)
    monkeypatch.setattr(DetectionPlan, "prepare", prepare)
    overlapped = _export(tmp_path, clip_path, "overlapped.json")
    assert ahead["candidates"] >= 5, "whole-frame passes were started ahead"
    assert ahead["prepared"] >= 5, "the plan's thumbnails were made ahead"
    _assert_same_answers(serial, overlapped)


def test_the_fallback_detects_the_next_frame_beside_its_poses_with_the_same_answers(tmp_path, monkeypatch):
    """On the CPU the fallback's landmark network leaves room for the helper thread (measured
    faster), so the loop uses it by default; the answers are those of detecting in line."""
    from support import drifting_clip
    from app.detection_plan import DetectionPlan
    clip_path = drifting_clip(tmp_path / "clip.mp4", frames=20)
    on_helper = []
    real_prepare = DetectionPlan.prepare

    def prepare(self, *args, **kwargs):
        on_helper.append(threading.current_thread().name.startswith("detect"))
        return real_prepare(self, *args, **kwargs)
    monkeypatch.setattr(DetectionPlan, "prepare", prepare)
    beside = _export(tmp_path, clip_path, "beside.json", ("--model", "blazepose"))
    assert sum(on_helper) >= 5, "the plan's thumbnails were made on the helper thread"
    monkeypatch.setattr(frame_loop, "overlaps_detection", lambda backend: False)
    on_helper.clear()
    in_line = _export(tmp_path, clip_path, "in_line.json", ("--model", "blazepose"))
    assert not any(on_helper)
    assert sum(len(f["people"]) for f in beside) >= 60   # the photo's people, found and followed
    _assert_same_answers(in_line, beside)


def test_convnextpose_detects_beside_its_poses_only_on_an_accelerator():
    network = load_convnextpose(TINY)
    backend = estimator.ConvNeXtPoseBackend(network)
    assert backend.device == "cpu" and not frame_loop.overlaps_detection(backend)
    backend.device = "cuda:0"
    assert frame_loop.overlaps_detection(backend)
