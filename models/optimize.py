"""Inference-time optimisation of ConvNeXtPose: the same answers, faster.

`optimize_for_inference(model)` returns an `OptimizedConvNeXtPose`: a ConvNeXtPose (same
`config`, `forward`, `forward_with_confidence`, `variant`, `display_name`, `describe`) whose

* BatchNorms are folded into the adjacent convolutions wherever that is exact:
  - BN *after* a conv (stem 4x4/4 -> BN, block dw7x7 -> BN, head dw3x3 -> BN): scale the conv's
    output channels, shift its bias;
  - BN *before an unpadded* conv (downsample BN -> 2x2/2 conv): scale the conv's input channels
    and move the BN shift through the kernel into the bias. Every output pixel of an unpadded
    conv sees only real (normalised) input pixels, so this is exact.
  - `backbone.norm` sits before the head's *padded* 3x3 depthwise conv; folding it there would
    also shift the zero padding, which changes the border pixels. It stays a per-channel affine
    (an 8x8 map, so it costs nothing).
* activations run channels_last (NHWC), which oneDNN's convolutions prefer;
* in float32 on the CPU, the convolutions run prepacked with their ReLUs and residual adds fused
  (onednn.py; bit-identical logits), wherever PyTorch's oneDNN operators are there;
* the compute path (`compute_path` says which: a precision, see PRECISIONS, and what runs it):
  - "fp32": strict float32 everywhere (only float rounding differs from the original); on CUDA
    with TF32 off;
  - "bf16-avx512" / "bf16-amx" / "bf16-cuda" / "fp16-cuda": the convolutions under autocast, on
    devices with native support; the head's output goes back to float32 before the soft-argmax,
    whose softmax and expectations always run in float32;
  - "tf32-cuda": float32 tensors, convolutions and matrix products in TF32 on the tensor cores.
  "auto" takes the fastest of these whose answers stay within MEAN_CHANGE_MM / MAX_CHANGE_MM of
  strict float32 on calibration crops (real people), measured when the model is built; without
  calibration crops it keeps float32. CUDA's float32 precision is a process-wide setting: it is
  set once, for the path chosen (set_cuda_fp32_precision).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from .convnextpose import ConvNeXtPose, heatmap_confidence
from .onednn import FusedCpuNetwork

# What a caller (--precision) can ask for: a number format the network runs in, or "auto". The
# path that then runs, the format on one device's instructions ("bf16-amx"), is the
# `compute_path` of the optimized network.
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
# "auto"'s rule: a reduced precision is taken only if it moves the 3D joints, against strict
# float32, by at most this much on average and at most MAX_CHANGE_MM for any joint
MEAN_CHANGE_MM = 1.0
MAX_CHANGE_MM = 5.0
# The network's units in mm: the crop spans 2 m at the person's depth under RootNet's prior (so
# a heatmap cell is 2000 / 32 = 62.5 mm), and the depth bins span 2 m around the root
CROP_SPAN_MM = 2000.0


# --------------------------------------------------------------------------- BatchNorm folding

def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """BN(x) = scale * x + shift, per channel, in float64 for the folding arithmetic."""
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def _set_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.detach().to(dtype), requires_grad=False)


def _conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is not None:
        return conv.bias.double()
    return torch.zeros(conv.out_channels, dtype=torch.float64, device=conv.weight.device)


def fold_bn_after_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv -> BN becomes one conv: exact for any padding (BN acts on the conv's output)."""
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    _set_conv(conv, weight, _conv_bias(conv) * scale + shift)


