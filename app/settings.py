"""The settings of a run: one typed object made of a part per stage. Each part checks its own
values when it is made, so a Settings that exists is a valid one; what needs the file system or
the opened input (output paths, a window) is checked by app/run.py before the first frame.

The command line (app/cli.py) and a batch worker (app/batch_worker.py) build it; the stages
take their own part (the detector its DetectorConfig, the 2D overlay its Overlay2DStyle, ...)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .detector import DetectorConfig
from .errors import UserError
from .render2d import Overlay2DStyle
from .skeleton import JOINT_INDEX
from .types import Camera

DEFAULT_FOV_DEG = 60.0   # horizontal; typical of webcams and phone cameras
MAX_FOCAL_PX = 1e6       # a 0.07 degree field of view on a 1280 px image: beyond any lens
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class InputSettings:
    source: str = "0"                 # camera index, video, image, folder or stream URL
    loop: bool = False                # a video file starts again at its end
    max_frames: int | None = None     # stop after this many frames

    def __post_init__(self):
        if self.max_frames is not None and self.max_frames < 1:
            raise UserError("--max-frames must be at least 1.")


@dataclass(frozen=True)
class CameraSettings:
    """The camera's intrinsics: a focal length in pixels, or a horizontal field of view."""
    focal: float | None = None
    fov: float = DEFAULT_FOV_DEG

    def __post_init__(self):
        # math.isfinite: nan passes every comparison's "not", and inf would reach the JSON as Infinity.
        if self.focal is not None and not (math.isfinite(self.focal) and 0 < self.focal <= MAX_FOCAL_PX):
            raise UserError(f"--focal must be a positive number of pixels, at most {MAX_FOCAL_PX:g}.")
        if not (math.isfinite(self.fov) and 1.0 <= self.fov <= 179.0):
            raise UserError("--fov must be between 1 and 179 degrees.")

    def camera(self, width: int, height: int) -> Camera:
        """The camera for frames of this size (principal point at the image centre)."""
        if self.focal is not None:
            return Camera.from_focal(width, height, self.focal)
        return Camera.from_fov(width, height, self.fov)


@dataclass(frozen=True)
class PoseSettings:
    model: str | None = None          # a checkpoint path, "blazepose", or None: the best in weights/
    device: str = "auto"
    precision: str = "auto"           # "auto": fastest path within 1 mm mean / 5 mm max of float32

    def __post_init__(self):
        if self.device not in DEVICES:
            raise UserError(f"--device must be one of {', '.join(DEVICES)}.")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}.")


@dataclass(frozen=True)
class TrackingSettings:
    detect_every: int = 15            # frames between whole-frame detections while people are followed
    smooth: bool | None = None        # One Euro smoothing; None: on for video and camera, off for stills

    def __post_init__(self):
        if self.detect_every < 1:
            raise UserError("--detect-every must be at least 1.")


@dataclass(frozen=True)
class OutputSettings:
    video: str | None = None          # --output: the annotated video, image or frame folder
    export: str | None = None         # joints per frame: .json, .csv or .npz
    plot: str | None = None           # a matplotlib 3D figure
    plot_joint: str | None = None     # with plot: this joint's trajectory instead of the last frame
    force: bool = False               # replace outputs that exist already (else refused)

    def __post_init__(self):
        if self.plot_joint is not None:
            if not self.plot:
                raise UserError("--plot-joint needs --plot PATH.")
            if self.plot_joint not in JOINT_INDEX:
                raise UserError(f"unknown joint '{self.plot_joint}' for --plot-joint: use one of "
                                f"{', '.join(JOINT_INDEX)}.")

    @property
    def plot_joint_index(self) -> int | None:
        return None if self.plot_joint is None else JOINT_INDEX[self.plot_joint]

    @property
    def any_file(self) -> bool:
        """Whether anything is saved (without a window, a run must save something to be of use)."""
        return bool(self.video or self.export or self.plot)


@dataclass(frozen=True)
class ViewSettings:
    window: bool = True               # the live window (False: headless)
    fast: bool = False                # a file in the window: as fast as possible, not at its rate
    progress: bool = True             # the progress bar of a headless run over a file
    benchmark: bool = False           # per-stage timings as JSON on stdout at the end (headless)


@dataclass(frozen=True)
class Settings:
    input: InputSettings = field(default_factory=InputSettings)
    camera: CameraSettings = field(default_factory=CameraSettings)
    pose: PoseSettings = field(default_factory=PoseSettings)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    overlay: Overlay2DStyle = field(default_factory=Overlay2DStyle)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    view: ViewSettings = field(default_factory=ViewSettings)

    def __post_init__(self):
        if not 0.0 <= self.overlay.min_confidence <= 1.0:
            raise UserError("--joint-threshold must be between 0 and 1.")
