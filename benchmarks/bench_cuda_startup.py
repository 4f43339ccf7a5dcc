"""Where a CUDA run's start-up goes, with and without cuDNN's autotuning.

    python benchmarks/bench_cuda_startup.py --checkpoint PATH [--precision auto]

Runs the app's own start-up steps (import torch, CUDA's first allocation, loading the
checkpoint, optimize_for_inference with the calibration crops as `--precision auto` does, the
backend's warm-up of every batch size with its CUDA graphs) in a fresh process, twice: with
cuDNN's autotuning (`torch.backends.cudnn.benchmark`, what the app sets) and without it
(cuDNN's heuristics pick each convolution's kernel). Prints seconds per step and the pose
network's median ms per call at batch 1 and 4 after the warm-up, for each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(checkpoint: str, precision: str, autotune: bool) -> dict:
    steps = {}
    start = time.perf_counter()
    import torch
    steps["import torch"] = time.perf_counter() - start
    start = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    steps["CUDA context"] = time.perf_counter() - start

    import numpy as np

    from app.backends import calibration_crops
    from app.estimator import ConvNeXtPoseBackend
    import models.optimize as optimize
    from models import load_convnextpose
    if not autotune:   # the app's own setting, with autotuning left off
        set_precision = optimize.set_cuda_fp32_precision

        def without_autotuning(tf32: bool) -> None:
            set_precision(tf32)
            torch.backends.cudnn.benchmark = False
        optimize.set_cuda_fp32_precision = without_autotuning
    start = time.perf_counter()
    network = load_convnextpose(checkpoint, device="cuda")
    steps["load"] = time.perf_counter() - start
    start = time.perf_counter()
    calibration = calibration_crops() if precision == "auto" else None
    model = optimize.optimize_for_inference(network, precision, calibration=calibration)
    torch.cuda.synchronize()
    steps[f"precision ({precision} -> {model.compute_path})"] = time.perf_counter() - start
    backend = ConvNeXtPoseBackend(model)
    start = time.perf_counter()
    backend.warm_up()
    steps["warm-up, batch 1-8 and graphs"] = time.perf_counter() - start
    blank = np.zeros((256, 256, 3), np.uint8)
    per_call = {}
    for batch in (1, 4):
        crops = [blank] * batch
        # upload, network, copy back, as a frame's
        per_call[batch] = statistics.median(optimize.timed_ms(lambda: backend.infer(crops), "cuda",
                                                              repeats=30, warmup=0))
    return {"steps": steps, "ms": per_call, "graphs": [t.batch for t in backend.graph_trials if t.kept]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--child", choices=["autotune", "heuristics"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.checkpoint, args.precision, args.child == "autotune")))
        return
    for mode in ("autotune", "heuristics"):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--checkpoint", args.checkpoint, "--precision",
                               args.precision, "--child", mode], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"cuDNN {mode}: process {wall:.1f} s; "
              + "; ".join(f"{name} {seconds:.2f} s" for name, seconds in result["steps"].items()))
        print(f"    then: {result['ms']['1']:.2f} ms per call at batch 1, {result['ms']['4']:.2f} ms at batch 4; "
              f"graphs kept for batch sizes {result['graphs']}")


if __name__ == "__main__":
    main()