def fold_bn_before_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> None:
    """BN -> conv becomes one conv. Exact only for an unpadded, ungrouped conv."""
    if conv.padding not in ((0, 0), 0, "valid") or conv.groups != 1:
        raise ValueError("a BatchNorm can be folded into a following conv only when it is unpadded and ungrouped")
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight.double()
    bias = _conv_bias(conv) + (weight * shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    _set_conv(conv, weight * scale.view(1, -1, 1, 1), bias)


class ChannelAffine(nn.Module):
    """An eval-mode BatchNorm as y = x * scale + shift (per channel), kept where folding is inexact."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        with torch.no_grad():
            scale, shift = _bn_scale_shift(bn)
        dtype = bn.running_mean.dtype
        self.register_buffer("scale", scale.to(dtype).view(1, -1, 1, 1))
        self.register_buffer("shift", shift.to(dtype).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


@torch.no_grad()
def fold_batchnorms(model: ConvNeXtPose) -> ConvNeXtPose:
    """Fold every BatchNorm of `model` (in place) where that is exact; return the model."""
    backbone, head = model.backbone, model.head
    stem = backbone.downsample_layers[0]
    if isinstance(stem[1], nn.BatchNorm2d):
        fold_bn_after_conv(stem[0], stem[1])
        stem[1] = nn.Identity()
    for layer in list(backbone.downsample_layers)[1:]:
        if isinstance(layer[0], nn.BatchNorm2d):
            fold_bn_before_conv(layer[0], layer[1])
            layer[0] = nn.Identity()
    blocks = [block for stage in backbone.stages for block in stage]
    blocks += [head.deconv_layers_1, head.deconv_layers_2, head.deconv_layers_3]
    for block in blocks:
        if isinstance(block.norm, nn.BatchNorm2d):
            fold_bn_after_conv(block.dwconv, block.norm)
            block.norm = nn.Identity()
    if isinstance(backbone.norm, nn.BatchNorm2d):
        # Before the head's zero-padded 3x3 dwconv: not foldable exactly; keep it as an affine.
        backbone.norm = ChannelAffine(backbone.norm)
    return model


# --------------------------------------------------------------------------- devices and precisions

def cpu_bf16_kind() -> str | None:
    """"bf16-amx" or "bf16-avx512" when this CPU has native bfloat16 dot products, else None."""
    caps = {}
    get_caps = getattr(torch._C._cpu, "_get_cpu_capability", None)
    if get_caps is not None:
        try:
            caps = dict(get_caps())
        except Exception:  # an older or unusual build: fall back to /proc/cpuinfo
            caps = {}
    if not caps:
        try:
            with open("/proc/cpuinfo") as file:
                flags = next((line for line in file if line.startswith("flags")), "").split()
            caps = {"amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}
        except OSError:
            return None
    if not torch.backends.mkldnn.is_available():
        return None
    if caps.get("amx_bf16") and caps.get("amx_tile"):
        return "bf16-amx"
    if caps.get("avx512_bf16"):
        return "bf16-avx512"
    return None


def precisions_for(device_type: str, *, cpu_bf16: bool = False,
                   cuda_capability: tuple[int, int] | None = None) -> list[str]:
    """The precisions a device can run, strict float32 first: a CPU adds bf16 where it has native
    bfloat16 dot products (AVX512-BF16 or AMX); a CUDA GPU adds fp16 (compute capability 5.3
    and up), and TF32 and bf16 from Ampere (8.0) on."""
    if device_type == "cuda":
        major, minor = cuda_capability or (0, 0)
        out = ["fp32"]
        if (major, minor) >= (8, 0):
            out += ["tf32", "bf16"]
        if (major, minor) >= (5, 3):
            out.append("fp16")
        return out
    return ["fp32", "bf16"] if device_type == "cpu" and cpu_bf16 else ["fp32"]


def available_precisions(device: torch.device | str) -> list[str]:
    """The precisions `optimize_for_inference` can run on `device`, strict float32 first."""
    device = torch.device(device)
    if device.type == "cuda":
        return precisions_for("cuda", cuda_capability=torch.cuda.get_device_capability(device))
    return precisions_for(device.type, cpu_bf16=device.type == "cpu" and cpu_bf16_kind() is not None)


def set_cuda_fp32_precision(tf32: bool) -> None:
    """Float32 convolutions and matrix products on CUDA in TF32 or strict IEEE float32, and
    cuDNN's autotuning on: process-wide, set once per process by optimize_for_inference (the
    fp32_precision settings of PyTorch >= 2.9; the legacy allow_tf32 flags are deprecated, and
    setting them per call through cudnn.flags() resets these)."""
    value = "tf32" if tf32 else "ieee"
    torch.backends.cudnn.conv.fp32_precision = value
    torch.backends.cuda.matmul.fp32_precision = value
    torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def cuda_fp32_precision(tf32: bool):
    """CUDA's float32 convolutions and matrix products in TF32 or strict IEEE float32 for the
    duration; the settings come back after. For comparing paths in one process (benchmarks, the
    reference of a comparison); a run sets its precision once (set_cuda_fp32_precision)."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    value = "tf32" if tf32 else "ieee"
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = value
    try:
        yield
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved


