"""THE frame loop: source -> detector -> pose backend -> tracker/smoother -> renderer -> sinks.

Three stages overlap, joined by bounded queues:
  reader thread   pulls file frames ahead: every frame, in order (a video decodes on its own
                  read-ahead thread in sources.py, image folders decode here; a camera or stream
                  has its own reader there and inference takes its newest frame directly)
  infer thread    detection (when the tracker asks), pose, tracking and smoothing
  main thread     composition, window, encoding and export (GUI calls must stay on it)
Every sink is finalized in a `finally`, so Ctrl-C, end of stream or an error leaves complete files.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import signals
from .backends import create_backend
from .errors import UserError
from .launch_clock import seconds_since_launch
from .memory import rss_mb, trim_heap
from .native_logs import native_stderr_silenced
from .types import Box, Camera, Frame, FrameResult, Person

log = logging.getLogger(__name__)

QUEUE_DEPTH = 4          # frames in flight between two stages: bounds memory and latency
_END = object()          # end of stream marker


@dataclass
class RunSummary:
    frames: int = 0
    people: int = 0                       # person detections summed over frames
    tracks: int = 0                       # distinct track ids
    seconds: float = 0.0
    first_frame_s: float | None = None    # from process launch to the first frame processed
    files: list[str] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)   # mean per frame
    rss_mb: dict[str, float] = field(default_factory=dict)      # after warm-up, at the end
    rss_samples_mb: list[float] = field(default_factory=list)   # every RSS_SAMPLE_EVERY frames
    # per frame, ms: from the frame's arrival to its result being shown and written; and the
    # work done on it (detect + pose + track + render + write), the rest being waiting
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    processing_ms: deque = field(default_factory=lambda: deque(maxlen=10000))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


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


def overlaps_detection(backend) -> bool:
    """Whether detection of the next frame runs beside this frame's poses: only when the pose
    network runs on an accelerator, so the CPU is free to detect meanwhile."""
    return not str(backend.device).startswith("cpu")


class FrameLoop:
    """Owns the stages of one run and moves frames through them."""

    WARMUP_FRAMES = 100       # resident memory is sampled after these, and at the end
    RSS_SAMPLE_EVERY = 1000   # ... and every so many frames between, to show its course
    TRIM_EVERY = 500          # frames between handing free heap back to the OS (memory.py), at
                              # 250, 750, ...: samples fall between trims and count what builds up

    def __init__(self, settings, source, detector, backend, tracker, scene, viewer, sinks,
                 plot_recorder=None, info_type=dict, floor=None, fresh_tracker=None,
                 warm_up=None, overlap_detection=None):
        """warm_up: run once on the inferring thread before its first frame. overlap_detection:
        detect people in frame t+1 on a helper thread while frame t's poses are computed; by
        default only when the pose network runs on an accelerator (on the CPU both would share
        the same cores, and the network already uses all of them)."""
        self.settings = settings
        self.warm_up = warm_up
        if overlap_detection is None:
            overlap_detection = overlaps_detection(backend)
        self._detect_ahead = ThreadPoolExecutor(1, thread_name_prefix="detect") if overlap_detection else None
        self._ahead: tuple[int, Future] | None = None   # (frame index, its whole-frame detections)
        self._lookahead = None                              # a frame taken early from frames_q
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
        depth = 1 if source.is_live else QUEUE_DEPTH
        self.frames_q: queue.Queue = queue.Queue(maxsize=depth)
        self.results_q: queue.Queue = queue.Queue(maxsize=depth)
        self.summary = RunSummary()
        self._track_ids: set[int] = set()
        self._live_frames = None
        self._live_count = 0
        self.last_with_people: FrameResult | None = None
        self._last_sweep: int | None = None
        self._stage_totals: dict[str, float] = {}

    def request_stop(self) -> None:
        """End the run after the frame being presented: every output holds whole frames and is
        closed complete, as at the end of the input (a batch stops its videos so on Ctrl-C)."""
        self._stop_requested.set()

    # ---- stage 1: reading ----
    def _read(self) -> None:
        try:
            limit = self.settings.max_frames
            count = 0
            iterator = iter(self.source)
            while not self.stop.is_set():
                start = time.perf_counter()
                frame = next(iterator, None)
                if frame is None:
                    break
                frame_ms = (time.perf_counter() - start) * 1000.0
                if not _put(self.frames_q, (frame, frame_ms), self.stop):
                    return
                count += 1
                if limit is not None and count >= limit:
                    break
            _put(self.frames_q, _END, self.stop)
        except BaseException as error:  # carried to the main thread
            _put(self.frames_q, _Failure(error), self.stop)

    # ---- stage 2: detection, pose, tracking ----
    def _infer(self) -> None:
        try:
            if self.warm_up is not None:
                self.warm_up()
            while not self.stop.is_set():
                item = self._next_frame()
                if item is _END or isinstance(item, _Failure):
                    _put(self.results_q, item, self.stop)
                    return
                frame, read_ms = item
                _put(self.results_q, self.process(frame, read_ms), self.stop)
        except BaseException as error:
            _put(self.results_q, _Failure(error), self.stop)

    # Frames between two sweeps (the tiled search for people not yet followed). Measured on the
    # annotated street clip (docs/detection.md): every 8 frames found 89 % / 74 % of the people
    # > 100 px / 40-100 px tall, every 15 frames 79 % / 67 %, with ~57 detector calls a sweep.
    SWEEP_INTERVAL = 10

    def _sweep_due(self, frame_index: int) -> bool:
        """Stills (a lone image, or a folder's images, each with a fresh tracker) always; video
        every SWEEP_INTERVAL frames, the first frame included. Between
        sweeps the tracker follows people and asks for the whole-frame pass (one detector call)
        periodically, when a track is lost, and while nobody is followed."""
        if self.source.is_still or self.fresh_tracker is not None or self._last_sweep is None:
            return True
        return frame_index - self._last_sweep >= self.SWEEP_INTERVAL

    def _next_frame(self):
        """Files: the next decoded frame, in order. Live sources: the newest frame right now,
        taken straight from the source when inference is ready for it, so latency stays
        within one frame interval of the processing time."""
        if not self.source.is_live:
            if self._lookahead is not None:
                item, self._lookahead = self._lookahead, None
                return item
            while not self.stop.is_set():   # a bounded wait: shutdown must not strand this thread
                try:
                    return self.frames_q.get(timeout=0.1)
                except queue.Empty:
                    continue
            return _END
        if self._live_frames is None:
            self._live_frames, self._live_count = iter(self.source), 0
        limit = self.settings.max_frames
        start = time.perf_counter()
        frame = next(self._live_frames, None) if limit is None or self._live_count < limit else None
        if frame is None:
            return _END
        self._live_count += 1
        return frame, (time.perf_counter() - start) * 1000.0

    def process(self, frame: Frame, read_ms: float = 0.0) -> FrameResult:
        """One frame through detection, pose and tracking."""
        image = frame.image
        if self.camera is None or (self.camera.cx, self.camera.cy) != (image.shape[1] / 2, image.shape[0] / 2):
            self.camera = make_camera(self.settings, image.shape[1], image.shape[0])
        stages = {"read": read_ms}
        start = time.perf_counter()
        if self.fresh_tracker is not None and frame.index > 0:
            self.tracker = self.fresh_tracker()
        sweep = self._sweep_due(frame.index)
        ahead, self._ahead = self._ahead, None
        if sweep:
            # A sweep looks for new people: the ones being followed need no verifying again.
            self._last_sweep = frame.index
            known = [t.crop for t in self.tracker.tracks if t.crop is not None]
            self.tracker.update_detections(self.detector.detect(image, mode="tiled", known=known), frame.index)
        elif self.tracker.needs_detection(frame.index):
            # started beside the last frame's poses (_start_detecting_next), or now
            detections = ahead[1].result() if ahead is not None and ahead[0] == frame.index \
                else self.detector.detect(image, mode="fast")
            self.tracker.update_detections(detections, frame.index)
        boxes = self.tracker.crops()
        stages["detect"] = (time.perf_counter() - start) * 1000.0
        self._start_detecting_next(frame.index)
        start = time.perf_counter()
        estimates = self.backend.estimate(image, boxes, self.camera) if boxes else []
        stages["pose"] = (time.perf_counter() - start) * 1000.0
        # the model's own share of the pose stage; a backend that cannot separate it counts whole
        model_ms = getattr(self.backend, "last_model_ms", None) if boxes else 0.0   # duck-typed backends too
        model_ms = stages["pose"] if model_ms is None else model_ms
        start = time.perf_counter()
        people = self.tracker.update(estimates, frame.time, frame.index)
        floor = None
        if self.floor is not None:
            people, floor = self.floor.update(people, (image.shape[1], image.shape[0]))
        stages["track"] = (time.perf_counter() - start) * 1000.0
        return FrameResult(frame, people, stages, floor, model_ms)

    def _start_detecting_next(self, index: int) -> None:
        """With overlap on: when the next file frame is already decoded and a detection is due
        there (as far as can be told before this frame's poses), start it now on the helper
        thread. If the poses then make it unnecessary, its result is dropped; if they make one
        necessary that was not started, it runs in line as usual."""
        if (self._detect_ahead is None or self.source.is_live or self._lookahead is not None
                or self.fresh_tracker is not None):   # stills: each frame starts a new tracker
            return
        try:
            item = self.frames_q.get_nowait()
        except queue.Empty:
            return
        self._lookahead = item
        if item is _END or isinstance(item, _Failure):
            return
        frame = item[0]
        # only the whole-frame pass: a sweep is told whom the tracker follows after this frame
        if not self._sweep_due(frame.index) and self.tracker.needs_detection(frame.index):
            self._ahead = (frame.index, self._detect_ahead.submit(self.detector.detect, frame.image, mode="fast"))

    # ---- stage 3: composition, window, sinks (main thread) ----
    def run(self) -> RunSummary:
        threads = [threading.Thread(target=self._infer, name="infer", daemon=True)]
        if not self.source.is_live:
            threads.append(threading.Thread(target=self._read, name="reader", daemon=True))
        started = time.perf_counter()
        ended: float | None = None
        fps_window: deque[float] = deque(maxlen=30)
        try:
            for thread in threads:
                thread.start()
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
                if self.summary.first_frame_s is None:
                    self.summary.first_frame_s = seconds_since_launch()
        finally:
            self.summary.seconds = (ended or time.perf_counter()) - started
            self.stop.set()
            self._drain()
            for thread in threads:
                thread.join(timeout=2.0)
            if self._detect_ahead is not None:
                self._detect_ahead.shutdown(wait=True, cancel_futures=True)
            self._finish_summary()
            self._close_all()
        return self.summary

    def _finish_summary(self) -> None:
        if "warm" in self.summary.rss_mb:
            self.summary.rss_mb["end"] = round(rss_mb(), 1)
            self.summary.rss_mb["growth"] = round(self.summary.rss_mb["end"] - self.summary.rss_mb["warm"], 1)
        self.summary.tracks = len(self._track_ids)
        n = max(1, self.summary.frames)
        self.summary.stages_ms = {k: v / n for k, v in self._stage_totals.items()}

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
            self.summary.latency_ms.append((time.monotonic() - result.frame.captured) * 1000.0)
            self.summary.processing_ms.append(sum(v for k, v in result.stages_ms.items() if k != "read"))
            self._account(result)
        if self.progress is not None:
            self.progress.update()
        if self.summary.frames == self.WARMUP_FRAMES:
            self.summary.rss_mb["warm"] = round(rss_mb(), 1)
        elif self.summary.frames % self.RSS_SAMPLE_EVERY == 0:
            self.summary.rss_samples_mb.append(round(rss_mb(), 1))
        if self.summary.frames % self.TRIM_EVERY == self.TRIM_EVERY // 2:
            trim_heap()
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

    def _account(self, result: FrameResult) -> None:
        self.summary.frames += 1
        self.summary.people += len(result.people)
        self._track_ids.update(p.track_id for p in result.people)
        for stage, ms in dict(result.stages_ms, model=result.model_ms).items():
            self._stage_totals[stage] = self._stage_totals.get(stage, 0.0) + ms

    def _drain(self) -> None:
        for q in (self.frames_q, self.results_q):
            while True:
                try:
                    q.get_nowait()
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


def make_camera(settings, width: int, height: int) -> Camera:
    if settings.focal is not None:
        return Camera.from_focal(width, height, settings.focal)
    return Camera.from_fov(width, height, settings.fov)


class PlotRecorder:
    """Keeps what --plot needs: the last frame's people, or one joint's path over the run."""

    def __init__(self, path: str, joint_index: int | None):
        self.path = path
        self.joint_index = joint_index
        self.last_people: list[Person] = []
        self.history: list[list[Person]] = []

    def add(self, result: FrameResult) -> None:
        # People without a single finite 3D joint have nothing to draw.
        people = [p for p in result.people if np.isfinite(p.joints_3d).all(axis=-1).any()]
        if people:
            self.last_people = people
        if self.joint_index is not None:
            self.history.append([p for p in people if np.isfinite(p.joints_3d[self.joint_index]).all()])

    def save(self) -> str | None:
        from .plot import plot_frame, plot_trajectory
        if self.joint_index is not None:
            if not any(self.history):
                return None
            return str(plot_trajectory(self.history, self.joint_index, self.path))
        if not self.last_people:
            return None
        return str(plot_frame(self.last_people, self.path))


class _LoopingSource:
    """Plays a file source again from the start at its end (--loop), with frame indices and
    times that keep increasing so tracking and smoothing see one continuous stream."""

    frame_count = None   # endless: a progress bar shows a count, not "2518/900"

    def __init__(self, spec: str, first):
        self.spec = spec
        self.current = first
        self.frames_per_pass = first.frame_count
        self._unreadable_in_a_pass = 0

    @property
    def frames_unreadable(self) -> int:
        """The most frames any pass could not decode (a damaged file loses the same ones each time)."""
        return max(self._unreadable_in_a_pass, getattr(self.current, "frames_unreadable", 0))

    def __getattr__(self, name):
        return getattr(self.current, name)

    def __iter__(self):
        from .sources import open_source
        offset_index, offset_time = 0, 0.0
        while True:
            last = None
            for frame in self.current:
                last = frame
                yield Frame(frame.index + offset_index, frame.time + offset_time, frame.image, frame.captured)
            if last is None:
                return
            offset_index += last.index + 1
            offset_time += last.time + 1.0 / max(1.0, self.current.fps)
            self._unreadable_in_a_pass = self.frames_unreadable
            self.current.close()
            self.current = open_source(self.spec)

    def close(self):
        self.current.close()


def input_kind(source) -> str:
    """"image" (one picture), "stills" (a folder of unrelated photos) or "video" (a video file,
    a camera, a stream, or a folder of numbered frames)."""
    if not source.is_still:
        return "video"
    return "stills" if getattr(source, "mode", None) == "stills" else "image"


def _say_folder_mode(source) -> None:
    mode = getattr(source, "mode", None)
    if mode == "stills":
        log.info("Folder '%s': %d photos that are not one sequence (names not numbered alike, or "
                 "sizes differ): each is processed on its own.", source.description, source.frame_count)
    elif mode == "sequence":
        log.info("Folder '%s': %d numbered frames of one size: processed as a video.",
                 source.description, source.frame_count)


def _check_plot_path(path: str, joint: str | None) -> int | None:
    from .outputs import check_plot_path
    from .skeleton import JOINT_INDEX
    check_plot_path(path)
    if joint is None:
        return None
    if joint not in JOINT_INDEX:
        raise UserError(f"unknown joint '{joint}' for --plot-joint: use one of {', '.join(JOINT_INDEX)}")
    return JOINT_INDEX[joint]


def _warm_up(detector, backend, width: int, height: int, camera: Camera, model: str | None) -> None:
    """One pass on a blank frame starts every model and allocates every buffer, so the first
    real frame is not slow and start-up logs come out here, silenced. Runs on the inferring
    thread (FrameLoop's warm_up): a CUDA thread keeps its own cuDNN handle and autotuning, so
    the pose network also runs every batch size it can meet there (backend.warm_up). A network
    that answers it with NaN or infinities (damaged weights) is refused here, before any output
    is opened."""
    blank = np.zeros((height, width, 3), np.uint8)
    with native_stderr_silenced():
        if hasattr(backend, "warm_up"):
            backend.warm_up()
        # at least 64 px: the detector skips tiny frames, and its model must run once here
        detector.detect(np.zeros((max(height, 64), max(width, 64), 3), np.uint8))
        people = backend.estimate(blank, [Box(width * 0.25, height * 0.1, width * 0.5, height * 0.8)], camera)
    for person in people:
        if person is not None and not (np.isfinite(person.joints_3d).all() and np.isfinite(person.joints_2d).all()):
            raise UserError(f"{backend.name} from checkpoint '{model or 'weights/'}' computes NaN or "
                            "infinite joints: its weights are damaged or not ConvNeXtPose's.")


def _display_available(settings) -> bool:
    """Whether to open the window. No screen is an error only when nothing would be saved."""
    if not settings.display:
        return False
    from .window import check_display
    try:
        check_display()
    except UserError:
        if not (settings.output or settings.export):
            raise
        log.info("No display found: running headless and saving the outputs.")
        return False
    return True


def build_loop(settings, source, plot_joint: int | None, display: bool, opened: list,
               backend=None, detector=None) -> FrameLoop:
    """Every stage of the run, wired together; what needs closing is appended to `opened`.
    backend, detector: already loaded ones to use (a batch worker loads its model once for all
    its videos); otherwise they are made from the settings."""
    from .detector import PersonDetector
    from .floor import FloorFitter
    from .outputs import ExportMeta, SinkGroup, make_exporter, make_media_sink, photo_stems
    from .tracker import Tracker
    from .view import SceneInfo, SceneRenderer

    if backend is None:
        backend = create_backend(settings.model, settings.device, settings.precision,
                                 keep_reference=settings.benchmark)
        opened.append(backend)

    width, height = source.size
    camera = make_camera(settings, width, height)
    if settings.loop and not (source.is_live or source.is_still):
        source = _LoopingSource(settings.input, source)
        opened[0] = source
    smooth = settings.smooth if settings.smooth is not None else not source.is_still
    if detector is None:
        detector = PersonDetector()
        opened.append(detector)

    def make_tracker() -> Tracker:
        return Tracker(redetect_every=settings.detect_every, smoothing=smooth)

    tracker = make_tracker()
    stills = getattr(source, "mode", None) == "stills"
    scene = SceneRenderer()
    sinks = SinkGroup()
    if settings.output:
        name_for_index = None
        if stills:   # photos into a folder: each under its own name, NAME_pose.jpg
            stems = photo_stems(source.paths)
            name_for_index = lambda i: stems[source.path_of(i)]  # noqa: E731
        sinks.add(make_media_sink(settings.output, source.fps, follow_time=source.is_live,
                                  name_for_index=name_for_index))
    if settings.export:
        meta = ExportMeta(model=backend.name, input=source.description, fps=float(source.fps), focal=float(camera.fx))
        sinks.add(make_exporter(settings.export, meta))
    opened.append(sinks)
    viewer = None
    if display:
        from .window import Viewer
        # a file plays at its own frame rate, as in a player; live input is already real time
        viewer = Viewer("ConvNeXtPose Live", scene, paced=not (source.is_live or source.is_still))
        viewer.controls.realtime = not settings.fast
        opened.append(viewer)
    recorder = PlotRecorder(settings.plot, plot_joint) if settings.plot else None
    return FrameLoop(settings, source, detector, backend, tracker, scene, viewer, sinks, recorder,
                     info_type=SceneInfo, floor=FloorFitter(steady=not source.is_still),
                     fresh_tracker=make_tracker if stills else None,
                     warm_up=lambda: _warm_up(detector, backend, width, height, camera, settings.model))


def run(settings, source=None) -> int:
    """Build every stage from the settings, run the loop, report. Everything the user could
    have got wrong is checked before the first frame is processed. `source`: an already open
    source to read instead of `settings.input` (benchmarks and tests use a simulated camera)."""
    from .outputs import check_output_path, check_outputs_distinct, output_kind_for
    from .progress import format_summary, frame_progress
    from .sources import open_source

    # 1. Outputs: cheap to check, and a typo should not cost a whole run.
    if settings.export:
        check_output_path(settings.export, "export")
    plot_joint = _check_plot_path(settings.plot, settings.plot_joint) if settings.plot else None
    check_outputs_distinct(settings.input, {"--output": settings.output, "--export": settings.export,
                                            "--plot": settings.plot})
    display = _display_available(settings)

    # 2. The input, then the model (a bad --model is reported before any frame), then the rest.
    opened = [source or open_source(settings.input)]   # closed here if setting up fails, else by the loop
    try:
        # the output must suit the input: known only once the input is open (first frame read)
        if settings.output:
            check_output_path(settings.output, output_kind_for(settings.output, input_kind(opened[0])))
        _say_folder_mode(opened[0])
        loop = build_loop(settings, opened[0], plot_joint, display, opened)
    except BaseException:
        for thing in reversed(opened):
            close = getattr(thing, "close", None)
            if close is not None:
                close()
        raise

    # 3. The loop.
    show_progress = settings.progress and loop.viewer is None and not settings.benchmark and not loop.source.is_live
    total = loop.source.frame_count
    if settings.max_frames is not None:
        total = min(total, settings.max_frames) if total else settings.max_frames
    loop.progress = frame_progress(total) if show_progress else None
    interrupted: KeyboardInterrupt | None = None
    try:
        summary = loop.run()
    except KeyboardInterrupt as stop:   # Ctrl-C, SIGTERM or SIGHUP (app/signals.py)
        interrupted = stop
        summary = loop.summary
    except UserError as error:   # an output failed (a full disk): the others were finished
        done = format_summary(loop.summary.frames, loop.summary.seconds, loop.summary.people,
                              loop.sinks.files, interrupted=True)
        raise UserError(f"{error} {done}") from None
    finally:
        if loop.progress is not None:
            loop.progress.close()

    # 4. What was done.
    files = list(loop.sinks.files)
    if loop.plot_recorder is not None:
        plotted = loop.plot_recorder.save()
        if plotted:
            files.append(plotted)
        else:   # asked for, so its absence is said
            log.warning("no plot written to '%s': nobody with known 3D joints was found", settings.plot)
    summary.files = files
    log.info("%s", format_summary(summary.frames, summary.seconds, summary.people, files, interrupted is not None))
    unreadable = getattr(loop.source, "frames_unreadable", 0)
    if unreadable:   # the decoder reached the end: never let a short read pass for a whole file
        announced = getattr(loop.source, "frames_per_pass", loop.source.frame_count)
        print(f"warning: {unreadable} of the {announced} frames of '{loop.source.description}' "
              "could not be decoded (the file is damaged or truncated) and were skipped.", file=sys.stderr)
    if settings.benchmark:
        report = benchmark_report(summary, loop.backend, loop.source)
        last = loop.last_with_people
        if last is not None and hasattr(loop.backend, "compare_with_reference"):
            # The pose network alone, plain float32 eager vs what ran, on the same crops, now.
            report["pose_network"] = loop.backend.compare_with_reference(last.frame.image, [p.box for p in last.people])
        report["efficiency"] = pipeline_efficiency(summary, report.get("pose_network", {}).get("selected_ms"))
        print(json.dumps(_finite(report), allow_nan=False))
    return signals.exit_code_for(interrupted) if interrupted is not None else 0


def _finite(value):
    """The report with NaN and infinities as null: the line must stay valid JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
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
    machine's load between the two moments moves it too."""
    report = {}
    model_ms = summary.stages_ms.get("model", 0.0)
    if model_ms > 0 and summary.fps > 0:
        report["ratio"] = round(summary.fps * model_ms / 1000.0, 3)
        report["model_ms"] = round(model_ms, 2)
    if network_alone_ms and summary.fps > 0:
        report["ratio_vs_network_alone"] = round(summary.fps * network_alone_ms / 1000.0, 3)
        report["network_alone_ms"] = network_alone_ms
    return report


def benchmark_report(summary: RunSummary, backend, source) -> dict:
    stages = {k: round(summary.stages_ms.get(k, 0.0), 3)
              for k in ("read", "detect", "pose", "model", "render", "write")}
    report = {"frames": summary.frames, "fps": round(summary.fps, 2), "stages_ms": stages,
              "device": backend.device, "model": backend.name}
    if summary.first_frame_s is not None:
        report["startup_s"] = {"to_first_frame": round(summary.first_frame_s, 3)}
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
    return report
