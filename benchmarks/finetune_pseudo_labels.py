"""A trained-like ConvNeXtPose: the seeded random release checkpoint fine-tuned on pseudo-labels.

    python benchmarks/finetune_pseudo_labels.py --variant L --head-only --steps 600 --out out/ConvNeXtPose_L_trained_like.tar
    python benchmarks/finetune_pseudo_labels.py --variant TINY --steps 2500 --lr 3e-3 --out tests/data/ConvNeXtPose_TINY_trained_like.tar
    python benchmarks/finetune_pseudo_labels.py --variant L --steps 800 --out out/ConvNeXtPose_L_tracking.tar

The last trains every layer of L (18 min on 2 cores): unlike the head-only one, it holds its track
on the benchmark clip, which is what measuring the time around the network needs
(docs/benchmarks.md, "Seventh session").

A yardstick for reduced precisions, not a model to ship. The random conformance checkpoints have soft,
many-peaked heatmaps, which reduced precision moves far more than it moves a trained network's
concentrated ones; this makes a network whose heatmaps are concentrated where people's joints
are, so that bf16 / TF32 / fp16 can be judged on something like the real thing
(`--precision auto`, benchmarks/bench_pose.py).

Pseudo-labels: the BlazePose fallback's joints (app/blazepose.py, the LiteRT port) for every
person the app's detector finds in the real photos and video frames of tests/data, put into
ConvNeXtPose's crop (the app's own crop and affine, app/geometry.py) and its units: x, y in
heatmap cells (0..32), z in depth bins (the bins span 2 m around the pelvis).

Training: BatchNorm statistics first re-estimated on the crops (the random checkpoint's do not
match its weights), then frozen, so inference sees what training saw; AdamW with a one-cycle
learning rate on the cross-entropy of each joint's heatmap volume against a Gaussian of half a
cell around its label (what makes the heatmaps concentrated, as a trained network's are: at one
cell, the L network's confidence on the benchmark clip's crops, which it was not trained on, was
0.28-0.44, around the tracker's 0.3 threshold for a sure pose); flips and
small affine jitter. --head-only trains the head (its three blocks and the final layer: 1.33 M of
L's 8.38 M parameters) on the backbone's features of the crops and their mirror images, computed
once: several times cheaper per step, which makes L trainable in minutes on two cores. Reports
the error of the crops, unaugmented (the mean distance of the joints from their labels in x, y
cells and z bins), and fails unless it is under --target. Deterministic seeds; saves in the
authors' release format (a torch zip whose records lie under snapshot_<epoch>.pth/, the state
dict under "network" with DataParallel's "module." prefix).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from app import geometry  # noqa: E402
from app.estimator import CropUploader  # noqa: E402
from app.skeleton import FLIP_PAIRS  # noqa: E402
from app.types import Camera  # noqa: E402
from models import load_convnextpose  # noqa: E402
from models.convnextpose import HEATMAP_SIZE, INPUT_SIZE  # noqa: E402
from tests.support import video_frames  # noqa: E402

DATA = ROOT / "tests" / "data"
SHARED = Path(os.environ.get("CONVNEXTPOSE_SHARED", ROOT.parent / "shared")) / "convnextpose"
STARTS = {"L": SHARED / "ConvNeXtPose_L.tar", "XS": SHARED / "ConvNeXtPose_XS.tar",
          "TINY": DATA / "ConvNeXtPose_TINY.tar"}
PHOTOS = ("group.jpg", "basketball1.jpg", "home.jpg", "messi5.jpg")
VIDEO = "pedestrians.mp4"


@dataclass
class Sample:
    image: np.ndarray      # 256 x 256 BGR crop
    target: np.ndarray     # (J, 3): x, y heatmap cells, z depth bins
    source: str


def frames():
    """(name, BGR image) for every photo, and every frame of the video (30, 1 s)."""
    for name in PHOTOS:
        yield name, cv2.imread(str(DATA / name))
    for index, image in enumerate(video_frames(DATA / VIDEO)):
        yield f"{VIDEO}#{index}", image


def pseudo_labels(depth_bins: int, min_confidence: float = 0.5) -> list[Sample]:
    """The fallback's people in every frame, in the network's crop and units."""
    from app.blazepose import BlazePoseBackend
    from app.detector import PersonDetector

    detector, fallback = PersonDetector(), BlazePoseBackend()
    samples = []
    try:
        for name, image in frames():
            height, width = image.shape[:2]
            camera = Camera.from_fov(width, height, 60.0)
            boxes = detector.detect(image, mode="tiled")
            for person in fallback.estimate(image, boxes, camera):
                if person is None or float(np.mean(person.confidence)) < min_confidence:
                    continue
                bbox = geometry.process_box(person.box.as_xywh(), width, height)
                if bbox is None:
                    continue
                transform = geometry.crop_transform(bbox)
                crop_xy = np.c_[person.joints_2d, np.ones(len(person.joints_2d))] @ transform.T
                xy = crop_xy / INPUT_SIZE * HEATMAP_SIZE
                z = (person.joints_3d[:, 2] / (geometry.DEPTH_RANGE_MM / 2.0) + 1.0) * depth_bins / 2.0
                target = np.c_[xy, z].astype(np.float32)
                inside = (xy >= 0.5).all(axis=1) & (xy <= HEATMAP_SIZE - 1.5).all(axis=1)
                if inside.mean() < 0.9 or not ((z >= 0) & (z <= depth_bins - 1)).all():
                    continue
                samples.append(Sample(geometry.crop(image, transform), target, name))
    finally:
        detector.close()
        fallback.close()
    return samples


def mirrored(image: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mirror image, joints swapped left for right."""
    pixels = target[:, :2] / HEATMAP_SIZE * INPUT_SIZE
    pixels[:, 0] = INPUT_SIZE - 1 - pixels[:, 0]
    target = target.copy()
    target[:, :2] = pixels / INPUT_SIZE * HEATMAP_SIZE
    order = np.arange(len(target))
    for right, left in FLIP_PAIRS:
        order[right], order[left] = left, right
    return np.ascontiguousarray(image[:, ::-1]), target[order]


