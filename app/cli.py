"""Command line -> Settings -> a run (app/run.py). A user's mistake becomes one line on stderr and exit
code 2; Ctrl-C, SIGTERM or SIGHUP finishes the files being written and exits with 128 + the
signal's number (130, 143, 129)."""
from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass

from . import signals
from .errors import UserError
from .native_logs import python_owns_stderr
from .reporting import reporting

log = logging.getLogger(__name__)

DEFAULT_FOV_DEG = 60.0   # horizontal; typical of webcams and phone cameras
MAX_FOCAL_PX = 1e6       # a 0.07 degree field of view on a 1280 px image: beyond any lens


@dataclass
class Settings:
    input: str = "0"
    model: str | None = None          # a checkpoint path, "blazepose", or None: best in weights/
    device: str = "auto"
    output: str | None = None
    export: str | None = None
    plot: str | None = None
    plot_joint: str | None = None
    display: bool = True
    max_frames: int | None = None
    smooth: bool | None = None        # None: on for video and camera, off for still images
    focal: float | None = None
    fov: float = DEFAULT_FOV_DEG
    precision: str = "auto"           # "auto": fastest path within 1 mm mean / 5 mm max of float32; or forced
    detect_every: int = 15
    benchmark: bool = False
    loop: bool = False
    progress: bool = True
    fast: bool = False                # a file in the window: as fast as possible, not at its rate


def add_processing_options(p: argparse.ArgumentParser) -> None:
    """How frames are turned into joints: the options a single run and a batch share."""
    p.add_argument("--model", "-m", default=None,
                   help="ConvNeXtPose checkpoint (.tar/.pth), or 'blazepose' for the fallback "
                        "(default: the best checkpoint in weights/, else the fallback)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
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
    p.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16", "fp16"), default="auto",
                   help="auto: the fastest numerics this device has whose 3D joints stay within 1 mm "
                        "on average and 5 mm at most of strict float32, measured on real people at "
                        "start-up; fp32: strict float32 (TF32 off on CUDA); tf32, bf16, fp16: that "
                        "path, where the device runs it natively (tf32 and fp16: CUDA only)")
    p.add_argument("--detect-every", type=int, default=15, metavar="N",
                   help="re-run the person detector every N frames (and whenever a track is lost)")


def check_processing_options(args: argparse.Namespace) -> None:
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be at least 1")
    # math.isfinite: nan passes every comparison's "not", and inf would reach the JSON as Infinity.
    if args.focal is not None and not (math.isfinite(args.focal) and 0 < args.focal <= MAX_FOCAL_PX):
        raise UserError(f"--focal must be a positive number of pixels, at most {MAX_FOCAL_PX:g}")
    if not (math.isfinite(args.fov) and 1.0 <= args.fov <= 179.0):
        raise UserError("--fov must be between 1 and 179 degrees")
    if args.detect_every < 1:
        raise UserError("--detect-every must be at least 1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    check_processing_options(args)
    if args.plot_joint and not args.plot:
        raise UserError("--plot-joint needs --plot PATH")
    settings = Settings(**vars(args))
    if settings.benchmark:
        settings.display = False
    return settings


def _user_error_types() -> tuple[type[BaseException], ...]:
    """UserError, and the checkpoint errors once `models` (torch) was imported: it is not
    imported just to catch its errors, so that a run without ConvNeXtPose need not load torch."""
    types: list[type[BaseException]] = [UserError]
    checkpoint = sys.modules.get("models.checkpoint")
    if checkpoint is not None:
        types.append(checkpoint.CheckpointError)
    return tuple(types)


def main(argv: list[str] | None = None, *, process_exits_after: bool = False) -> int:
    """The command: argv (default sys.argv) to an exit code. run_demo.py passes
    process_exits_after=True: the process ends with this call (see signals.handled)."""
    # Ctrl-C, SIGTERM and SIGHUP end the run the same way, from the first import on (torch
    # takes seconds to load, and a stop then must not print a traceback). The native libraries'
    # own lines (FFmpeg, libjpeg, libpng, LiteRT) would come before and bury the app's.
    with python_owns_stderr(), reporting(), signals.handled(process_exits_after):
        try:
            settings = parse_settings(argv)
            # Imported here so that --help answers at once, before torch and the models load.
            from .run import run
            return run(settings)
        except KeyboardInterrupt as error:   # signals.Interrupted, or a Ctrl-C outside handled()
            log.info("interrupted")
            return signals.exit_code_for(error)
        except Exception as error:
            if not isinstance(error, _user_error_types()):
                raise
            log.error("%s", error)
            return 2
