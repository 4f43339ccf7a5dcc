"""A folded ConvNeXtPose run as fused, prepacked oneDNN convolutions on the CPU (float32).

PyTorch's eager `conv2d` on the CPU re-lays out each weight into oneDNN's blocked format on
every call, and runs the ReLU and the residual add as separate passes over the activations.
Here every weight is laid out once, at load, and each ReLU and residual add is a post-op of the
convolution before it, computed while the output is still in cache. The arithmetic is the same
(the same oneDNN kernels, the same float32 accumulation): the logits come out bit-identical to
the folded network's on this machine, and ConvNeXtPose-L runs about 1.25x faster than the
folded eager modules (benchmarks/bench_pose.py).

The operators are PyTorch's own (`torch.ops.mkldnn`, the ones inductor emits when it freezes
a CPU graph) but private: `FusedCpuNetwork.build` returns None, and the caller keeps the
plain modules, wherever they are missing or disagree with the modules on a probe.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .convnextpose import INPUT_SIZE, ConvNeXtPose


class _PrepackedConv:
    """One convolution with its weight in oneDNN's blocked layout, optionally + ReLU or + residual."""

    def __init__(self, conv: nn.Conv2d, input_size: list[int]):
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        # The input size only picks the blocked layout; other batch sizes run correctly with it.
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            weight, self.padding, self.stride, self.dilation, self.groups, input_size)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()   # a snapshot, like the weight

    def __deepcopy__(self, memo) -> "_PrepackedConv":
        # a blocked weight has no storage to copy; nothing writes it, so copies share it
        clone = copy.copy(self)
        clone.bias = copy.deepcopy(self.bias, memo)
        return clone

    def __call__(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            "relu" if relu else "none", [], "")

    def plus(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """conv(x) + residual, the add done as the convolution writes its output."""
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, self.weight, self.bias, self.padding, self.stride, self.dilation,
            self.groups, "add", 1.0, None, [], None)


def _require_folded(ok: bool) -> None:
    if not ok:
        raise ValueError("the network's BatchNorms must be folded first")


def _only_conv(layer: nn.Sequential) -> nn.Conv2d:
    convs = [m for m in layer if isinstance(m, nn.Conv2d)]
    rest = [m for m in layer if not isinstance(m, (nn.Conv2d, nn.Identity))]
    _require_folded(len(convs) == 1 and not rest)
    return convs[0]


class FusedCpuNetwork:
    """images (N, 3, 256, 256) -> logits (N, J * D, 32, 32), channels_last, like `model.logits`.

    Holds prepacked copies of a *folded* model's convolution weights (see optimize.py); the
    model itself is still used for the one unfolded affine (`backbone.norm`). Not an nn.Module:
    oneDNN's blocked tensors have no storage to save or move (a deep copy shares them). A
    snapshot of the weights: OptimizedConvNeXtPose rebuilds it when its modules move or load."""

    def __init__(self, model: ConvNeXtPose):
        backbone, head = model.backbone, model.head
        self.stages = []
        size = INPUT_SIZE
        for downsample, stage in zip(backbone.downsample_layers, backbone.stages):
            conv = _only_conv(downsample)
            down = _PrepackedConv(conv, [1, conv.in_channels, size, size])
            size //= conv.stride[0]
            blocks = []
            for block in stage:
                _require_folded(isinstance(block.norm, nn.Identity))
                dim = block.dwconv.in_channels
                blocks.append((_PrepackedConv(block.dwconv, [1, dim, size, size]),
                               _PrepackedConv(block.pwconv1, [1, dim, size, size]),
                               _PrepackedConv(block.pwconv2, [1, 4 * dim, size, size])))
            self.stages.append((down, blocks))
        self.backbone_norm = backbone.norm
        self.head_blocks = []
        for block in (head.deconv_layers_1, head.deconv_layers_2, head.deconv_layers_3):
            _require_folded(isinstance(block.norm, nn.Identity))
            dim = block.dwconv.in_channels
            self.head_blocks.append((_PrepackedConv(block.dwconv, [1, dim, size, size]),
                                     _PrepackedConv(block.pwconv, [1, dim, size, size]), block.upsample))
            size *= 2 if block.upsample else 1
        final = head.final_layer
        self.final = _PrepackedConv(final, [1, final.in_channels, size, size])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.contiguous(memory_format=torch.channels_last)
        for down, blocks in self.stages:
            x = down(x)
            for dwconv, pwconv1, pwconv2 in blocks:
                x = pwconv2.plus(pwconv1(dwconv(x), relu=True), x)
        x = self.backbone_norm(x)
        for dwconv, pwconv, upsample in self.head_blocks:
            x = pwconv(dwconv(x), relu=True)
            if upsample:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.final(x)

    @classmethod
    def build(cls, model: ConvNeXtPose, reference, probe: torch.Tensor | None = None,
              tolerance: float = 1e-4) -> "FusedCpuNetwork | None":
        """A fused network for a folded float32 CPU `model`, or None where that is not possible
        here (no oneDNN, other device or dtype, a PyTorch without these operators) or where its
        logits on `probe` differ from `reference(probe)` by more than `tolerance` (relative)."""
        parameter = next(model.parameters())
        if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
            return None
        if not torch.backends.mkldnn.is_available():
            return None
        if probe is None:
            probe = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
        try:
            fused = cls(model)
            with torch.inference_mode():
                got, expected = fused(probe), reference(probe.contiguous(memory_format=torch.channels_last))
        except (RuntimeError, AttributeError, TypeError, ValueError):
            return None
        scale = float(expected.abs().max()) or 1.0
        if got.shape != expected.shape or float((got - expected).abs().max()) > tolerance * scale:
            return None
        return fused