def strict_fp32():
    """Strict float32 on CUDA for the duration (a reference to compare against must not run in
    TF32 because the model being compared does)."""
    return cuda_fp32_precision(tf32=False)


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a timer must wait)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(run, device: torch.device | str, repeats: int = 3, warmup: int = 1) -> list[float]:
    """Milliseconds of each of `repeats` calls of `run()`, synchronized with `device` before the
    clock starts and before it stops (without that, CUDA would time only the kernel launches)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def change_mm(coords: torch.Tensor, reference: torch.Tensor, depth_bins: int,
              heatmap_size: int = 32) -> tuple[float, float]:
    """(mean, max) per-joint 3D distance between two predictions (N, J, 3) in heatmap units,
    in mm at the network's own scale (CROP_SPAN_MM over the heatmap and over the depth bins)."""
    scale = torch.tensor([CROP_SPAN_MM / heatmap_size] * 2 + [CROP_SPAN_MM / depth_bins], dtype=torch.float64)
    distance = ((coords.double().cpu() - reference.double().cpu()) * scale).norm(dim=-1)
    if not torch.isfinite(distance).all():
        return float("inf"), float("inf")
    return float(distance.mean()), float(distance.max())


# --------------------------------------------------------------------------- the optimised network

def _coords_and_plane(logits: torch.Tensor, joints: int, depth_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """soft_argmax in float32, read where the logits lie: channels_last logits are a
    (N, H*W, J, D) volume with no copy, so this exponentiates once and takes the (x, y) plane
    (also what the confidence needs) and the depth marginal from that one pass. The softmax
    of soft_argmax wants (N, J, D*H*W) and would first transpose the whole volume (3-4x
    slower at batch 3). Same answers up to float32 rounding."""
    n, _, height, width = logits.shape
    volume = logits.permute(0, 2, 3, 1).reshape(n, height * width, joints, depth_bins).float()
    weights = (volume - volume.amax(dim=(1, 3), keepdim=True)).exp_()   # unnormalised softmax
    plane = weights.sum(dim=3)                                          # (N, H*W, J)
    depth = weights.sum(dim=1)                                          # (N, J, D)
    total = depth.sum(dim=2)                                            # (N, J)
    plane = (plane / total.unsqueeze(1)).transpose(1, 2).reshape(n, joints, height, width)
    depth = depth / total.unsqueeze(2)
    xs = torch.arange(width, dtype=plane.dtype, device=plane.device)
    ys = torch.arange(height, dtype=plane.dtype, device=plane.device)
    zs = torch.arange(depth_bins, dtype=plane.dtype, device=plane.device)
    x = (plane.sum(dim=2) * xs).sum(dim=2)
    y = (plane.sum(dim=3) * ys).sum(dim=2)
    z = (depth * zs).sum(dim=2)
    return torch.stack((x, y, z), dim=2), plane


class OptimizedConvNeXtPose(ConvNeXtPose):
    """A ConvNeXtPose with folded BatchNorms, channels_last activations and a per-device compute path.

    Same interface as ConvNeXtPose; `compute_path` says what runs ("fp32", "bf16-avx512",
    "bf16-amx", "bf16-cuda", "fp16-cuda", "tf32-cuda"). Build it with `optimize_for_inference`."""

    def __init__(self, model: ConvNeXtPose, compute_path: str = "fp32"):
        with torch.device("meta"):   # the architecture only: its weights are the model's, copied
            super().__init__(model.config)
        parameter = next(model.parameters())
        # copies: folding the BatchNorms below must leave `model` untouched
        self.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()}, assign=True)
        self._source_parameters = sum(p.numel() for p in model.parameters())
        self.to(device=parameter.device, dtype=parameter.dtype)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        fold_batchnorms(self)
        self.to(memory_format=torch.channels_last)
        self.compute_path = compute_path
        self.precision_trials: list[PrecisionTrial] = []   # what "auto" measured, when it did
        self.fused: FusedCpuNetwork | None = None
        self._refresh_fused()

    def _refresh_fused(self) -> None:
        """(Re)build oneDNN's fused network from the current weights, where it applies: float32
        on the CPU only (bf16 runs under autocast, which the fused kernels bypass)."""
        if not hasattr(self, "compute_path"):   # still inside __init__
            return
        self.fused = None
        if self.compute_path == "fp32":
            self.fused = FusedCpuNetwork.build(self, self._modules_network)

    # The fused network holds its own copies of the weights: keep them in step with the modules
    # when they move (.to(), .cuda(), .double()) or are replaced. In-place edits of parameters
    # are not seen; call _refresh_fused() after those.
    def _apply(self, fn, *args, **kwargs):
        result = super()._apply(fn, *args, **kwargs)
        self._refresh_fused()
        return result

    def load_state_dict(self, *args, **kwargs):
        result = super().load_state_dict(*args, **kwargs)
        self._refresh_fused()
        return result

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The reduced format the convolutions run in under autocast; None for float32 paths."""
        if self.compute_path.startswith("bf16"):
            return torch.bfloat16
        return torch.float16 if self.compute_path.startswith("fp16") else None

    def _autocast(self, device: torch.device):
        # TF32 vs strict float32 on CUDA is not switched here, per call: it is process-wide,
        # set once (set_cuda_fp32_precision)
        dtype = self.autocast_dtype
        if dtype is not None:
            return torch.autocast(device.type, dtype=dtype)
        return contextlib.nullcontext()

    def _modules_network(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(next(self.parameters()).device).contiguous(memory_format=torch.channels_last)
        with self._autocast(images.device):
            out = (self.fused or self._modules_network)(images)
        return out.float()

    def _coords_and_plane(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return _coords_and_plane(self.logits(images), self.config.joints, self.config.depth_bins)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._coords_and_plane(images)[0]

    def forward_with_confidence(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords, plane = self._coords_and_plane(images)
        with torch.inference_mode():
            # the plane is the depth-summed volume: a singleton depth axis reuses the same rule
            return coords, heatmap_confidence(plane.unsqueeze(2), coords)

    @property
    def parameter_count(self) -> int:
        """The source network's: folding BatchNorms removes parameters, not capacity."""
        return self._source_parameters

    @property
    def precision(self) -> str:
        """The precision it runs, one of PRECISIONS (compute_path without what runs it)."""
        return self.compute_path.split("-")[0]

    def describe(self) -> str:
        """The source network's line, then what this one runs."""
        return (f"{super().describe()}; inference: BatchNorm folded, channels_last, {self.compute_path}"
                + (", oneDNN fused" if self.fused else ""))


