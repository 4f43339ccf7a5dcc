"""ConvNeXtPose backend: person boxes -> crops -> one batched network pass -> 3D joints.

`estimate_poses` is the authors' demo pipeline (github.com/medialab-ku/ConvNeXtPose; the steps
are in app/geometry.py, held to the authors' outputs by tests/test_conformance.py) for all boxes
of a frame at once; `ConvNeXtPoseBackend` wraps it as
the frame loop's pose backend.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from models.convnextpose import HEATMAP_SIZE
from models.cuda_graphs import CudaGraphs, GraphTrial
from models.optimize import strict_fp32, synchronize

from . import geometry
from .errors import UserError
from .skeleton import ROOT
from .types import Box, Camera, Person, PoseBackend

PIXEL_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
PIXEL_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# People per network pass. More people in a frame go through in several passes, so a run meets
# batch sizes 1..MAX_BATCH only, and warming those up (warm_up_batches) covers every shape: on
# CUDA each new shape would otherwise stop the stream to autotune cuDNN mid-run.
MAX_BATCH = 8
# A network that computes NaN or infinities for any of the first people it sees (damaged
# weights, or weights that overflow on real pictures) is refused; one that does so later, for
# an odd crop, has that person left out (an export never holds NaN).
FIRST_PEOPLE_CHECKED = 16

log = logging.getLogger(__name__)


@dataclass
class PoseEstimate:
    """One person's result in every unit the pipeline produces."""
    bbox: np.ndarray         # (4,) processed box (clipped, squared, x1.25), x y w h pixels
    transform: np.ndarray    # (2, 3) image -> crop affine map
    coord: np.ndarray        # (J, 3) heatmap units: x, y in [0, 32), z in [0, D)
    pose_2d: np.ndarray      # (J, 2) image pixels
    pose_3d_cam: np.ndarray  # (J, 3) camera coordinates, mm
    pose_3d_rel: np.ndarray  # (J, 3) mm, Pelvis subtracted
    confidence: np.ndarray   # (J,) heatmap confidence in [0, 1]
    root_depth: float        # mm, given or from the RootNet prior


@dataclass
class Crop:
    """One box's network input: which box it came from, the processed box, the affine map."""
    index: int               # position in the boxes given
    bbox: np.ndarray         # (4,) processed box, x y w h pixels
    transform: np.ndarray    # (2, 3) image -> crop
    image: np.ndarray        # 256 x 256 BGR uint8


def crop_boxes(frame_bgr: np.ndarray, boxes) -> list[Crop]:
    """The crop of every box (x, y, w, h) that is not empty after clipping."""
    height, width = frame_bgr.shape[:2]
    crops = []
    for i, box in enumerate(boxes):
        bbox = geometry.process_box(box, width, height)
        if bbox is not None:
            transform = geometry.crop_transform(bbox)
            crops.append(Crop(i, bbox, transform, geometry.crop(frame_bgr, transform)))
    return crops


