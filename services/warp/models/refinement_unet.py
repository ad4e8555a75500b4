"""LaDI-VTON's warp refinement U-Net (`UNetVanilla(n_channels=24, n_classes=3, bilinear=True)`).

Input: the masked person (3), the pose map (18) and the TPS-warped garment (3), concatenated in that order, at the
working resolution in [-1, 1] (pose map in [0, 1]). Output: the refined warped garment, 3 channels, which the
official inference clamps to [-1, 1]. It is the classic U-Net of milesial/Pytorch-UNet in its bilinear variant:
bias-free 3x3 convolutions with BatchNorm, max-pool down, bilinear (align_corners=True) up; the names
(`inc.double_conv.0`, `down1.maxpool_conv.1.double_conv.0`, `up1.conv...`, `outc.conv`) match the `refinement`
state dict of the release.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vton.runtime.checkpoints import NetworkConfig


@dataclass(frozen=True)
class RefinementConfig(NetworkConfig):
    in_channels: int = 24
    out_channels: int = 3
    base_channels: int = 64  # the widths are base * (1, 2, 4, 8, 8)


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear x2, pad to the skip's size (odd sizes), concatenate [skip, upsampled], double conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = skip.shape[2] - x.shape[2]
        dx = skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RefinementUNet(nn.Module):
    """[B, 24, H, W] -> [B, 3, H, W] (unclamped; the caller clamps to [-1, 1] as the official code does)."""

    def __init__(self, config: RefinementConfig | None = None):
        super().__init__()
        cfg = config or RefinementConfig()
        self.config = cfg
        b = cfg.base_channels
        self.inc = DoubleConv(cfg.in_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 8 * b)  # 16b // 2: the bilinear variant halves the bottleneck
        self.up1 = Up(16 * b, 4 * b)
        self.up2 = Up(8 * b, 2 * b)
        self.up3 = Up(4 * b, b)
        self.up4 = Up(2 * b, b)
        self.outc = OutConv(b, cfg.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)
