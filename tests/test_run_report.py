"""The run's one-line summary (the progress bar itself is tqdm's)."""
from __future__ import annotations

from app.run_report import format_summary


def test_summary_line():
    assert format_summary(300, 24.4, 7, ["out.mp4", "out.json"]) == \
        "Processed 300 frames in 24.4 s (12.3 fps), 7 people found; wrote out.mp4, out.json."
    assert format_summary(1, 0.5, 1, [], interrupted=True) == \
        "Stopped after 1 frame in 0.5 s (2.0 fps), 1 person found; no files written."
