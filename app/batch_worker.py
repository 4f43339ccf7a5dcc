"""One batch worker: loads the model once, then runs the single-run frame loop (run.py builds it)
on one video after another with it. Local worker processes and Ray actors both wrap this.

A video's failure (corrupt file, unwritable output, a bug on some frame) is caught here and
becomes its result, so it never takes the worker or the other videos down. A stop request
(Ctrl-C on the driver) ends the video after the frame being written, with its outputs closed
complete, as the end of the input would.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .batch_manifest import VideoResult
from .batch_plan import VideoJob
from .errors import UserError
from .settings import OutputSettings, Settings

log = logging.getLogger(__name__)

REPORT_EVERY_S = 0.25   # how often a worker sends its frame count (and hears about a stop)


@dataclass(frozen=True)
class WorkerConfig:
    """What every video of a batch is processed with: a single run's settings, less the input
    and the outputs (each video's own), and the CPU threads a worker's model may use. The
    model in template.pose is an absolute checkpoint path, or "blazepose"."""
    template: Settings
    threads: int = 1

    @property
    def model(self) -> str:
        return self.template.pose.model

    @property
    def max_frames(self) -> int | None:
        return self.template.input.max_frames


class Channel(Protocol):
    """How a worker talks to the batch driver while a video runs."""

    def started(self, job: VideoJob, frame_count: int | None) -> None: ...
    def frames_done(self, job: VideoJob, count: int) -> None: ...
    def stop_requested(self) -> bool: ...


class _Lent:
    """A model lent to one video's frame loop: the loop closes what it was given at its end,
    but the worker keeps this one for its next video."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def close(self) -> None:
        pass


class _FrameReporter:
    """Stands where the single run's progress bar stands in the frame loop (update() once per
    written frame): forwards the count in batches and stops the loop when the driver asks."""

    def __init__(self, channel: Channel, job: VideoJob, loop):
        self.channel, self.job, self.loop = channel, job, loop
        self.pending = 0
        self.last = time.monotonic()
        self.stopped = False

    def update(self, n: int = 1) -> None:
        self.pending += n
        now = time.monotonic()
        if now - self.last >= REPORT_EVERY_S:
            self.flush()
            self.last = now
        if not self.stopped and self.channel.stop_requested():
            self.stopped = True
            self.loop.request_stop()

    def flush(self) -> None:
        if self.pending:
            self.channel.frames_done(self.job, self.pending)
            self.pending = 0


def limit_threads(threads: int) -> None:
    """Keep this process to its share of the cores (set before the model's libraries start
    their thread pools)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import cv2
    cv2.setNumThreads(threads)


class VideoWorker:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.startup_error: str | None = None
        self.backend = self.detector = None
        limit_threads(config.threads)
        try:
            from .backends import create_backend
            from .detector import PersonDetector
            from .native_logs import native_stderr_silenced
            try:
                # the models' native start-up lines would come from every worker
                with native_stderr_silenced():
                    pose = config.template.pose
                    self.backend = create_backend(pose.model, pose.device, pose.precision)
                    if config.model != "blazepose":
                        import torch
                        torch.set_num_threads(config.threads)
                    self.detector = PersonDetector(config.template.detector)
                    _warm_up(self.detector, self.backend)
            except UserError as error:
                self.startup_error = str(error)
        except Exception as error:   # reported as the batch's error, not a worker traceback
            self.startup_error = f"{type(error).__name__}: {error}"

    def settings_for(self, job: VideoJob) -> Settings:
        template = self.config.template
        return replace(template, input=replace(template.input, source=job.input),
                       outputs=OutputSettings(video=job.video_output, export=job.export_output))

    def process(self, job: VideoJob, channel: Channel) -> VideoResult:
        if self.startup_error is not None:
            return VideoResult(job.input, "failed", error=self.startup_error, fatal=True)
        if channel.stop_requested():
            return VideoResult(job.input, "pending")
        started = time.perf_counter()
        try:
            return self._run(job, channel, started)
        except UserError as error:
            message = str(error)
        except Exception as error:   # one video's failure stays that video's
            log.exception("video %s failed", job.input)
            message = f"{type(error).__name__}: {error}"
        return VideoResult(job.input, "failed", seconds=time.perf_counter() - started, error=message)

    def _run(self, job: VideoJob, channel: Channel, started: float) -> VideoResult:
        from .run import build_loop
        from .outputs import check_output_path
        from .sources import open_source

        for path in job.outputs:
            # a killed earlier attempt's temporaries are removed by the sinks (app/outputs/atomic.py)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if job.video_output:
            check_output_path(job.video_output, "video")
        check_output_path(job.export_output, "export")
        from .native_logs import native_stderr_silenced
        with native_stderr_silenced():   # FFmpeg's own lines about a bad file: the error says it
            source = open_source(job.input)
        if source.is_still or source.is_live:
            source.close()
            raise UserError(f"'{job.input}' is not a video file.")
        channel.started(job, _expected_frames(source.frame_count, self.config.max_frames))
        opened = [source]
        try:
            loop = build_loop(self.settings_for(job), source, False, opened,
                              backend=_Lent(self.backend), detector=_Lent(self.detector))
        except BaseException:
            for thing in reversed(opened):
                thing.close()
            raise
        reporter = _FrameReporter(channel, job, loop)
        loop.progress = reporter
        try:
            summary = loop.run()
        except Exception as error:   # the outputs are closed complete with the frames done
            if not isinstance(error, UserError):
                log.exception("video %s failed", job.input)
            return VideoResult(job.input, "failed", frames=loop.summary.frames,
                               seconds=time.perf_counter() - started, outputs=list(loop.sinks.files),
                               error=str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}")
        finally:
            reporter.flush()
        outputs = list(loop.sinks.files)
        expected = _expected_frames(source.frame_count, self.config.max_frames)
        complete = not reporter.stopped or (expected is not None and summary.frames >= expected)
        status = "ok" if complete else "interrupted"
        note = ""
        if status == "ok" and getattr(source, "frames_unreadable", 0):
            # skipped frames may be anywhere in the file, not only at a truncated end
            note = (f"{source.frames_unreadable} of its {source.frame_count} frames could not be decoded "
                    f"(the file is damaged or truncated): the outputs hold the {summary.frames} that could")
        if status == "interrupted":
            note = f"stopped after {summary.frames} frames: the outputs hold those"
        return VideoResult(job.input, status, frames=summary.frames,
                           seconds=time.perf_counter() - started, outputs=outputs, error=note)

    def close(self) -> None:
        for thing in (self.detector, self.backend):
            close = getattr(thing, "close", None)
            if close is not None:
                close()


def _warm_up(detector, backend) -> None:
    """One pass on a blank frame, so each graph has started (and said its start-up lines,
    silenced) before the worker returns."""
    import numpy as np

    from .types import Box, Camera
    blank = np.zeros((256, 256, 3), np.uint8)
    detector.detect(blank)
    backend.estimate(blank, [Box(64, 26, 128, 204)], Camera.from_fov(256, 256, 60.0))


def _expected_frames(frame_count: int | None, max_frames: int | None) -> int | None:
    if frame_count is None:
        return max_frames
    return min(frame_count, max_frames) if max_frames else frame_count