def max_coord_deviation(model: nn.Module, reference: nn.Module, images: torch.Tensor) -> float:
    """Largest |coords - reference coords| over `images`, in heatmap units."""
    with torch.inference_mode():
        ref_device = next(reference.parameters()).device
        dev = next(model.parameters()).device
        a = model(images.to(dev)).float().cpu()
        with strict_fp32():
            b = reference(images.to(ref_device)).float().cpu()
    return float((a - b).abs().max())


def within_limits(mean_mm: float, max_mm: float) -> bool:
    """auto's rule for one path: its 3D joints move from strict float32 by at most
    MEAN_CHANGE_MM on average and MAX_CHANGE_MM for any joint."""
    return mean_mm <= MEAN_CHANGE_MM and max_mm <= MAX_CHANGE_MM


@dataclass(frozen=True)
class PrecisionTrial:
    """One precision measured against strict float32 on the calibration crops."""
    precision: str
    mean_mm: float
    max_mm: float
    ms: float          # median ms per calibration batch; NaN where not timed (it failed, or nothing passed)

    @property
    def passes(self) -> bool:
        return within_limits(self.mean_mm, self.max_mm)


def pick_precision(trials: list[PrecisionTrial]) -> str:
    """auto's rule: the fastest trial that moves the joints by at most MEAN_CHANGE_MM on average
    and MAX_CHANGE_MM at most ("fp32" is the reference and always qualifies)."""
    passing = [t for t in trials if t.passes and t.precision != "fp32"]
    fp32 = next((t for t in trials if t.precision == "fp32"), None)
    if fp32 is not None and not math.isnan(fp32.ms):
        passing.append(fp32)
    return min(passing, key=lambda t: t.ms).precision if passing else "fp32"


