"""The progress bar of a headless run over a file (tqdm's), and the end-of-run summary line."""
from __future__ import annotations

import sys
from typing import Sequence


def frame_progress(total: int | None, label: str = "processing"):
    """A tqdm bar counting frames on stderr; `total` None (a camera, a looping input) shows a
    count and rate instead of a bar. Drawn only on a terminal: in a log file its redraws would
    pile up, and the summary line says what was done."""
    from tqdm import tqdm   # imported here: a window or camera run never needs it
    return tqdm(total=total if total and total > 0 else None, desc=label, unit="frame",
                file=sys.stderr, dynamic_ncols=True, mininterval=0.2, disable=None, leave=True)


def format_summary(frames: int, seconds: float, people: int,
                   files: Sequence[str] = (), interrupted: bool = False) -> str:
    """The end-of-run line, e.g.
    "Processed 300 frames in 24.4 s (12.3 fps), 412 people found; wrote out.mp4, out.json."
    people: person detections summed over frames."""
    fps = frames / seconds if seconds > 0 else 0.0
    head = "Stopped after" if interrupted else "Processed"
    noun = "frame" if frames == 1 else "frames"
    who = "1 person" if people == 1 else f"{people} people"
    text = f"{head} {frames} {noun} in {seconds:.1f} s ({fps:.1f} fps), {who} found"
    text += f"; wrote {', '.join(str(f) for f in files)}." if files else "; no files written."
    return text
