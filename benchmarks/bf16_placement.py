"""Where could bf16 go? Each placement's deviation from float32 and its batch-1 time.

    .venv/bin/python benchmarks/bf16_placement.py [--variant L]

Runs parts of the folded ConvNeXtPose (BatchNorm folded, channels_last, module path) under
bfloat16 autocast and the rest in float32, and prints, per placement, the largest coordinate
deviation from the float32 network on the five conformance crops (heatmap units; the limit for
"equal answers" is 0.05) and the median ms per crop against all-float32 modules. Needs a CPU with
native bf16 (AVX512-BF16 or AMX). Uses ../shared/convnextpose's checkpoint and crops; without
them, seeded random weights and random crops (it says which), whose deviations mean less.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.bench_pose import load  # noqa: E402
from models.optimize import available_precisions, optimize_for_inference  # noqa: E402


class InBf16(nn.Module):
    """Runs the wrapped module under bf16 autocast and hands float32 on."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(x).float()


def placements(folded) -> dict:
    """name -> a copy of `folded` with that part in bf16 (module path, no fused kernels)."""
    def variant(edit):
        model = copy.deepcopy(folded)
        model.fused = None
        edit(model)
        return model

    def stage(i):
        def edit(model):
            model.backbone.downsample_layers[i] = InBf16(model.backbone.downsample_layers[i])
            model.backbone.stages[i] = InBf16(model.backbone.stages[i])
        return edit

    def head(model):
        for name in ("deconv_layers_1", "deconv_layers_2", "deconv_layers_3"):
            setattr(model.head, name, InBf16(getattr(model.head, name)))

    def final(model):
        model.head.final_layer = InBf16(model.head.final_layer)

    def everything(model):
        head(model)
        final(model)
        for i in range(4):
            stage(i)(model)

    out = {"none (float32 modules)": variant(lambda model: None)}
    for i in range(4):
        out[f"backbone stage {i + 1}"] = variant(stage(i))
    out["head blocks"] = variant(head)
    out["final 1x1 layer"] = variant(final)
    out["everything"] = variant(everything)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="L")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if "bf16" not in available_precisions("cpu"):
        sys.exit("this CPU has no native bfloat16")
    model, images, source = load(args.variant)
    folded = optimize_for_inference(model, "fp32")
    print(f"{model.display_name} from {source}; {torch.get_num_threads()} threads")
    with torch.inference_mode():
        reference = model(images)
        x = images[:1].clone()
        print(f"{'bf16 in':24s} {'max dev':>8s} {'ms':>6s}")
        for name, candidate in placements(folded).items():
            deviation = float((candidate(images) - reference).abs().max())
            for _ in range(3):
                candidate(x)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                candidate(x)
                times.append((time.perf_counter() - start) * 1e3)
            flag = "" if deviation <= 0.05 else "  > 0.05: fails"
            print(f"{name:24s} {deviation:8.4f} {statistics.median(times):6.1f}{flag}")


if __name__ == "__main__":
    main()
