"""One run, built from the settings: everything the user could have got wrong is checked
before the first frame; then the source, the detector, the pose backend, the tracker, the
renderer, the window and the outputs are made and handed to the frame loop (app/frame_loop.py),
and what it did is reported."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from . import signals, sources
from .backends import create_backend
from .errors import UserError
from .frame_loop import FrameLoop
from .outputs.plot import PlotRecorder
from .run_report import (RunSummary, benchmark_report, finite_json, format_summary, frame_progress,
                         pipeline_efficiency)
from .settings import Settings
from .sources import FrameLimit, LoopingSource
from .types import Box, Camera

log = logging.getLogger(__name__)


def input_kind(source) -> str:
    """"image" (one picture), "stills" (a folder of unrelated photos) or "video" (a video file,
    a camera, a stream, or a folder of numbered frames)."""
    if not source.is_still:
        return "video"
    return "stills" if getattr(source, "mode", None) == "stills" else "image"


def _say_folder_mode(source) -> None:
    mode = getattr(source, "mode", None)
    why = getattr(source, "not_a_sequence", None)
    if mode == "stills" and why:
        log.info("Folder '%s': %s; its %d photos are each processed on their own.",
                 source.description, why, source.frame_count)
    elif mode == "stills":
        log.info("Folder '%s': %d photos that are not one sequence (names not numbered alike, or "
                 "sizes differ): each is processed on its own.", source.description, source.frame_count)
    elif mode == "sequence":
        log.info("Folder '%s': %d numbered frames of one size: processed as a video.",
                 source.description, source.frame_count)


def _warm_up(detector, backend, width: int, height: int, camera: Camera, model: str | None) -> None:
    """One pass on a blank frame starts every model and allocates every buffer, so the first
    real frame is not slow. Runs on the inferring thread (FrameLoop's warm_up): a CUDA thread
    keeps its own cuDNN handle and autotuning, so the pose network also runs every batch size it
    can meet there (backend.warm_up). A network that answers it with NaN or infinities (damaged
    weights) is refused here, before any output is opened."""
    blank = np.zeros((height, width, 3), np.uint8)
    if hasattr(backend, "warm_up"):
        backend.warm_up()
    # at least 64 px: the detector skips tiny frames, and its model must run once here
    detector.detect(np.zeros((max(height, 64), max(width, 64), 3), np.uint8))
    people = backend.estimate(blank, [Box(width * 0.25, height * 0.1, width * 0.5, height * 0.8)], camera)
    for person in people:
        if person is not None and not (np.isfinite(person.joints_3d).all() and np.isfinite(person.joints_2d).all()):
            raise UserError(f"{backend.name} from checkpoint '{model or 'weights/'}' computes NaN or "
                            "infinite joints: its weights are damaged or not ConvNeXtPose's.")


def _window_wanted(settings: Settings) -> bool:
    """Whether to open the window. No screen is an error only when nothing would be saved."""
    if not settings.view.window:
        return False
    from .window import check_display
    try:
        check_display()
    except UserError:
        if not settings.outputs.any_file:
            raise
        log.info("No display found: running headless and saving the outputs.")
        return False
    return True


def build_loop(settings: Settings, source, window: bool, opened: list,
               backend=None, detector=None) -> FrameLoop:
    """Every stage of the run, wired together; what needs closing is appended to `opened`.
    backend, detector: already loaded ones to use (a batch worker loads its model once for all
    its videos); otherwise they are made from the settings."""
    from .detector import PersonDetector
    from .floor import FloorFitter
    from .outputs import (ExportMeta, PhotoFrames, SinkGroup, make_exporter, make_media_sink, photo_names,
                          photo_stems)
    from .detection_plan import DetectionPlan, PlanConfig
    from .tracker import Tracker
    from .view import SceneInfo, SceneRenderer

    if backend is None:
        pose = settings.pose
        backend = create_backend(pose.model, pose.device, pose.precision, keep_reference=settings.view.benchmark)
        opened.append(backend)

    width, height = source.size
    camera = settings.camera.camera(width, height)
    if settings.input.loop and not (source.is_live or source.is_still):
        source = LoopingSource(source, reopen=lambda: sources.open_source(settings.input.source))
    elif settings.input.loop:
        log.warning("--loop restarts video files; '%s' is %s: it is not restarted.", source.description,
                    "live" if source.is_live else "a picture" if source.frame_count == 1 else "a set of photos")
    if settings.input.max_frames is not None:
        source = FrameLimit(source, settings.input.max_frames)
    opened[0] = source
    smooth = settings.tracking.smooth if settings.tracking.smooth is not None else not source.is_still
    if detector is None:
        detector = PersonDetector(settings.detector)
        opened.append(detector)

    def make_tracker() -> Tracker:
        return Tracker(smoothing=smooth)

    tracker = make_tracker()
    stills = getattr(source, "mode", None) == "stills"
    plan = DetectionPlan(detector.tiles, PlanConfig(redetect_every=settings.tracking.detect_every,
                                                    stills=source.is_still))
    scene = SceneRenderer(overlay_style=settings.overlay)
    sinks = SinkGroup()
    outputs = settings.outputs
    if outputs.video:
        name_for_index = None
        if stills:   # photos into a folder: each under its own name, NAME_pose.jpg
            stems = photo_stems(source.paths)
            name_for_index = lambda i: stems[source.path_of(i)]  # noqa: E731
        sinks.add(make_media_sink(outputs.video, source.fps, follow_time=source.is_live,
                                  name_for_index=name_for_index))
    if outputs.export:
        # photos (a folder of them, or one): each frame names its photo and the focal of its
        # size; no fps (PhotoFrames)
        if source.is_still:
            names = photo_names(source.paths)
            photos = PhotoFrames(photo_of=lambda i: names[source.path_of(i)],
                                 focal_for=lambda w, h: settings.camera.camera(w, h).fx)
            meta = ExportMeta(model=backend.name, input=source.description, fps=None, focal=None, stills=photos)
        else:
            meta = ExportMeta(model=backend.name, input=source.description, fps=float(source.fps),
                              focal=float(camera.fx))
        sinks.add(make_exporter(outputs.export, meta))
    opened.append(sinks)
    viewer = None
    if window:
        from .window import Viewer
        # a file plays at its own frame rate, as in a player; live input is already real time
        viewer = Viewer("ConvNeXtPose Live", scene, paced=not (source.is_live or source.is_still))
        viewer.controls.realtime = not settings.view.fast
        opened.append(viewer)
    recorder = PlotRecorder(outputs.plot, outputs.plot_joint_index) if outputs.plot else None
    return FrameLoop(settings.camera, source, detector, backend, tracker, scene, viewer, sinks, recorder,
                     info_type=SceneInfo, floor=FloorFitter(steady=not source.is_still),
                     fresh_tracker=make_tracker if stills else None, plan=plan,
                     warm_up=lambda: _warm_up(detector, backend, width, height, camera, settings.pose.model))


@dataclass
class RunResult:
    exit_code: int                      # 0, or 128 + the stop signal's number
    summary: RunSummary
    benchmark: dict | None = None       # with --benchmark: the report, JSON-ready (no NaN)


def run(settings: Settings, source=None) -> RunResult:
    """Build every stage from the settings, run the loop, report. Everything the user could
    have got wrong is checked before the first frame is processed. `source`: an already open
    source to read instead of settings.input (benchmarks and tests use a simulated camera)."""
    from .outputs import (check_not_replacing, check_output_path, check_outputs_distinct, check_plot_path,
                          output_kind_for)
    # 1. Outputs: cheap to check, and a typo should not cost a whole run.
    outputs = settings.outputs
    if outputs.export:
        check_output_path(outputs.export, "export")
    if outputs.plot:
        check_plot_path(outputs.plot)
    check_outputs_distinct(settings.input.source, {"--output": outputs.video, "--export": outputs.export,
                                                   "--plot": outputs.plot}, sources.input_path(settings.input.source))
    for option, path in (("--output", outputs.video), ("--export", outputs.export), ("--plot", outputs.plot)):
        if path:
            check_not_replacing(option, path, outputs.force)

    # 2. The input (a mistyped name is the first thing to say, before the screen), then the
    # model (a bad --model is reported before any frame), then the rest.
    opened = [source or sources.open_source(settings.input.source)]   # closed here if setting up fails, else by the loop
    try:
        window = _window_wanted(settings)
        _say_folder_mode(opened[0])   # first: it says why a folder is not a video, if it is not
        # the output must suit the input: known only once the input is open (first frame read)
        if outputs.video:
            check_output_path(outputs.video, output_kind_for(outputs.video, input_kind(opened[0])))
        loop = build_loop(settings, opened[0], window, opened)
    except BaseException:
        for thing in reversed(opened):
            close = getattr(thing, "close", None)
            if close is not None:
                close()
        raise

    # 3. The loop.
    view = settings.view
    show_progress = view.progress and loop.viewer is None and not view.benchmark and not loop.source.is_live
    loop.progress = frame_progress(loop.source.frame_count) if show_progress else None
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
        try:
            plotted = loop.plot_recorder.save()
        except UserError as error:   # a full disk: the outputs already finished are said
            done = format_summary(summary.frames, summary.seconds, summary.people, files, interrupted is not None)
            raise UserError(f"{error} {done}") from None
        if plotted:
            files.append(plotted)
        else:   # asked for, so its absence is said
            log.warning("no plot written to '%s': nobody with known 3D joints was found", outputs.plot)
    summary.files = files
    log.info("%s", format_summary(summary.frames, summary.seconds, summary.people, files, interrupted is not None))
    unreadable = getattr(loop.source, "frames_unreadable", 0)
    if unreadable:   # the decoder reached the end: never let a short read pass for a whole file
        announced = getattr(loop.source, "frames_per_pass", loop.source.frame_count)
        log.warning("%d of the %d frames of '%s' could not be decoded (the file is damaged or "
                    "truncated) and were skipped.", unreadable, announced, loop.source.description)
    report = None
    if view.benchmark:
        report = benchmark_report(summary, loop.backend, loop.source)
        if loop.plan is not None:   # how much of the sweep was searched, and what was skipped
            report["detection"] = asdict(loop.plan.stats)
        last = loop.last_with_people
        if last is not None and hasattr(loop.backend, "compare_with_reference"):
            # The pose network alone, plain float32 eager vs what ran, on the same crops, now.
            report["pose_network"] = loop.backend.compare_with_reference(last.frame.image, [p.box for p in last.people])
        report["efficiency"] = pipeline_efficiency(summary, report.get("pose_network", {}).get("selected_ms"))
        report = finite_json(report)
    code = signals.exit_code_for(interrupted) if interrupted is not None else 0
    return RunResult(code, summary, report)
