"""Pose-stage speed: plain float32 eager ConvNeXtPose vs optimize_for_inference's paths.

    .venv/bin/python benchmarks/bench_pose.py [--runs 30] [--variant L] [--checkpoint PATH]
                                              [--device cpu|cuda] [--alternatives] [--threads]

Prints, per batch size (1 and 4 crops of 256x256), the median ms per batch and per crop of every
path (every precision the device has: strict float32, and bf16 / TF32 / fp16 where native),
timed interleaved in one process (the machines are shared, so only same-run comparisons mean
anything) and synchronized with the device, the speedup over plain eager float32, and each
path's change from strict float32 on the crops: the largest coordinate change in heatmap units
and the mean / max per-joint change of the 3D joints in mm (auto's rule: at most 1 mm mean and
5 mm max). --checkpoint times another network (e.g. the trained-like one that
benchmarks/finetune_pseudo_labels.py makes) on the same crops.

The whole comparison runs twice, in two child processes: with glibc's default allocator
settings and within `app.memory.keep_freed_memory()` (what the app's frame loop does), which is process-wide and so
cannot be interleaved within one process. --alternatives also times what was tried and lost
(TorchScript freezing, torch.compile, and ONNX Runtime where `pip install onnx onnxruntime` has
been run; bf16 in one part of the network at a time is benchmarks/bf16_placement.py).
--threads compares 1 thread with the default. Always, after the tuned run's batch-1 table: the
roofline (the network's GFLOP, the cores' fp32 and bf16 peak, and what 2x over plain eager would
need).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# as the app does (app/backends.py): OpenMP threads that sleep, not spin, between layers
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.estimator import normalize_crops  # noqa: E402
from models import build_convnextpose, load_convnextpose  # noqa: E402
from models.cuda_graphs import CudaGraphs  # noqa: E402
from models.optimize import (available_precisions, change_mm, cuda_fp32_precision,  # noqa: E402
                             optimize_for_inference, strict_fp32, timed_ms, within_limits)
from app.memory import keep_freed_memory  # noqa: E402

SHARED = Path(os.environ.get("CONVNEXTPOSE_SHARED", ROOT.parent / "shared")) / "convnextpose"


def load(variant: str, checkpoint: str | None = None, device: str = "cpu"):
    path = Path(checkpoint) if checkpoint else SHARED / f"ConvNeXtPose_{variant}.tar"
    expected = SHARED / f"expected_{variant}.npz"
    if not expected.exists():
        expected = SHARED / "expected_L.npz"
    if not expected.exists():   # the crops of five real people that the TINY fixture comes with
        expected = ROOT / "tests" / "data" / "expected_TINY.npz"
    if path.exists():
        model = load_convnextpose(path, device=device)
        source = str(path)
    else:
        torch.manual_seed(0)
        model = build_convnextpose(variant).to(device)
        source = "random weights (no release file)"
    if expected.exists():
        patches = np.load(expected)["patch"]   # RGB uint8 crops
    else:
        patches = np.random.default_rng(0).integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    # the app's own normalization (BGR bytes in, as frames are decoded)
    images = normalize_crops([np.ascontiguousarray(p[..., ::-1], dtype=np.uint8) for p in patches])
    images = torch.cat([images] * 2)[:max(4, len(images))]   # at least 4 crops, for batch 4
    return model, images.to(device), source


def eager(model):
    def run(x):
        with torch.no_grad(), strict_fp32():   # the reference: never TF32
            return model(x)
    return run


def inference(model):
    # CUDA's TF32 switch is process-wide: each path runs under its own setting, so paths built
    # one after another can take turns
    tf32 = model.precision == "tf32"

    def run(x):
        with torch.inference_mode(), cuda_fp32_precision(tf32):
            return model(x)
    return run


def graphed(model, x):
    """model's forward_with_confidence captured as a CUDA graph for x's shape, or None where
    replaying it measured slower than launching its kernels."""
    tf32 = model.precision == "tf32"
    with cuda_fp32_precision(tf32):
        graphs = CudaGraphs(model.forward_with_confidence)
        trial = graphs.capture(x)
    if not trial.kept:
        print(f"  (CUDA graph of {model.compute_path} at batch {trial.batch}: {trial.graph_ms:.2f} ms "
              f"against {trial.eager_ms:.2f} ms launched: not kept)")
        return None

    def run(y):   # in the layout it was captured in, as the other paths convert too
        with cuda_fp32_precision(tf32):
            return graphs(y.contiguous(memory_format=torch.channels_last))[0]
    return run


def alternatives(model, images) -> dict:
    """Paths that were tried and lost; kept here so the numbers can be reproduced."""
    out = {}
    folded = optimize_for_inference(model, "fp32")

    class Logits(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.head(self.net.backbone(x))

    from models.optimize import _coords_and_plane
    j, d = model.config.joints, model.config.depth_bins
    wrapped = Logits(folded).eval()
    example = images[:1].contiguous(memory_format=torch.channels_last)
    try:
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(wrapped, example)))

        def jit_run(x):
            with torch.inference_mode():
                return _coords_and_plane(frozen(x.contiguous(memory_format=torch.channels_last)), j, d)[0]
        out["torchscript frozen fp32"] = jit_run
    except Exception as error:  # noqa: BLE001 - report and go on
        print(f"  (TorchScript freezing failed: {error})")
    try:
        import onnxruntime as ort
        path = Path("/tmp") / f"convnextpose_{os.getpid()}.onnx"
        torch.onnx.export(wrapped, (images[:1],), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        finally:
            path.unlink(missing_ok=True)

        def ort_run(x):
            logits = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
            return _coords_and_plane(logits, j, d)[0]
        out["onnxruntime fp32"] = ort_run
    except Exception as error:  # noqa: BLE001
        print(f"  (ONNX Runtime not measured: {type(error).__name__}: {str(error)[:80]})")
    try:
        # inductor with frozen weights: the same oneDNN post-op fusions, plus ~6 s of compiling
        # for every batch size, so it is no longer worth a flag
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
        start = time.perf_counter()
        compiled = torch.compile(wrapped, dynamic=False)
        with torch.inference_mode():
            compiled(example)
        print(f"  torch.compile (inductor, freezing): {time.perf_counter() - start:.1f} s to compile batch 1")

        def compiled_run(x):
            with torch.inference_mode():
                return _coords_and_plane(compiled(x.contiguous(memory_format=torch.channels_last)), j, d)[0]
        out["torch.compile fp32"] = compiled_run
    except Exception as error:  # noqa: BLE001
        print(f"  (torch.compile not measured: {type(error).__name__}: {str(error)[:80]})")
    return out


def network_flop(model) -> float:
    """Multiply-adds of one 256x256 crop through every convolution, times 2 (GFLOP)."""
    macs = []

    def count(module, inputs, output):
        macs.append(output.numel() * module.weight[0].numel())
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model.logits(torch.zeros(1, 3, 256, 256))
    for hook in hooks:
        hook.remove()
    return 2 * sum(macs) / 1e9


def peak_gflops(dtype: torch.dtype, runs: int = 20) -> float:
    """What these cores compute per second at best: a large prepacked 1x1 convolution through
    oneDNN (the kernels the network uses). torch.mm's float32 goes through MKL, which runs far
    below this on AMD CPUs, so it is not the measure."""
    x = torch.randn(1, 512, 32, 32).contiguous(memory_format=torch.channels_last).to(dtype)
    weight = torch.randn(1152, 512, 1, 1).contiguous(memory_format=torch.channels_last).to(dtype)
    packed = torch.ops.mkldnn._reorder_convolution_weight(weight, [0, 0], [1, 1], [1, 1], 1, list(x.shape))

    def conv():
        return torch.ops.mkldnn._convolution_pointwise(x, packed, None, [0, 0], [1, 1], [1, 1], 1, "none", [], "")
    for _ in range(3):
        conv()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        conv()
        times.append(time.perf_counter() - start)
    return 2 * 512 * 1152 * 32 * 32 / statistics.median(times) / 1e9


def roofline(model, eager_ms: float) -> None:
    """Why float32 cannot be 2x faster than plain eager here: the time the convolutions need at
    the cores' peak rate, against half the eager time."""
    flop = network_flop(model)
    fp32 = peak_gflops(torch.float32)
    bf16 = peak_gflops(torch.bfloat16) if "bf16" in available_precisions("cpu") else float("nan")
    print(f"roofline: {flop:.2f} GFLOP per crop; peak (1x1 conv, oneDNN) fp32 {fp32:.0f} GFLOP/s, "
          f"bf16 {bf16:.0f} GFLOP/s")
    print(f"          at the fp32 peak the convolutions alone take {flop / fp32 * 1e3:.1f} ms; 2x over "
          f"eager ({eager_ms:.1f} ms) leaves {eager_ms / 2:.1f} ms for everything, "
          f"i.e. {flop / (eager_ms / 2) * 1e3:.0f} GFLOP/s sustained")