class CropUploader:
    """BGR uint8 crops -> the network's input on its device: (N, 3, 256, 256) float32, RGB,
    ImageNet-normalized, channels_last.

    The crops travel as uint8 (a quarter of float32's bytes) and are normalized where the
    network runs. For CUDA they are staged in page-locked memory (one buffer per batch size,
    reused) and copied without blocking the CPU. The same code runs on the CPU, where the
    "upload" is a no-op and the normalization is one fused pass."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        scale = 1.0 / (255.0 * PIXEL_STD[::-1])          # per BGR channel, as the bytes lie
        shift = -PIXEL_MEAN[::-1] / PIXEL_STD[::-1]
        self._scale = torch.from_numpy(np.ascontiguousarray(scale)).to(self.device)
        self._shift = torch.from_numpy(np.ascontiguousarray(shift)).to(self.device)
        self._pinned: dict[int, torch.Tensor] = {}

    def _staged(self, crops_bgr: list[np.ndarray]) -> torch.Tensor:
        batch = np.stack(crops_bgr)                       # (N, H, W, 3) uint8
        if self.device.type != "cuda":
            return torch.from_numpy(batch)
        buffer = self._pinned.get(len(crops_bgr))
        if buffer is None:
            buffer = self._pinned[len(crops_bgr)] = torch.empty(batch.shape, dtype=torch.uint8).pin_memory()
        # the previous copy out of this buffer must be over before it is overwritten
        torch.cuda.current_stream(self.device).synchronize()
        buffer.numpy()[...] = batch
        return buffer

    def upload(self, crops_bgr: list[np.ndarray]) -> torch.Tensor:
        """The crops' bytes on the device: (N, H, W, 3) uint8, BGR."""
        return self._staged(crops_bgr).to(self.device, non_blocking=True)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 BGR on the device -> the network's input."""
        pixels = pixels.float()
        # Written channel by channel into (N, H, W, C), which viewed as (N, C, H, W) is
        # channels_last already; each BGR input channel lands in its RGB place (3-5x faster on
        # the CPU than a flip and a broadcast over the short channel axis).
        images = torch.empty_like(pixels)
        for channel in range(3):
            images[..., 2 - channel] = pixels[..., channel] * self._scale[channel] + self._shift[channel]
        return images.permute(0, 3, 1, 2)

    def __call__(self, crops_bgr: list[np.ndarray]) -> torch.Tensor:
        return self.normalize(self.upload(crops_bgr))


