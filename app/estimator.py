"""ConvNeXtPose backend: person boxes -> crops -> one batched network pass -> 3D joints.

`estimate_poses` is the authors' demo pipeline (as specified in ../shared/convnextpose/SPEC.md,
beside the conformance data) for all boxes of a frame at once; `ConvNeXtPoseBackend` wraps it as
the frame loop's pose backend.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from models.convnextpose import HEATMAP_SIZE

from . import geometry
from .skeleton import ROOT
from .types import Box, Camera, Person, PoseBackend

PIXEL_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
PIXEL_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


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


def normalize_crops(crops_bgr: list[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops -> (N, 3, 256, 256) float32: RGB, scaled to [0, 1], ImageNet-normalized."""
    batch = np.stack(crops_bgr)[..., ::-1].astype(np.float32) * (1.0 / 255.0)
    batch = (batch - PIXEL_MEAN) / PIXEL_STD
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


def run_network(model, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(coords (N, J, 3), confidence (N, J)) as float64 numpy, on whatever device the model is."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        if hasattr(model, "forward_with_confidence"):
            coords, confidence = model.forward_with_confidence(images.to(device))
        else:
            coords = model(images.to(device))
            confidence = torch.full(coords.shape[:2], float("nan"))
    return coords.float().cpu().numpy().astype(np.float64), confidence.float().cpu().numpy().astype(np.float64)


def estimate_poses(model, frame_bgr: np.ndarray, boxes, focal, principal_point,
                   root_depths=None) -> list[PoseEstimate | None]:
    """The authors' crop and back-projection for every box of a frame, in one batch.

    boxes: (x, y, w, h) pixels; focal: (fx, fy); principal_point: (cx, cy); root_depths: mm per
    box, or None for RootNet's distance prior. Returns one PoseEstimate per box, None where the
    box is empty after clipping, so the list stays aligned with `boxes`.
    """
    camera = Camera(float(focal[0]), float(focal[1]), float(principal_point[0]), float(principal_point[1]))
    results: list[PoseEstimate | None] = [None] * len(boxes)
    crops = crop_boxes(frame_bgr, boxes)
    if not crops:
        return results
    coords, confidences = run_network(model, normalize_crops([c.image for c in crops]))
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

    def __init__(self, model, name: str | None = None, reference=None):
        self.model = model
        self.reference = reference
        self.name = name or getattr(model, "display_name", "ConvNeXtPose")
        self.device = str(next(model.parameters()).device)
        self.numerics = getattr(model, "numerics", "fp32")

    def compare_with_reference(self, image_bgr: np.ndarray, boxes: list[Box], repeats: int = 20) -> dict:
        """Median milliseconds of the network alone on this frame's crops, plain float32 eager
        vs the path that runs, interleaved so both see the same machine load; and the largest
        difference of their answers in heatmap units."""
        crops = crop_boxes(image_bgr, [b.as_xywh() for b in boxes])
        if self.reference is None or not crops:
            return {}
        images = normalize_crops([c.image for c in crops])
        timings = {"fp32_eager": [], "selected": []}
        outputs = {}
        for _ in range(repeats + 2):   # the first two are warm-up
            for key, network in (("fp32_eager", self.reference), ("selected", self.model)):
                start = time.perf_counter()
                with torch.no_grad() if key == "fp32_eager" else torch.inference_mode():
                    outputs[key] = network(images.to(next(network.parameters()).device)).float().cpu()
                timings[key].append((time.perf_counter() - start) * 1000.0)
        eager, selected = (float(np.median(timings[k][2:])) for k in ("fp32_eager", "selected"))
        return {"batch": len(crops), "fp32_eager_ms": round(eager, 2), "selected_ms": round(selected, 2),
                "speedup": round(eager / selected, 2), "numerics": self.numerics,
                "max_deviation": float((outputs["fp32_eager"] - outputs["selected"]).abs().max())}

    def estimate(self, image_bgr: np.ndarray, boxes: list[Box], camera: Camera) -> list[Person | None]:
        estimates = estimate_poses(self.model, image_bgr, [b.as_xywh() for b in boxes],
                                   (camera.fx, camera.fy), (camera.cx, camera.cy))
        height, width = image_bgr.shape[:2]
        people: list[Person | None] = []
        for box, est in zip(boxes, estimates):
            if est is None:
                people.append(None)
                continue
            pose_3d_cam = _placed_by_size(est, camera, width, height)
            people.append(Person(box=box, joints_2d=est.pose_2d.astype(np.float32),
                                 joints_3d=(pose_3d_cam - pose_3d_cam[ROOT]).astype(np.float32),
                                 confidence=est.confidence.astype(np.float32),
                                 root_cam=pose_3d_cam[ROOT].astype(np.float32)))
        return people


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