def time_interleaved(paths: dict, x: torch.Tensor, runs: int, warmup: int = 3) -> dict:
    """{name: (median ms, min ms)} per call of each path on x, the paths taking turns, each call
    synchronized with x's device (timed_ms)."""
    for run in paths.values():
        for _ in range(warmup):
            run(x)
    times = {name: [] for name in paths}
    for _ in range(runs):
        for name, run in paths.items():
            times[name] += timed_ms(lambda: run(x), x.device, repeats=1, warmup=0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def child(args) -> None:
    tuned = args.allocator == "tuned"
    with keep_freed_memory() if tuned else contextlib.nullcontext():   # as a run has it
        measure(args, tuned)


def measure(args, tuned: bool) -> None:
    device = torch.device(args.device)
    model, images, source = load(args.variant, args.checkpoint, args.device)
    print(f"\n== {device.type}; allocator: {'tuned (keep_freed_memory)' if tuned else 'glibc default'}; "
          f"{model.display_name} from {source}; {torch.get_num_threads()} CPU threads")
    paths = {"fp32 eager (as loaded)": eager(model)}
    optimized_models = []
    for precision in available_precisions(device):
        optimized = optimize_for_inference(model, precision)
        optimized_models.append(optimized)
        paths[f"optimized {optimized.compute_path}"] = inference(optimized)
    if args.alternatives and device.type == "cpu":
        paths.update(alternatives(model, images))
    with torch.no_grad(), strict_fp32():
        reference = model(images)
    outputs = {name: run(images).float() for name, run in paths.items()}
    deviation = {name: float((out - reference).abs().max()) for name, out in outputs.items()}
    millimetres = {name: change_mm(out, reference, model.config.depth_bins) for name, out in outputs.items()}
    for batch in (1, 4):
        x = images[:batch].clone()
        batch_paths = dict(paths)
        if device.type == "cuda":   # one graph per shape: captured for this batch size
            for optimized in optimized_models:
                run = graphed(optimized, x.contiguous(memory_format=torch.channels_last))
                if run is not None:
                    name = f"graph {optimized.compute_path}"
                    batch_paths[name] = run
                    out = run(images[:batch]).float()
                    deviation[name] = float((out - reference[:batch]).abs().max())
                    millimetres[name] = change_mm(out, reference[:batch], model.config.depth_bins)
        result = time_interleaved(batch_paths, x, args.runs)
        base = result["fp32 eager (as loaded)"][0]
        print(f"batch {batch}: {'path':28s} {'median ms':>9s} {'ms/crop':>7s} {'min ms':>7s} {'speedup':>7s} "
              f"{'max dev':>8s} {'mean mm':>7s} {'max mm':>7s}")
        for name, (median, best) in result.items():
            mean_mm, max_mm = millimetres[name]
            flag = "" if within_limits(mean_mm, max_mm) else "  over 1 mm mean / 5 mm max"
            print(f"         {name:28s} {median:9.2f} {median / batch:7.2f} {best:7.2f} {base / median:6.2f}x "
                  f"{deviation[name]:8.5f} {mean_mm:7.3f} {max_mm:7.3f}{flag}")
        if batch == 1 and tuned and device.type == "cpu":
            roofline(model, base)
    if args.threads and device.type == "cpu":
        optimized = inference(optimize_for_inference(model, "fp32"))
        x = images[:1].clone()
        threads = torch.get_num_threads()
        for _ in range(3):
            optimized(x)
        times = {1: [], threads: []}
        for _ in range(args.runs):
            for n in times:
                torch.set_num_threads(n)
                start = time.perf_counter()
                optimized(x)
                times[n].append((time.perf_counter() - start) * 1e3)
        torch.set_num_threads(threads)
        print("optimized fp32, batch 1, by torch threads: "
              + ", ".join(f"{n}: {statistics.median(t):.1f} ms" for n, t in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="L")
    parser.add_argument("--checkpoint", help="a checkpoint to time instead of the release one of --variant")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--alternatives", action="store_true", help="also time the paths that lost")
    parser.add_argument("--threads", action="store_true", help="also compare 1 thread with the default")
    parser.add_argument("--allocator", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but PyTorch sees no CUDA device here")
    if args.allocator or args.device == "cuda":   # glibc's allocator does not matter on the GPU
        child(args)
        return
    for allocator in ("default", "tuned"):
        command = [sys.executable, __file__, "--allocator", allocator, "--variant", args.variant,
                   "--runs", str(args.runs), "--device", args.device] \
            + (["--checkpoint", args.checkpoint] if args.checkpoint else []) \
            + (["--alternatives"] if args.alternatives else []) + (["--threads"] if args.threads else [])
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
