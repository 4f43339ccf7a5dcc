"""The frame loop: source -> detector -> pose backend -> tracker/smoother -> renderer -> sinks.

Three stages overlap:
  the source's    reading: a file decodes every frame in order, a bounded number ahead; a camera
  own thread      or stream keeps only its newest frame (app/sources/)
  infer thread    pulls the next frame from the source, then detection (when the detection plan
                  says), pose, tracking and smoothing; results go on a bounded queue
  main thread     composition, window, encoding and export (GUI calls must stay on it)
Every sink is finalized in a `finally`, so Ctrl-C, end of stream or an error leaves complete files.
Building the stages from the settings is app/run.py's; what the run did, app/run_report.py's.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import signals
from .launch_clock import seconds_since_launch
from .memory import keep_freed_memory
from .run_report import RunAccount, RunSummary
from .types import Box, Camera, Frame, FrameResult

log = logging.getLogger(__name__)

QUEUE_DEPTH = 4          # frames in flight between two stages: bounds memory and latency
_END = object()          # end of stream marker


class _Failure:
    """An exception raised on a worker thread, carried to the main thread to be re-raised."""

    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the run is stopping; never blocks forever on a full queue."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


@dataclass
class _Ahead:
    """What the helper thread makes of the next frame while this frame's poses are computed."""
    index: int
    candidates: Future | None    # the whole frame's detector candidates, when a pass is certain
    prepared: Future             # the detection plan's thumbnail and change maps (plan.prepare)


def overlaps_detection(backend) -> bool:
    """Whether detection of the next frame runs beside this frame's poses: as the backend says
    (PoseBackend.detects_beside); a duck-typed backend that does not say detects in line."""
    return bool(getattr(backend, "detects_beside", False))


