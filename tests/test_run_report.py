"""The run's one-line summary (the progress bar itself is tqdm's), and its efficiency figures."""
from __future__ import annotations

import time

import numpy as np
import pytest

from app.run_report import RunAccount, format_summary, pipeline_efficiency
from app.types import Frame, FrameResult


def test_summary_line():
    assert format_summary(300, 24.4, 7, ["out.mp4", "out.json"]) == \
        "Processed 300 frames in 24.4 s (12.3 fps), 7 people found; wrote out.mp4, out.json."
    assert format_summary(1, 0.5, 1, [], interrupted=True) == \
        "Stopped after 1 frame in 0.5 s (2.0 fps), 1 person found; no files written."


FIRST_DONE = 1000.0   # time.perf_counter() when the first frame's processing ended, in these accounts


def _account_of(model_ms_per_frame) -> tuple[RunAccount, float]:
    """An account of frames with these model times, each processed 10 ms after the one before
    from the first frame's end on; and the time at which the last was done."""
    account = RunAccount()
    image = np.zeros((4, 4, 3), np.uint8)
    for index, model_ms in enumerate(model_ms_per_frame):
        account.add(FrameResult(Frame(index, index / 30, image), stages_ms={"pose": model_ms},
                                model_ms=model_ms, processed_at=FIRST_DONE + index * 0.010))
    return account, FIRST_DONE + (len(model_ms_per_frame) - 1) * 0.010


def test_efficiency_over_the_whole_run_and_after_its_first_frame():
    """A first frame that took 100 ms of model time, then nine of 10 ms each, shown 10 ms apart
    (nothing lost around the model after the first frame)."""
    account, end = _account_of([100.0] + [10.0] * 9)
    summary = account.finish(0.190, end)   # the 190 ms of model time, and nothing else
    report = pipeline_efficiency(summary, None)
    assert report["model_ms"] == pytest.approx(19.0)
    assert report["ratio"] == pytest.approx(1.0, abs=1e-3)
    after = report["after_first_frame"]
    assert after["model_ms"] == pytest.approx(10.0)
    assert after["fps"] == pytest.approx(100.0)
    assert after["ratio"] == pytest.approx(1.0)


def test_frames_processed_ahead_of_being_shown_count_from_the_first_ones_end():
    """Two frames processed 10 ms apart, both shown only at the end (the main thread was busy):
    the second took 10 ms, not the instant between the two showings."""
    account = RunAccount()
    image = np.zeros((4, 4, 3), np.uint8)
    for index in range(2):
        account.add(FrameResult(Frame(index, index / 30, image), stages_ms={"pose": 10.0}, model_ms=10.0,
                                processed_at=FIRST_DONE + index * 0.010))
    after = pipeline_efficiency(account.finish(0.020, FIRST_DONE + 0.010), None)["after_first_frame"]
    assert after["fps"] == pytest.approx(100.0) and after["ratio"] == pytest.approx(1.0)


def test_time_lost_around_the_model_lowers_the_ratio():
    """The same frames in twice the time: half of the run is spent outside the model. Against
    the network timed alone at 5 ms a frame (200 fps), the run's 26.3 fps are 0.132 of it."""
    account, end = _account_of([100.0] + [10.0] * 9)
    report = pipeline_efficiency(account.finish(0.380, end), 5.0)
    assert report["model_ms"] == pytest.approx(19.0)
    assert report["ratio"] == pytest.approx(0.5, abs=1e-3)
    assert report["ratio_vs_network_alone"] == pytest.approx(0.132, abs=1e-3)
    assert report["network_alone_ms"] == 5.0


def test_a_single_frame_has_no_figures_after_it():
    account = RunAccount()
    account.add(FrameResult(Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8)), stages_ms={"pose": 5.0},
                            model_ms=5.0))
    summary = account.finish(0.01, time.perf_counter())
    assert "after_first_frame" not in pipeline_efficiency(summary, None)