def augment(sample: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A mirrored (half the time), rotated, scaled and shifted copy, labels moved alike: about as
    far as the app's crops of one person move from frame to frame (its tracker crops on the
    last frame's joints)."""
    image, target = sample.image, sample.target.copy()
    if rng.random() < 0.5:
        image, target = mirrored(image, target)
    pixels = target[:, :2] / HEATMAP_SIZE * INPUT_SIZE
    angle, scale = rng.uniform(-8, 8), rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((INPUT_SIZE / 2, INPUT_SIZE / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-12, 12, size=2)
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (INPUT_SIZE, INPUT_SIZE),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pixels = np.c_[pixels, np.ones(len(pixels))] @ matrix.T
    target[:, :2] = pixels / INPUT_SIZE * HEATMAP_SIZE
    return image, target


def heatmap_loss(logits: torch.Tensor, target: torch.Tensor, joints: int, depth_bins: int,
                 sigma: float) -> torch.Tensor:
    """Cross-entropy of each joint's softmax volume against a Gaussian of `sigma` cells (and bins)
    around its label, averaged over joints. Its gradient (softmax minus target) never vanishes,
    unlike an L1 on the soft-argmax, whose gradient dies once a volume has concentrated on a
    wrong bin (a run with L1 + an expected-squared-distance term stalled at 2.7 depth bins)."""
    n, _, height, width = logits.shape
    log_probs = logits.float().reshape(n, joints, -1).log_softmax(2).reshape(n, joints, depth_bins, height, width)

    def gaussian(length: int, centre: torch.Tensor) -> torch.Tensor:
        weights = torch.exp(-(torch.arange(length, dtype=torch.float32) - centre) ** 2 / (2 * sigma ** 2))
        return weights / weights.sum(-1, keepdim=True)

    # -sum of target x log-probability; the target factorises (z, y, x), so no volume is built
    along_x = (log_probs * gaussian(width, target[..., 0:1])[:, :, None, None, :]).sum(-1)
    along_y = (along_x * gaussian(height, target[..., 1:2])[:, :, None, :]).sum(-1)
    return -(along_y * gaussian(depth_bins, target[..., 2:3])).sum(-1).mean()


def recalibrate_batchnorm(model, images: torch.Tensor) -> None:
    """Re-estimates every BatchNorm's statistics on the training crops. The seeded random
    checkpoint's statistics do not match its weights: L's backbone features come out with a
    standard deviation of ~2e6, where the first optimizer step kills every ReLU of the head."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.train()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None          # a plain average over the batches
    with torch.no_grad():
        for chunk in images.split(32):
            model.logits(chunk)
    model.eval()


def concentration(model, images: torch.Tensor) -> dict:
    """How peaked the heatmaps are: the probability mass within one cell of the soft-argmax
    (the app's confidence) and the spread (standard deviation, in cells) of the x-y marginal."""
    with torch.inference_mode():
        coords, confidence = model.forward_with_confidence(images)
        logits = model.logits(images).float()
    c = model.config
    n, _, height, width = logits.shape
    probs = logits.reshape(n, c.joints, -1).softmax(2).reshape(n, c.joints, c.depth_bins, height, width)
    plane = probs.sum(2)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    var = (plane * ((xs - coords[..., 0, None, None]) ** 2 + (ys - coords[..., 1, None, None]) ** 2)).sum((2, 3))
    return {"mass_within_1_cell": float(confidence.mean()), "spread_cells": float(var.sqrt().mean())}


def localization_error(model, images: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean Euclidean distance of the predicted joints from the labels (x, y cells, z bins)."""
    with torch.inference_mode():
        return float((model(images) - targets).norm(dim=2).mean())


def save_release_format(model, path: Path, epoch: int) -> None:
    """The authors' layout: records under snapshot_<epoch>.pth/ (torch names the records after
    the file, less its last suffix), {"epoch", "network": {"module." + name: tensor}}."""
    state = {f"module.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        staged = Path(folder) / f"snapshot_{epoch}.pth.tar"
        torch.save({"epoch": epoch, "network": state}, staged)
        os.replace(staged, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(STARTS), default="L")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--target", type=float, default=1.0, help="mean error to reach (heatmap units)")
    parser.add_argument("--steps", type=int, default=300, help="steps of the learning-rate schedule")
    parser.add_argument("--minutes", type=float, default=15.0, help="time limit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one cycle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=0.5,
                        help="width of the target Gaussians (cells, bins): how concentrated the heatmaps get")
    parser.add_argument("--head-only", action="store_true",
                        help="train the head on fixed backbone features (crops, mirror images, jittered copies)")
    parser.add_argument("--copies", type=int, default=8,
                        help="--head-only: jittered copies of each crop whose features are computed once")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"error: {args.out} exists; remove it or choose another --out")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    start_path = STARTS[args.variant]
    model = load_convnextpose(start_path)
    config = model.config
    print(f"start: {start_path.name}: {model.describe()}")
    samples = pseudo_labels(config.depth_bins)
    print(f"pseudo-labels: {len(samples)} people from {len({s.source for s in samples})} frames")
    upload = CropUploader("cpu")
    images = upload([s.image for s in samples]).contiguous()
    targets = torch.from_numpy(np.stack([s.target for s in samples]))
    random_concentration = concentration(model, images)
    print(f"before: error {localization_error(model, images, targets):.2f} units, {random_concentration}")

    mirrors = [mirrored(s.image, s.target) for s in samples]
    mirror_images = upload([m[0] for m in mirrors]).contiguous()
    recalibrate_batchnorm(model, torch.cat([images, mirror_images]))
    print(f"BatchNorm re-estimated: error {localization_error(model, images, targets):.2f} units")
    trained = model.head if args.head_only else model
    for p in trained.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps,
                                                   pct_start=0.1)
    if args.head_only:
        jittered = [augment(s, rng) for s in samples for _ in range(args.copies)]
        with torch.no_grad():
            features = torch.cat([model.backbone(chunk) for chunk in torch.cat(
                [images, mirror_images, upload([j[0] for j in jittered]).contiguous()]).split(32)])
        feature_targets = torch.cat([targets, torch.from_numpy(np.stack([m[1] for m in mirrors])),
                                     torch.from_numpy(np.stack([j[1] for j in jittered]))])
    began, step = time.monotonic(), 0
    while step < args.steps:
        if args.head_only:
            chosen = torch.from_numpy(rng.integers(0, len(features), args.batch))
            logits, y = model.head(features[chosen]), feature_targets[chosen]
        else:
            batch = [augment(samples[i], rng) for i in rng.integers(0, len(samples), args.batch)]
            x = upload([b[0] for b in batch]).contiguous()
            y = torch.from_numpy(np.stack([b[1] for b in batch]))
            logits = model.logits(x)
        loss = heatmap_loss(logits, y, config.joints, config.depth_bins, args.sigma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        elapsed = (time.monotonic() - began) / 60.0
        if step % 25 == 0 or step == args.steps:
            error = localization_error(model, images, targets)
            print(f"step {step}: loss {loss.item():.3f}, error on the crops {error:.3f} units, "
                  f"{elapsed:.1f} min", flush=True)
            if elapsed > args.minutes:
                break
    for p in trained.parameters():
        p.requires_grad_(False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_release_format(model, args.out, step)
    trained = load_convnextpose(args.out)
    final_error = localization_error(trained, images, targets)
    print(f"after {step} steps, {elapsed:.1f} min: error {final_error:.3f} units "
          f"({'reached' if final_error < args.target else 'NOT reached'}: target {args.target}), "
          f"{concentration(trained, images)}; random start: {random_concentration}")
    print(f"saved {args.out} ({args.out.stat().st_size} bytes)")
    if final_error >= args.target:
        sys.exit(1)


if __name__ == "__main__":
    main()