def _compute_path(precision: str, device: torch.device) -> str:
    """The path `precision` runs on `device`: the CPU's bf16 is named for its instructions."""
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        return f"{precision}-cuda"
    return cpu_bf16_kind() or precision


def _build(model: ConvNeXtPose, precision: str, device: torch.device) -> OptimizedConvNeXtPose:
    if device.type == "cuda":
        set_cuda_fp32_precision(tf32=precision == "tf32")
    return OptimizedConvNeXtPose(model, _compute_path(precision, device))


def _trial(candidate: OptimizedConvNeXtPose, precision: str, device: torch.device,
           calibration: torch.Tensor, reference: torch.Tensor) -> PrecisionTrial:
    """The candidate's change from `reference` on the crops; its speed (median of 3 calls) only
    when that change is within the limits, since only then can its speed matter (ms is NaN
    otherwise): start-up pays one pass per path that fails."""
    if device.type == "cuda":
        set_cuda_fp32_precision(tf32=precision == "tf32")
    with torch.inference_mode():
        coords = candidate(calibration)
    mean_mm, max_mm = change_mm(coords, reference, candidate.config.depth_bins)
    trial = PrecisionTrial(precision, mean_mm, max_mm, float("nan"))
    if trial.passes:
        with torch.inference_mode():
            times = timed_ms(lambda: candidate(calibration), device, repeats=3, warmup=0)
        trial = PrecisionTrial(precision, mean_mm, max_mm, sorted(times)[1])
    return trial


def optimize_for_inference(model: ConvNeXtPose, precision: str = "auto", *,
                           calibration: torch.Tensor | None = None) -> OptimizedConvNeXtPose:
    """A faster copy of `model` (left untouched) with the same interface.

    precision: "fp32" forces strict float32 (TF32 off on CUDA); "bf16", "fp16", "tf32" force
    that path where the device runs it natively (ValueError elsewhere); "auto" keeps float32
    unless `calibration` crops (N, 3, 256, 256, normalized; real people) are given: then every
    path the device has is run on them against strict float32, and the fastest one whose 3D
    joints move by at most MEAN_CHANGE_MM on average and MAX_CHANGE_MM at most is taken
    (`optimized.precision_trials` holds the measurements). `optimized.compute_path` says what runs.
    Nothing process-wide is changed (the app's frame loop keeps freed memory for its run,
    app/memory.py)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if isinstance(model, OptimizedConvNeXtPose):
        raise ValueError("the model is already optimized")
    device = next(model.parameters()).device
    available = available_precisions(device)
    if precision != "auto":
        if precision not in available:
            raise ValueError(f"{device.type} has no native {precision} path here; use fp32")
        return _build(model, precision, device)
    if calibration is None or len(available) == 1:
        return _build(model, "fp32", device)
    calibration = calibration.to(device).contiguous(memory_format=torch.channels_last)
    candidates = {p: _build(model, p, device) for p in available}
    if device.type == "cuda":
        set_cuda_fp32_precision(tf32=False)
    with torch.inference_mode():
        reference = candidates["fp32"](calibration).double().cpu()
    trials = [_trial(candidates[p], p, device, calibration, reference) for p in available if p != "fp32"]
    fp32_ms = float("nan")
    if any(t.passes for t in trials):   # a race only when there is something to race
        if device.type == "cuda":
            set_cuda_fp32_precision(tf32=False)
        with torch.inference_mode():
            fp32_ms = sorted(timed_ms(lambda: candidates["fp32"](calibration), device, repeats=3, warmup=0))[1]
    trials.insert(0, PrecisionTrial("fp32", 0.0, 0.0, fp32_ms))
    chosen_precision = pick_precision(trials)
    if device.type == "cuda":   # once, for what runs from now on
        set_cuda_fp32_precision(tf32=chosen_precision == "tf32")
    chosen = candidates[chosen_precision]
    chosen.precision_trials = trials
    return chosen
