"""Command line -> Settings -> a run (app/run.py). A user's mistake becomes one line on stderr and exit
code 2; Ctrl-C, SIGTERM or SIGHUP finishes the files being written and exits with 128 + the
signal's number (130, 143, 129)."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from . import signals
from .command_scope import command_scope
from .errors import UserError
from .settings import (DEFAULT_FOV_DEG, DEVICES, PRECISIONS, CameraSettings, InputSettings,
                       OutputSettings, PoseSettings, Settings, TrackingSettings, ViewSettings)

log = logging.getLogger(__name__)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are the command's: one line starting "error:", exit 2
    (argparse's own prints its whole usage first, and a line headed by the program's name)."""

    def error(self, message: str):
        raise UserError(f"{message} ({self.prog} --help lists the options).")


def add_processing_options(p: argparse.ArgumentParser) -> None:
    """How frames are turned into joints: the options a single run and a batch share."""
    p.add_argument("--model", "-m", default=None,
                   help="ConvNeXtPose checkpoint (.tar/.pth), or 'blazepose' for the fallback "
                        "(default: the best checkpoint in weights/, else the fallback)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where ConvNeXtPose runs (default: auto, CUDA when present)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    smooth = p.add_mutually_exclusive_group()
    smooth.add_argument("--smooth", dest="smooth", action="store_true", default=None,
                        help="One Euro smoothing (default: on for video and camera)")
    smooth.add_argument("--no-smooth", dest="smooth", action="store_false", help="no temporal smoothing")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--focal", type=float, help="focal length in pixels (principal point: image centre)")
    cam.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                     help=f"horizontal field of view in degrees when --focal is not given (default: {DEFAULT_FOV_DEG:g})")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: the fastest precision this device has whose 3D joints stay within 1 mm "
                        "on average and 5 mm at most of strict float32, measured on real people at "
                        "start-up; fp32: strict float32 (TF32 off on CUDA); tf32, bf16, fp16: that "
                        "path, where the device runs it natively (tf32 and fp16: CUDA only)")
    p.add_argument("--detect-every", type=int, default=15, metavar="N",
                   help="re-run the person detector every N frames (and whenever a track is lost)")
    p.add_argument("--joint-threshold", type=float, default=0.3, metavar="C",
                   help="joints less confident than this are not drawn (default: 0.3); the "
                        "exports keep every joint with its confidence")


def processing_settings(args: argparse.Namespace) -> dict:
    """The parts of Settings the processing options make (each checks its values): a single
    run and a batch build them alike."""
    from .render2d import Overlay2DStyle
    return {"camera": CameraSettings(focal=args.focal, fov=args.fov),
            "pose": PoseSettings(model=args.model, device=args.device, precision=args.precision),
            "tracking": TrackingSettings(detect_every=args.detect_every, smooth=args.smooth),
            "overlay": Overlay2DStyle(min_confidence=args.joint_threshold)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="run_demo.py",
        description="Real-time 3D human pose: people found in each frame, ConvNeXtPose root-relative "
                    "3D joints, shown beside the video and saved on request.")
    p.add_argument("--input", "-i", default="0",
                   help="camera index, video file, image file, folder of images, or stream URL (default: 0)")
    p.add_argument("--output", "-o", help="annotated result: .mp4 (or .avi) for video and camera, .jpg/.png for images")
    p.add_argument("--export", "-e", help="joints per frame: .json, .csv or .npz")
    p.add_argument("--plot", help="save a matplotlib 3D figure (.png/.pdf/.svg): the skeletons of the last "
                                  "frame, or with --plot-joint a joint's trajectory over the input")
    p.add_argument("--plot-joint", metavar="NAME", help="joint whose trajectory --plot draws, e.g. R_Wrist")
    p.add_argument("--force", action="store_true",
                   help="replace outputs that exist already (without it, an existing --output, "
                        "--export or --plot is refused)")
    p.add_argument("--no-display", dest="display", action="store_false", help="run headless, no window")
    add_processing_options(p)
    p.add_argument("--benchmark", action="store_true",
                   help="process headless and print per-stage timings as JSON on the last line")
    p.add_argument("--loop", action="store_true", help="restart a video file at its end (demos, soak tests)")
    p.add_argument("--fast", action="store_true",
                   help="in the window, process a video file as fast as possible instead of at its "
                        "own frame rate (key f toggles; headless runs are always as fast as possible)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def parse_settings(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    return Settings(
        input=InputSettings(source=args.input, loop=args.loop, max_frames=args.max_frames),
        outputs=OutputSettings(video=args.output, export=args.export, plot=args.plot,
                               plot_joint=args.plot_joint, force=args.force),
        view=ViewSettings(window=args.display and not args.benchmark, fast=args.fast,
                          progress=args.progress, benchmark=args.benchmark),
        **processing_settings(args))


def main(argv: list[str] | None = None, *, process_exits_after: bool = False) -> int:
    """The command: argv (default sys.argv) to an exit code. run_demo.py passes
    process_exits_after=True: the process ends with this call (see signals.handled)."""
    # Ctrl-C, SIGTERM and SIGHUP end the run the same way, from the first import on (torch
    # takes seconds to load, and a stop then must not print a traceback). The native libraries'
    # own lines (FFmpeg, libjpeg, libpng, LiteRT) would come before and bury the app's.
    with command_scope(process_exits_after):
        try:
            settings = parse_settings(argv)
            if settings.view.benchmark and sys.stdout is None:   # `>&-`: print() would drop the report
                raise UserError("--benchmark prints its report on standard output, which is closed.")
            # Imported here so that --help answers at once, before torch and the models load.
            from .run import run
            result = run(settings)
            if result.benchmark is not None:   # the report is the program's output: stdout, last line
                print_report(json.dumps(result.benchmark, allow_nan=False))
            return result.exit_code
        except KeyboardInterrupt as error:   # signals.Interrupted, or a Ctrl-C outside handled()
            log.info("interrupted")
            return signals.exit_code_for(error)
        except UserError as error:
            log.error("%s", error)
            return 2


def print_report(text: str, what: str = "the report") -> None:
    """`text` (the report, or the batch's dry-run list) on standard output, or a UserError saying
    why it could not be written there (a full disk, a reader that went away: `... | head -c 10`)."""
    try:
        print(text, flush=True)
    except OSError as error:
        # what is still buffered would fail again when Python flushes stdout at exit
        with contextlib.suppress(OSError, ValueError), open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        reason = "its reader has closed it" if isinstance(error, BrokenPipeError) else \
            (error.strerror or str(error)).lower()
        raise UserError(f"cannot write {what} to standard output: {reason}.") from None
