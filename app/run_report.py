"""What a run did and how it is shown: frames, people, time per stage, latency and memory,
accounted frame by frame (RunAccount); the progress bar (tqdm's) and the end-of-run summary
line; the --benchmark report and the pipeline's efficiency."""
from __future__ import annotations

import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .memory import rss_mb, trim_heap
from .types import FrameResult


@dataclass
class RunSummary:
    frames: int = 0
    people: int = 0                       # distinct people: track ids (unrelated photos: per photo)
    person_frames: int = 0                # people summed over frames
    seconds: float = 0.0
    first_frame_s: float | None = None    # from process launch to the first frame processed
    warm_up_start_s: float | None = None  # from launch to the warm-up: imports, model load, precision race
    warm_up_s: float | None = None        # the warm-up itself (every batch size; CUDA graphs)
    files: list[str] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)   # mean per frame
    rss_mb: dict[str, float] = field(default_factory=dict)      # after warm-up, at the end
    rss_samples_mb: list[float] = field(default_factory=list)   # every RSS_SAMPLE_EVERY frames
    # per frame, ms: from the frame's arrival to its result being shown and written; and the
    # work done on it (detect + pose + track + render + write), the rest being waiting
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    processing_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    # the frames after the first, apart: a video's first frame searches every tile of the sweep
    # at once (the people search's start, ~0.4 s on a 640x480 CPU run), later frames a share
    seconds_after_first: float | None = None
    model_ms_after_first: float | None = None   # mean per frame

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class RunAccount:
    """Adds up a run frame by frame into its RunSummary; samples resident memory as it goes."""

    WARMUP_FRAMES = 100       # resident memory is sampled after these, and at the end
    RSS_SAMPLE_EVERY = 1000   # ... and every so many frames between, to show its course
    TRIM_EVERY = 500          # frames between handing free heap back to the OS (memory.py), at
                              # 250, 750, ...: samples fall between trims and count what builds up

    def __init__(self, photos_unrelated: bool = False):
        """photos_unrelated: each frame is its own photo (a new tracker each), so its people
        are new people; otherwise a person is a track id, however many frames it spans."""
        self.summary = RunSummary()
        self._photos_unrelated = photos_unrelated
        self._track_ids: set[int] = set()
        self._stage_totals: dict[str, float] = {}
        # time.perf_counter() when the first frame's processing ended: the next frame's began
        # then, though it may be shown only later (frames are processed ahead of being shown)
        self._first_done: float | None = None
        self._first_model_ms = 0.0

    def add(self, result: FrameResult) -> None:
        """One frame shown and written: its latency since capture, its work, its people."""
        summary = self.summary
        summary.latency_ms.append((time.monotonic() - result.frame.captured) * 1000.0)
        summary.processing_ms.append(sum(v for k, v in result.stages_ms.items() if k != "read"))
        summary.frames += 1
        if summary.frames == 1:
            self._first_done = result.processed_at if result.processed_at is not None else time.perf_counter()
            self._first_model_ms = result.model_ms
        summary.person_frames += len(result.people)
        self._track_ids.update(p.track_id for p in result.people)
        for stage, ms in dict(result.stages_ms, model=result.model_ms).items():
            self._stage_totals[stage] = self._stage_totals.get(stage, 0.0) + ms
        if summary.frames == self.WARMUP_FRAMES:
            summary.rss_mb["warm"] = round(rss_mb(), 1)
        elif summary.frames % self.RSS_SAMPLE_EVERY == 0:
            summary.rss_samples_mb.append(round(rss_mb(), 1))
        if summary.frames % self.TRIM_EVERY == self.TRIM_EVERY // 2:
            trim_heap()

    def finish(self, seconds: float, end: float | None = None) -> RunSummary:
        """seconds: the run's processing time; end: its time.perf_counter() at the end (for the
        figures after the first frame)."""
        summary = self.summary
        summary.seconds = seconds
        if end is not None and self._first_done is not None and summary.frames > 1:
            summary.seconds_after_first = end - self._first_done
            summary.model_ms_after_first = \
                (self._stage_totals.get("model", 0.0) - self._first_model_ms) / (summary.frames - 1)
        if "warm" in summary.rss_mb:
            summary.rss_mb["end"] = round(rss_mb(), 1)
            summary.rss_mb["growth"] = round(summary.rss_mb["end"] - summary.rss_mb["warm"], 1)
        summary.people = summary.person_frames if self._photos_unrelated else len(self._track_ids)
        n = max(1, summary.frames)
        summary.stages_ms = {k: v / n for k, v in self._stage_totals.items()}
        return summary


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
    "Processed 300 frames in 24.4 s (12.3 fps), 7 people found; wrote out.mp4, out.json."
    people: distinct people (RunSummary.people)."""
    fps = frames / seconds if seconds > 0 else 0.0
    head = "Stopped after" if interrupted else "Processed"
    noun = "frame" if frames == 1 else "frames"
    who = "1 person" if people == 1 else f"{people} people"
    text = f"{head} {frames} {noun} in {seconds:.1f} s ({fps:.1f} fps), {who} found"
    text += f"; wrote {', '.join(str(f) for f in files)}." if files else "; no files written."
    return text


def finite_json(value):
    """The report with NaN and infinities as null: the line must stay valid JSON."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pipeline_efficiency(summary: RunSummary, network_alone_ms: float | None) -> dict:
    """End-to-end FPS against what the model alone would allow: fps / (1000 / model ms per frame),
    1.0 when nothing is lost around the model.

    `ratio` takes the model's time as measured inside this run, frame by frame, so both sides
    see the same machine load (the machines are shared; load changes by the minute).
    `ratio_vs_network_alone` takes the network timed alone on the last frame's crops right after
    the run: it also counts what the network loses to the other threads, but a change in the
    machine's load between the two moments moves it too.
    `after_first_frame` is `ratio` over the frames after the first, whose whole sweep for people
    is a one-off cost that weighs on a short run (its time is in `startup_s.to_first_frame`)."""
    report = {}
    model_ms = summary.stages_ms.get("model", 0.0)
    if model_ms > 0 and summary.fps > 0:
        report["ratio"] = round(summary.fps * model_ms / 1000.0, 3)
        report["model_ms"] = round(model_ms, 2)
    if summary.seconds_after_first and summary.model_ms_after_first:
        fps = (summary.frames - 1) / summary.seconds_after_first
        report["after_first_frame"] = {"ratio": round(fps * summary.model_ms_after_first / 1000.0, 3),
                                       "fps": round(fps, 2),
                                       "model_ms": round(summary.model_ms_after_first, 2)}
    if network_alone_ms and summary.fps > 0:
        report["ratio_vs_network_alone"] = round(summary.fps * network_alone_ms / 1000.0, 3)
        report["network_alone_ms"] = network_alone_ms
    return report