def normalize_crops(crops_bgr: list[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops -> (N, 3, 256, 256) float32 on the CPU, contiguous: RGB, scaled to [0, 1],
    ImageNet-normalized."""
    return CropUploader("cpu")(crops_bgr).contiguous()


def _joint_table(model, images: torch.Tensor) -> torch.Tensor:
    """(N, J, 4) on the model's device: x, y, z in heatmap units and the confidence, so that
    everything comes back in one copy."""
    if hasattr(model, "forward_with_confidence"):
        coords, confidence = model.forward_with_confidence(images)
    else:
        coords = model(images)
        confidence = torch.full(coords.shape[:2], float("nan"), device=coords.device)
    return torch.cat((coords.float(), confidence.float().unsqueeze(2)), dim=2)


def _split(table: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    both = table.cpu().numpy().astype(np.float64)   # the copy back waits for the device
    return both[..., :3], both[..., 3]


def run_network(model, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(coords (N, J, 3), confidence (N, J)) as float64 numpy, on whatever device the model is.
    Both come back in one copy (one synchronization with the device)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        return _split(_joint_table(model, images.to(device)))


def warm_up_batches(device: torch.device | str, max_batch: int = MAX_BATCH) -> list[int]:
    """The batch sizes to run once before the first frame. On CUDA every size a run can meet
    (cuDNN autotunes per shape, and a shape first met mid-run stalls that frame); on the CPU
    batch 1 (oneDNN builds its kernels per shape in well under a millisecond)."""
    return list(range(1, max_batch + 1)) if torch.device(device).type == "cuda" else [1]


def estimate_poses(model, frame_bgr: np.ndarray, boxes, focal, principal_point,
                   root_depths=None, *, timing: dict | None = None,
                   infer=None) -> list[PoseEstimate | None]:
    """The authors' crop and back-projection for every box of a frame, in one batch.

    boxes: (x, y, w, h) pixels; focal: (fx, fy); principal_point: (cx, cy); root_depths: mm per
    box, or None for RootNet's distance prior. Returns one PoseEstimate per box, None where the
    box is empty after clipping, so the list stays aligned with `boxes`. timing: a dict that
    receives "network_ms", the time of upload, network and copy back; infer: what runs the
    network on a batch of BGR crops instead of `run_network(model, CropUploader(...)(crops))`
    (the backend's, which keeps its staging buffers across frames and replays CUDA graphs).
    """
    camera = Camera(float(focal[0]), float(focal[1]), float(principal_point[0]), float(principal_point[1]))
    results: list[PoseEstimate | None] = [None] * len(boxes)
    crops = crop_boxes(frame_bgr, boxes)
    if not crops:
        return results
    if infer is None:
        upload = CropUploader(next(model.parameters()).device)

        def infer(crops_bgr):
            return run_network(model, upload(crops_bgr))
    start = time.perf_counter()
    parts = [infer([c.image for c in crops[i:i + MAX_BATCH]]) for i in range(0, len(crops), MAX_BATCH)]
    if timing is not None:   # synchronized: run_network's copy back waits for the device
        timing["network_ms"] = (time.perf_counter() - start) * 1000.0
    coords = np.concatenate([p[0] for p in parts])
    confidences = np.concatenate([p[1] for p in parts])
    depth_bins = model.config.depth_bins
    for c, coord, confidence in zip(crops, coords, confidences):
        i = c.index
        root_depth = (float(root_depths[i]) if root_depths is not None
                      else geometry.root_depth_prior(c.bbox, camera))
        pose_2d = geometry.heatmap_to_image(coord, c.transform, HEATMAP_SIZE)
        depth = geometry.bins_to_depth(coord[:, 2], depth_bins, root_depth)
        pose_3d_cam = geometry.pixels_to_camera(pose_2d, depth, camera)
        results[i] = PoseEstimate(c.bbox, c.transform, coord, pose_2d, pose_3d_cam,
                                  pose_3d_cam - pose_3d_cam[ROOT], confidence, root_depth)
    return results


class ConvNeXtPoseBackend(PoseBackend):
    """The frame loop's pose backend around a loaded ConvNeXtPose network.

    `model` is what runs (possibly optimized); `reference`, when given, is the plain float32
    network it was made from, kept so benchmarks can time both on the same crops."""

    def __init__(self, model, name: str | None = None, reference=None, checkpoint: str | None = None):
        self.model = model
        self.checkpoint = checkpoint
        self.people_estimated = 0
        self.people_left_out = 0   # the network computed NaN or infinities for them
        self.reference = reference
        self.name = name or getattr(model, "display_name", "ConvNeXtPose")
        self.device = str(next(model.parameters()).device)
        self.compute_path = getattr(model, "compute_path", "fp32")
        self.uploader = CropUploader(self.device)
        self.last_model_ms: float | None = None
        self.graphs: CudaGraphs | None = None   # CUDA only, from the warm-up on
        self.graph_trials: list[GraphTrial] = []   # what the warm-up measured, per batch size

    def warm_up(self, max_batch: int = MAX_BATCH) -> list[int]:
        """Run the network once at every batch size `warm_up_batches` plans; call it on the
        thread that will infer (a CUDA thread has its own cuDNN handle and autotuning state).
        Returns the sizes run."""
        sizes = warm_up_batches(self.device, max_batch)
        blank = np.zeros((256, 256, 3), np.uint8)
        for size in sizes:
            self.infer([blank] * size)
        if torch.device(self.device).type == "cuda":
            graphs = CudaGraphs(self._on_device)
            for size in sizes:
                graphs.capture(self.uploader.upload([blank] * size))
            self.graphs, self.graph_trials = graphs, graphs.trials
            log.info("CUDA graphs: replayed for batch sizes %s (faster than launching each kernel)",
                     ", ".join(map(str, graphs.batch_sizes)) or "none")
        return sizes

    def _on_device(self, pixels: torch.Tensor) -> tuple[torch.Tensor]:
        """Uploaded crops (uint8) -> the joint table, all on the device: what a CUDA graph holds."""
        return (_joint_table(self.model, self.uploader.normalize(pixels)),)

    def _table(self, pixels: torch.Tensor) -> torch.Tensor:
        """The joint table of uploaded crops by the path that runs: a CUDA graph's replay where
        the warm-up kept one for this batch size, else the network launched as usual."""
        return (self.graphs or self._on_device)(pixels)[0]

    def infer(self, crops_bgr: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(coords, confidence) of a batch of BGR crops: one upload, the network, one copy back."""
        with torch.inference_mode():
            return _split(self._table(self.uploader.upload(crops_bgr)))

    def compare_with_reference(self, image_bgr: np.ndarray, boxes: list[Box], repeats: int = 20) -> dict:
        """Median milliseconds of the network alone on this frame's crops, plain float32 eager
        vs the path that runs, interleaved so both see the same machine load; and the largest
        difference of their answers in heatmap units."""
        crops = crop_boxes(image_bgr, [b.as_xywh() for b in boxes])
        if self.reference is None or not crops:
            return {}
        # both from the crops' bytes on the device, as a frame's are; the selected path is the
        # frame's own
        pixels = self.uploader.upload([c.image for c in crops[:MAX_BATCH]])
        paths = {"fp32_eager": lambda: self.reference(self.uploader.normalize(pixels).contiguous()),
                 "selected": lambda: self._table(pixels)[..., :3]}
        timings = {"fp32_eager": [], "selected": []}
        outputs = {}
        for _ in range(repeats + 2):   # the first two are warm-up
            for key, call in paths.items():
                # the reference is strict float32 even where the selected path runs TF32
                context = strict_fp32() if key == "fp32_eager" else contextlib.nullcontext()
                with context, torch.inference_mode():
                    synchronize(pixels.device)
                    start = time.perf_counter()
                    outputs[key] = call().float().cpu()   # the copy back waits for the device
                timings[key].append((time.perf_counter() - start) * 1000.0)
        eager, selected = (float(np.median(timings[k][2:])) for k in ("fp32_eager", "selected"))
        result = {"batch": len(pixels), "fp32_eager_ms": round(eager, 2), "selected_ms": round(selected, 2),
                  "speedup": round(eager / selected, 2), "compute_path": self.compute_path,
                  "max_deviation": float((outputs["fp32_eager"] - outputs["selected"]).abs().max())}
        if self.graph_trials:
            result["cuda_graphs"] = [asdict(t) | {"kept": t.kept} for t in self.graph_trials]
        return result

    def estimate(self, image_bgr: np.ndarray, boxes: list[Box], camera: Camera) -> list[Person | None]:
        timing: dict = {}
        estimates = estimate_poses(self.model, image_bgr, [b.as_xywh() for b in boxes],
                                   (camera.fx, camera.fy), (camera.cx, camera.cy),
                                   timing=timing, infer=self.infer)
        self.last_model_ms = timing.get("network_ms", 0.0)
        height, width = image_bgr.shape[:2]
        people: list[Person | None] = []
        for box, est in zip(boxes, estimates):
            if est is None:
                people.append(None)
                continue
            pose_3d_cam = _placed_by_size(est, camera, width, height)
            if not (np.isfinite(pose_3d_cam).all() and np.isfinite(est.pose_2d).all()
                    and np.isfinite(est.confidence).all()):
                self._non_finite()
                people.append(None)
                continue
            self.people_estimated += 1
            people.append(Person(box=box, joints_2d=est.pose_2d.astype(np.float32),
                                 joints_3d=(pose_3d_cam - pose_3d_cam[ROOT]).astype(np.float32),
                                 confidence=est.confidence.astype(np.float32),
                                 root_cam=pose_3d_cam[ROOT].astype(np.float32)))
        return people

    def _non_finite(self) -> None:
        if self.people_estimated < FIRST_PEOPLE_CHECKED:
            raise UserError(f"{self.name} from checkpoint '{self.checkpoint or 'weights/'}' computes NaN "
                            "or infinite joints for the first people it sees: its weights are damaged or "
                            "not ConvNeXtPose's.")
        if not self.people_left_out:
            log.warning("the pose network computed NaN or infinite joints for a person; such people "
                        "are left out")
        self.people_left_out += 1


def _placed_by_size(est: PoseEstimate, camera: Camera, width: int, height: int) -> np.ndarray:
    """The camera-space joints at the distance the visible body's size gives (which survives
    a box cut by the frame or by another person), or at the box-area prior's when too little
    of the body is seen."""
    relative_depth = est.pose_3d_cam[:, 2] - est.root_depth
    usable = geometry.joints_in_view(est.pose_2d, est.confidence, width, height)
    depth = geometry.root_depth_from_size(est.pose_2d, relative_depth, usable, camera)
    if depth is None:
        return est.pose_3d_cam
    return geometry.pixels_to_camera(est.pose_2d, relative_depth + depth, camera)
