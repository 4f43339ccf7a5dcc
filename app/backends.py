"""Which pose backend runs: the ConvNeXtPose checkpoint asked for, else the best one in weights/,
else the BlazePose GHUM fallback (said once, with where to get the real weights)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import UserError
from .types import PoseBackend

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# --precision auto measures each precision on real people before choosing: three skiers of the
# bundled sample photo (x, y, w, h pixels), a batch like a small group's
CALIBRATION_PHOTO = Path(__file__).resolve().parent.parent / "samples" / "group.jpg"
CALIBRATION_BOXES = ((139.41, 102.25, 222.39, 241.57), (372.58, 170.84, 266.63, 217.19),
                     (540.04, 48.81, 99.96, 223.36))
RELEASE_URL = "https://github.com/medialab-ku/ConvNeXtPose"
CHECKPOINT_SUFFIXES = (".tar", ".pth", ".pt", ".pth.tar")
FALLBACK = "blazepose"


def passive_openmp_waits() -> None:
    """Make PyTorch's OpenMP threads sleep, not spin, while they wait for work. Must run before
    torch is first imported (libgomp reads it once); a user's own OMP_WAIT_POLICY wins.

    Spinning (libgomp's default) keeps both cores busy between the network's layers. Here the
    network shares two cores with decoding, detection and composition on other threads, and on
    a loaded machine with other processes too: a spinning thread then holds the core that the
    thread it waits for needs. ConvNeXtPose-L alone on a busy 2-core Xeon: median 1150 ms per
    pass spinning, 155 ms sleeping (docs/benchmarks.md)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def find_checkpoint(folder: Path = WEIGHTS_DIR) -> Path | None:
    """The best checkpoint in `folder`: the release files L, M, S, XS in that order, then any
    other checkpoint file by name."""
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.name.lower().endswith(CHECKPOINT_SUFFIXES))
    for variant in ("L", "M", "S", "XS"):
        for path in files:
            stem = path.name.split(".")[0]
            if stem.lower() == f"convnextpose_{variant}".lower():
                return path
    return files[0] if files else None


def missing_weights_notice(folder: Path = WEIGHTS_DIR) -> str:
    return (f"No ConvNeXtPose checkpoint in {folder}: using the BlazePose GHUM fallback. For "
            f"ConvNeXtPose, download ConvNeXtPose_L.tar (or _M/_S/_XS) from the Google Drive folder "
            f"linked in {RELEASE_URL} and put it in {folder}/ (or pass --model PATH).")


def _fallback(device: str, precision: str) -> PoseBackend:
    """The BlazePose fallback, saying which asked-for settings it does not follow: it runs on
    the CPU in float32 (LiteRT), whatever --device and --precision say."""
    ignored = ([f"--device {device}"] if device not in ("auto", "cpu") else []) + \
        ([f"--precision {precision}"] if precision not in ("auto", "fp32") else [])
    if ignored:
        log.warning("%s: the BlazePose fallback runs on the CPU in float32 (these options are "
                    "ConvNeXtPose's).", " and ".join(ignored))
    return _blazepose()


def create_backend(model: str | None, device: str = "auto", precision: str = "auto",
                   keep_reference: bool = False) -> PoseBackend:
    """The pose backend for `--model` (a path, 'blazepose', or None for the best in weights/).
    keep_reference: keep the plain float32 network beside the optimized one, for benchmarks
    (it costs the model's size in memory again, so only then)."""
    if model is not None and model.lower() == FALLBACK:
        return _fallback(device, precision)
    path = Path(model) if model is not None else find_checkpoint()
    if path is None:
        log.info(missing_weights_notice())
        return _fallback(device, precision)
    # Imported here: torch loads only when ConvNeXtPose is actually used.
    passive_openmp_waits()
    from models import CheckpointError, load_convnextpose, optimize_for_inference, resolve_device

    from . import precision_memory
    from .estimator import ConvNeXtPoseBackend

    try:
        torch_device = resolve_device(device)
    except ValueError as error:
        raise UserError(f"{error}; use --device cpu or auto") from None
    try:
        network = load_convnextpose(path, device=torch_device)
    except CheckpointError as error:   # the network's own words, as the user's error
        raise UserError(str(error)) from None
    log.info("Loaded %s: %s", path.name, network.describe())
    key = remembered = None
    if precision == "auto" and CALIBRATION_PHOTO.is_file():
        key = precision_memory.key_for(path, torch_device, CALIBRATION_PHOTO)
        remembered = precision_memory.recall(key)
    try:
        if remembered is not None:   # measured on this machine before: run what was chosen then
            runner = optimize_for_inference(network, precision=remembered[0])
            runner.precision_trials = remembered[1]
        else:
            runner = optimize_for_inference(network, precision=precision,
                                            calibration=calibration_crops() if precision == "auto" else None)
            if key is not None and runner.precision_trials:
                precision_memory.remember(key, runner.precision, runner.precision_trials)
    except ValueError as error:   # e.g. bf16 asked for on hardware without it
        raise UserError(f"--precision {precision}: {error}") from None
    if runner.precision_trials:
        log.info("--precision auto: %s: running %s%s",
                 ", ".join(_describe_trial(t) for t in runner.precision_trials), runner.compute_path,
                 f" (measured on this machine before; {precision_memory.cache_file()} holds it)"
                 if remembered is not None else "")
    return ConvNeXtPoseBackend(runner, name=network.display_name, reference=network if keep_reference else None,
                               checkpoint=str(path))


def _describe_trial(trial) -> str:
    timed = "" if trial.ms != trial.ms else f", {trial.ms:.0f} ms"   # NaN: not timed
    if trial.precision == "fp32":
        return f"fp32 (reference{timed})"
    verdict = "" if trial.passes else ", over the 1 mm / 5 mm limits"
    return f"{trial.precision} {trial.mean_mm:.2f} mm mean, {trial.max_mm:.2f} mm max{verdict}{timed}"


def calibration_crops(photo: Path = CALIBRATION_PHOTO):
    """The network's input for CALIBRATION_BOXES in the sample photo. Without the photo (a
    copy of the project without samples/), None, said in a warning: auto then keeps float32."""
    import cv2

    from .estimator import crop_boxes, normalize_crops
    image = cv2.imread(str(photo))
    if image is None:
        log.warning("--precision auto: cannot read %s to measure the precisions on: running float32", photo)
        return None
    return normalize_crops([c.image for c in crop_boxes(image, CALIBRATION_BOXES)])


def _blazepose() -> PoseBackend:
    from .blazepose import BlazePoseBackend
    return BlazePoseBackend()