def benchmark_report(summary: RunSummary, backend, source) -> dict:
    stages = {k: round(summary.stages_ms.get(k, 0.0), 3)
              for k in ("read", "detect", "pose", "model", "track", "render", "write")}
    report = {"frames": summary.frames, "fps": round(summary.fps, 2), "stages_ms": stages,
              "device": backend.device, "model": backend.name}
    if summary.first_frame_s is not None:
        report["startup_s"] = {"to_first_frame": round(summary.first_frame_s, 3)}
        if summary.warm_up_s is not None:
            report["startup_s"] |= {"to_warm_up": round(summary.warm_up_start_s, 3),
                                    "warm_up": round(summary.warm_up_s, 3)}
    if summary.rss_mb:
        report["rss_mb"] = dict(summary.rss_mb, samples=summary.rss_samples_mb)
    if source.is_live and summary.latency_ms:
        # A camera's promise: latency at most one frame interval beyond the processing time.
        latency = np.array(summary.latency_ms)
        waiting = latency - np.array(summary.processing_ms)
        report["latency_ms"] = {"mean": round(float(latency.mean()), 2),
                                "p95": round(float(np.percentile(latency, 95)), 2),
                                "processing_mean": round(float(np.mean(summary.processing_ms)), 2),
                                "beyond_processing_p95": round(float(np.percentile(waiting, 95)), 2),
                                "frame_interval": round(1000.0 / source.fps, 2)}
        # frames the camera delivered while the loop was busy with an earlier one
        report["frames_dropped"] = int(getattr(source, "frames_dropped", 0))
    return report
