"""ConvNeXtPose (Nguyen et al., IEEE Access 2023): backbone, head and soft-argmax.

Read top to bottom: the building blocks, the backbone, the head, the soft-argmax, the whole
network, then the variant table. Module and parameter names follow the authors' release so
their checkpoints load with a plain `load_state_dict`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEATMAP_SIZE = 32   # output volume is D x 32 x 32 per joint for a 256x256 input
INPUT_SIZE = 256


@dataclass(frozen=True)
class ConvNeXtPoseConfig:
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]
    head_width: int
    depth_bins: int
    joints: int = 18


VARIANTS = {
    "XS": ConvNeXtPoseConfig((2, 2, 6, 2), (40, 80, 160, 320), 128, 32),
    "S": ConvNeXtPoseConfig((3, 3, 9, 3), (48, 96, 192, 384), 256, 32),
    "M": ConvNeXtPoseConfig((3, 3, 9, 3), (48, 96, 192, 384), 256, 64),
    "L": ConvNeXtPoseConfig((3, 3, 9, 3), (48, 96, 192, 384), 512, 64),
}


class Block(nn.Module):
    """ConvNeXt block with BatchNorm and ReLU: dw 7x7 -> BN -> 1x1 (4x) -> ReLU -> 1x1, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.BatchNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, 4 * dim, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.pwconv2 = nn.Conv2d(4 * dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))


class Backbone(nn.Module):
    """Four stages of blocks; a 4x4/4 stem and BN + 2x2/2 convs between stages."""

    def __init__(self, depths, dims):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), nn.BatchNorm2d(dims[0]))
        downsamples = [
            nn.Sequential(nn.BatchNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            for i in range(3)
        ]
        self.downsample_layers = nn.ModuleList([stem, *downsamples])
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(dim) for _ in range(depth)]) for depth, dim in zip(depths, dims)
        )
        self.norm = nn.BatchNorm2d(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x)


class HeadBlock(nn.Module):
    """dw 3x3 -> BN -> 1x1 -> ReLU, then (optionally) bilinear 2x upsampling."""

    def __init__(self, in_dim: int, out_dim: int, upsample: bool):
        super().__init__()
        self.dwconv = nn.Conv2d(in_dim, in_dim, kernel_size=3, padding=1, groups=in_dim)
        self.norm = nn.BatchNorm2d(in_dim)
        self.pwconv = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.pwconv(self.norm(self.dwconv(x))))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return x


class Head(nn.Module):
    """8x8 features -> 32x32 volume of J * D logits. The third block does not upsample."""

    def __init__(self, in_dim: int, width: int, joints: int, depth_bins: int):
        super().__init__()
        self.deconv_layers_1 = HeadBlock(in_dim, width, upsample=True)
        self.deconv_layers_2 = HeadBlock(width, width, upsample=True)
        self.deconv_layers_3 = HeadBlock(width, width, upsample=False)
        self.final_layer = nn.Conv2d(width, joints * depth_bins, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers_3(self.deconv_layers_2(self.deconv_layers_1(x))))


def soft_argmax(logits: torch.Tensor, joints: int, depth_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected (x, y, z) per joint, in heatmap units, and the softmax volume it came from.

    `logits` is (N, J * D, H, W), channel = joint * D + depth bin. Softmax runs over each
    joint's whole D x H x W volume; returns coords (N, J, 3) and probs (N, J, D, H, W).
    """
    n, _, height, width = logits.shape
    probs = F.softmax(logits.reshape(n, joints, depth_bins * height * width).float(), dim=2)
    probs = probs.reshape(n, joints, depth_bins, height, width)
    xs = torch.arange(width, dtype=probs.dtype, device=probs.device)
    ys = torch.arange(height, dtype=probs.dtype, device=probs.device)
    zs = torch.arange(depth_bins, dtype=probs.dtype, device=probs.device)
    x = (probs.sum(dim=(2, 3)) * xs).sum(dim=2)
    y = (probs.sum(dim=(2, 4)) * ys).sum(dim=2)
    z = (probs.sum(dim=(3, 4)) * zs).sum(dim=2)
    return torch.stack((x, y, z), dim=2), probs


def heatmap_confidence(probs: torch.Tensor, coords: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Per-joint confidence in [0, 1]: the probability mass of the (x, y) heatmap within
    `radius` cells of the predicted location. A sharp, unimodal heatmap scores near 1; a
    spread-out or multi-modal one (an occluded or absent joint) scores low.
    ConvNeXtPose has no explicit score, so this is the most direct measure it offers."""
    plane = probs.sum(dim=2)                                    # (N, J, H, W)
    n, j, height, width = plane.shape
    ys = torch.arange(height, device=plane.device, dtype=coords.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=plane.device, dtype=coords.dtype).view(1, 1, 1, width)
    cx = coords[..., 0].reshape(n, j, 1, 1)
    cy = coords[..., 1].reshape(n, j, 1, 1)
    near = ((xs - cx).abs() <= radius + 0.5) & ((ys - cy).abs() <= radius + 0.5)
    return (plane * near).sum(dim=(2, 3)).clamp(0.0, 1.0)


class ConvNeXtPose(nn.Module):
    """Normalized RGB crops (N, 3, 256, 256) -> joints (N, J, 3) in heatmap units:
    x, y in [0, 32), z in [0, D) depth bins (the authors' forward)."""

    def __init__(self, config: ConvNeXtPoseConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config.depths, config.dims)
        self.head = Head(config.dims[-1], config.head_width, config.joints, config.depth_bins)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        coords, _ = soft_argmax(self.logits(images), self.config.joints, self.config.depth_bins)
        return coords

    def forward_with_confidence(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coords (N, J, 3), confidence (N, J)) from one pass."""
        coords, probs = soft_argmax(self.logits(images), self.config.joints, self.config.depth_bins)
        return coords, heatmap_confidence(probs, coords)

    @property
    def variant(self) -> str | None:
        """The released variant this shape matches ("XS", "S", "M", "L"), else None."""
        for name, config in VARIANTS.items():
            if config == self.config:
                return name
        return None

    @property
    def display_name(self) -> str:
        return f"ConvNeXtPose-{self.variant}" if self.variant else "ConvNeXtPose (custom)"

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> str:
        """One line: variant, backbone dims, head width, depth bins, joints, parameters."""
        c = self.config
        return (f"{self.display_name}: depths {list(c.depths)}, dims {list(c.dims)}, head width "
                f"{c.head_width}, {c.depth_bins} depth bins, {c.joints} joints, "
                f"{self.parameter_count / 1e6:.3f} M parameters")


def build_convnextpose(variant: str | ConvNeXtPoseConfig, joints: int = 18) -> ConvNeXtPose:
    """An eval-mode ConvNeXtPose of a released variant ("XS", "S", "M", "L") or a given config."""
    if isinstance(variant, ConvNeXtPoseConfig):
        config = variant
    else:
        key = str(variant).upper()
        if key not in VARIANTS:
            raise ValueError(f"unknown ConvNeXtPose variant {variant!r}: choose one of {', '.join(VARIANTS)}")
        base = VARIANTS[key]
        config = ConvNeXtPoseConfig(base.depths, base.dims, base.head_width, base.depth_bins, joints)
    return ConvNeXtPose(config).eval()