class FrameLoop:
    """Owns the stages of one run and moves frames through them."""

    def __init__(self, camera_settings, source, detector, backend, tracker, scene, viewer, sinks,
                 plot_recorder=None, info_type=dict, floor=None, fresh_tracker=None,
                 warm_up=None, overlap_detection=None, plan=None):
        """plan: when and where to detect in each frame (app/detection_plan.py; by default one
        with the default settings). warm_up: run once on the inferring thread before its first
        frame. overlap_detection:
        detect people in frame t+1 on a helper thread while frame t's poses are computed; by
        default as the backend says (PoseBackend.detects_beside)."""
        self.camera_settings = camera_settings   # CameraSettings: intrinsics for each frame size
        self.warm_up = warm_up
        if overlap_detection is None:
            overlap_detection = overlaps_detection(backend)
        self._detect_ahead = ThreadPoolExecutor(1, thread_name_prefix="detect") if overlap_detection else None
        self._ahead: _Ahead | None = None   # what the helper thread is making of the next frame
        if plan is None and detector is not None:
            from .detection_plan import DetectionPlan, PlanConfig
            plan = DetectionPlan(detector.tiles, PlanConfig(stills=source.is_still or fresh_tracker is not None))
        self.plan = plan
        self._lookahead = None                              # a frame taken early from the source
        self.info_type = info_type
        self.progress = None
        self.source = source
        self.detector = detector
        self.backend = backend
        self.tracker = tracker
        self.scene = scene
        self.viewer = viewer
        self.sinks = sinks
        self.plot_recorder = plot_recorder
        self.floor = floor            # FloorFitter: stands everybody on one floor
        # unrelated photos: each frame gets a new tracker, so nothing carries over between them
        self.fresh_tracker = fresh_tracker
        self.camera: Camera | None = None
        self.stop = threading.Event()
        self._stop_requested = threading.Event()
        # A live source already keeps only its newest frame; queueing more would add latency.
        self.results_q: queue.Queue = queue.Queue(maxsize=1 if source.is_live else QUEUE_DEPTH)
        self._frames = None   # the source's iterator, made on the infer thread
        self._warm: float | None = None   # when the warm-up ended
        self.account = RunAccount(photos_unrelated=fresh_tracker is not None)
        self.last_with_people: FrameResult | None = None

    @property
    def summary(self) -> RunSummary:
        """What the run has done so far (complete once run() has returned)."""
        return self.account.summary

    def request_stop(self) -> None:
        """End the run after the frame being presented: every output holds whole frames and is
        closed complete, as at the end of the input (a batch stops its videos so on Ctrl-C)."""
        self._stop_requested.set()

    # ---- reading, detection, pose, tracking (the infer thread) ----
    def _infer(self) -> None:
        try:
            if self.warm_up is not None:
                summary = self.account.summary
                summary.warm_up_start_s = seconds_since_launch()
                self.warm_up()
                summary.warm_up_s = seconds_since_launch() - summary.warm_up_start_s
            self._warm = time.perf_counter()   # processing time starts here, not at start-up
            while not self.stop.is_set():
                item = self._next_frame()
                if item is _END:
                    _put(self.results_q, item, self.stop)
                    return
                frame, read_ms = item
                _put(self.results_q, self.process(frame, read_ms), self.stop)
        except BaseException as error:
            _put(self.results_q, _Failure(error), self.stop)

    def _next_frame(self):
        """The source's next frame and how long it was waited for: the next decoded frame of a
        file, in order; the newest frame of a camera or stream, taken when inference is ready
        for it, so latency stays within one frame interval of the processing time."""
        if self._lookahead is not None:
            item, self._lookahead = self._lookahead, None
            return item
        if self._frames is None:
            self._frames = iter(self.source)
        start = time.perf_counter()
        frame = next(self._frames, None)
        if frame is None:
            return _END
        return frame, (time.perf_counter() - start) * 1000.0

    def process(self, frame: Frame, read_ms: float = 0.0) -> FrameResult:
        """One frame through detection, pose and tracking."""
        image = frame.image
        if self.camera is None or (self.camera.cx, self.camera.cy) != (image.shape[1] / 2, image.shape[0] / 2):
            self.camera = self.camera_settings.camera(image.shape[1], image.shape[0])
        stages = {"read": read_ms}
        start = time.perf_counter()
        if self.fresh_tracker is not None and frame.index > 0:
            self.tracker = self.fresh_tracker()
        boxes = self.tracker.boxes(self._detections(frame.index, image))
        stages["detect"] = (time.perf_counter() - start) * 1000.0
        self._start_detecting_next(frame.index)
        start = time.perf_counter()
        estimates = self.backend.estimate(image, boxes, self.camera) if boxes else []
        stages["pose"] = (time.perf_counter() - start) * 1000.0
        # the model's own share of the pose stage; a backend that cannot separate it counts whole
        model_ms = getattr(self.backend, "last_model_ms", None) if boxes else 0.0   # duck-typed backends too
        model_ms = stages["pose"] if model_ms is None else model_ms
        start = time.perf_counter()
        people = self.tracker.update(estimates, frame.time)
        floor = None
        if self.floor is not None:
            people, floor = self.floor.update(people, (image.shape[1], image.shape[0]))
        stages["track"] = (time.perf_counter() - start) * 1000.0
        return FrameResult(frame, people, stages, floor, model_ms, processed_at=time.perf_counter())

    def _detections(self, index: int, image: np.ndarray) -> list[Box] | None:
        """What the plan asks to detect in this frame (None: nothing, follow the tracks). What
        was made of this frame beside the last frame's poses (_start_detecting_next) is used: the
        plan's thumbnail, and the whole frame's candidates, judged with the tiles'. The same
        answer as in line."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.index != index:
            ahead = None
        request = self.plan.request(index, image, self.tracker.tracks,
                                    prepared=ahead.prepared.result() if ahead else None)
        if not request:
            return None
        taken_ahead = request.whole_frame and ahead is not None and ahead.candidates is not None
        seen = ahead.candidates.result() if taken_ahead else ()
        return self.detector.search(image, request.whole_frame and not taken_ahead, request.tiles,
                                    request.known, seen=seen, settled=request.settled)

    def _start_detecting_next(self, index: int) -> None:
        """With overlap on: when the next file frame is already decoded, start on the helper
        thread what can be made of it before this frame's poses are known: the detection plan's
        thumbnail and change maps, and the whole frame's candidates when a pass is certain
        there. If the poses then make a pass unnecessary, its candidates are dropped; if they
        make one necessary that was not started, it runs in line as usual."""
        if (self._detect_ahead is None or self.source.is_live or self._lookahead is not None
                or self.fresh_tracker is not None   # stills: each frame starts a new tracker
                or not self.source.frame_ready()):
            return
        item = self._lookahead = self._next_frame()
        if item is _END:
            return
        frame = item[0]
        # the plan's part first: the next request waits for it, the search only for candidates
        prepared = self._detect_ahead.submit(self.plan.prepare, frame.index, frame.image)
        # only the whole frame's candidates: the tiles depend on whom the tracker follows after
        # this frame
        candidates = None
        if self.plan.whole_frame_certain(frame.index, self.tracker.tracks):
            candidates = self._detect_ahead.submit(self.detector.candidates, frame.image, True)
        self._ahead = _Ahead(frame.index, candidates, prepared)

    # ---- composition, window, sinks (the main thread) ----
    def run(self) -> RunSummary:
        """Every frame through the stages until the input ends, the window closes or a stop is
        asked for; every output is finalized whatever happens."""
        with signals.for_a_run(), keep_freed_memory():
            return self._run()

    def _run(self) -> RunSummary:
        infer = threading.Thread(target=self._infer, name="infer", daemon=True)
        started = time.perf_counter()
        ended: float | None = None
        fps_window: deque[float] = deque(maxlen=30)
        try:
            infer.start()
            last, fps = None, None   # no rate until two frames have been seen
            while True:
                item = self.results_q.get()
                if item is _END:
                    ended = time.perf_counter()   # the time spent looking at a still is not processing
                    self._hold(last, fps)
                    break
                if isinstance(item, _Failure):
                    raise item.error
                fps_window.append(time.perf_counter())
                fps = (len(fps_window) - 1) / (fps_window[-1] - fps_window[0]) if len(fps_window) > 1 else None
                last = item
                if item.people:
                    self.last_with_people = item
                if not self._present(item, fps) or self._stop_requested.is_set():
                    break
                if self.account.summary.first_frame_s is None:
                    self.account.summary.first_frame_s = seconds_since_launch()
        finally:
            end = ended or time.perf_counter()
            seconds = end - (self._warm or started)
            self.stop.set()
            self._drain()
            infer.join(timeout=2.0)
            if self._detect_ahead is not None:
                self._detect_ahead.shutdown(wait=True, cancel_futures=True)
            self.account.finish(seconds, end)
            self._close_all()
        return self.summary

    def _present(self, result: FrameResult, fps: float | None) -> bool:
        info = self.info_type(model=self.backend.name, device=self.backend.device, fps=fps)
        keep_going = True
        start = time.perf_counter()
        composed = None
        # The window and the files show the same composition: render it once, share it; and
        # compose nothing when nothing is shown or written (benchmarks/bench_render.py times it).
        if self.viewer is not None:
            keep_going = self.viewer.present(result, info)
            composed = self.viewer.last_image
        elif self.sinks.needs_image:
            composed = self.scene.render(result, info)
        result.stages_ms["render"] = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        # A stop signal waits until the frame is both written and counted: the summary must
        # name exactly the frames the files hold.
        with signals.deferred():
            self.sinks.write(result, composed)
            if self.plot_recorder is not None:
                self.plot_recorder.add(result)
            result.stages_ms["write"] = (time.perf_counter() - start) * 1000.0
            self.account.add(result)
        if self.progress is not None:
            self.progress.update()
        return keep_going

    def _hold(self, last: FrameResult | None, fps: float | None) -> None:
        """Images stay on screen, still rotatable, until the user quits (q, Esc, or closing)."""
        if self.viewer is None or last is None or not self.source.is_still:
            return
        self.sinks.close()   # the files are complete while the picture is on screen
        saved = "".join(f"Saved {path}. " for path in self.sinks.files)
        log.info("%sShowing the result: drag to orbit, h for help, q to quit.", saved)
        info = self.info_type(model=self.backend.name, device=self.backend.device, fps=fps)
        while self.viewer.present(last, info):
            time.sleep(0.01)

    def _drain(self) -> None:
        while True:
            try:
                self.results_q.get_nowait()
            except queue.Empty:
                break

    def _close_all(self) -> None:
        """Finalize every output first (they hold what the user asked for), then the rest."""
        errors = []
        for closer in (self.sinks.close, getattr(self.viewer, "close", None), self.source.close,
                       getattr(self.detector, "close", None), getattr(self.backend, "close", None)):
            if closer is None:
                continue
            try:
                closer()
            except BaseException as error:  # even a second Ctrl-C: close the others, then raise
                errors.append(error)
        if errors:
            raise errors[0]
