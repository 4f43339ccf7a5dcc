"""What CUDA's reduced precisions would do to ConvNeXtPose's joints, emulated on the CPU.

    python benchmarks/emulate_cuda_precision.py [--checkpoint out/ConvNeXtPose_L_trained_like.tar]

A prediction for machines without a GPU, not a measurement: `--precision auto` measures the real
thing on the device at start-up (and benchmarks/bench_pose.py --device cuda prints it). Each
path runs the plain network in float32 with every convolution's input and weight rounded as the
GPU's tensor cores would round them, accumulating in float32:
- TF32: float32 with 10 mantissa bits (round to nearest even), float32's range;
- fp16: IEEE half (10 mantissa bits, largest finite 65504: beyond it, infinity);
- bf16: 7 mantissa bits, float32's range.
Autocast also keeps the output of each convolution in fp16 / bf16; that rounding is applied here
too (TF32 keeps float32 outputs). Printed per path: the mean and max per-joint change of the 3D
joints from strict float32 in mm (auto's rule: at most 1 mm and 5 mm) on the three calibration
skiers, as `--precision auto` measures them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.backends import calibration_crops  # noqa: E402
from models import load_convnextpose  # noqa: E402
from models.optimize import change_mm, within_limits  # noqa: E402

SHARED = Path(os.environ.get("CONVNEXTPOSE_SHARED", ROOT.parent / "shared")) / "convnextpose"


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to 10 mantissa bits (nearest, ties to even), as tensor cores read it."""
    bits = x.contiguous().view(torch.int32)
    keep = bits + 0x0FFF + ((bits >> 13) & 1)      # round to nearest even at bit 13
    return (keep & ~0x1FFF).view(torch.float32)


ROUNDING = {
    "tf32": (round_tf32, None),
    "fp16": (lambda x: x.to(torch.float16).float(), lambda x: x.to(torch.float16).float()),
    "bf16": (lambda x: x.to(torch.bfloat16).float(), lambda x: x.to(torch.bfloat16).float()),
}


def emulated(model, images: torch.Tensor, precision: str) -> torch.Tensor:
    """The model's coordinates with every convolution computed as `precision` would on CUDA."""
    operand, output = ROUNDING[precision]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    saved = [m.weight.data.clone() for m in convs]
    handles = []
    try:
        for conv in convs:
            conv.weight.data = operand(conv.weight.data)
            handles.append(conv.register_forward_pre_hook(lambda m, args: (operand(args[0]),)))
            if output is not None:
                handles.append(conv.register_forward_hook(lambda m, args, out: output(out)))
        with torch.inference_mode():
            return model(images)
    finally:
        for handle in handles:
            handle.remove()
        for conv, weight in zip(convs, saved):
            conv.weight.data = weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", default=[str(SHARED / "ConvNeXtPose_L.tar")])
    args = parser.parse_args()
    crops = calibration_crops()
    for path in args.checkpoint:
        model = load_convnextpose(path)
        with torch.inference_mode():
            strict = model(crops)
        print(f"{Path(path).name} ({model.display_name}), {len(crops)} calibration crops, emulated on the CPU:")
        for precision in ROUNDING:
            mean_mm, max_mm = change_mm(emulated(model, crops, precision), strict, model.config.depth_bins)
            verdict = "within" if within_limits(mean_mm, max_mm) else "over"
            print(f"  {precision}: mean {mean_mm:.2f} mm, max {max_mm:.2f} mm ({verdict} auto's limits)")


if __name__ == "__main__":
    main()
