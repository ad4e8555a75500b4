"""LaDI-VTON's TPS regression network (`ConvNet_TPS`), weight-compatible with the `tps` state dict of its release.

Two convolutional feature extractors encode the in-shop garment (A, 3 channels) and the body description (B: the
masked person and the 18-channel pose map, 21 channels) at 256x192 down to a 16x12 grid. After L2 normalisation
every position of B is correlated with every position of A, giving a [16*12, 16, 12] correlation volume; a small
regressor turns it into 5x5 source control points bounded by tanh, and the TPS through them is evaluated at every
pixel of the 256x192 grid. Module and attribute names (`extractionA.model.0`, `loc_net.regression.linear`,
`gridGen.inverse_kernel`, ...) are those of the official code, so its checkpoint loads with strict=True.

The official forward also returns six regularisation terms that training adds to its loss (the second-order
constraints on the predicted control-point grid); `forward(..., with_regularisers=True)` returns them as the
reference computes them (`tps_regularisers`), inference leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from services.warp.models.tps_grid import TPSGridGen, regular_control_points
from vton.runtime.checkpoints import NetworkConfig


@dataclass(frozen=True)
class TPSConfig(NetworkConfig):
    """Sizes of the network; the defaults are the published ones (`ConvNet_TPS(256, 192, 21, 3)`)."""

    height: int = 256
    width: int = 192
    garment_channels: int = 3
    body_channels: int = 21  # masked person (3) + pose map (18)
    ngf: int = 64
    n_layers: int = 3
    max_channels: int = 512  # the extractors' channel cap (and the width of their last two convolutions)
    regression_channels: tuple[int, ...] = (512, 256, 128, 64)
    grid_size: int = 5
    grid_range: float = 0.9


class FeatureExtraction(nn.Module):
    """Stride-2 4x4 convolutions (ReLU, then BatchNorm) down by 2^(n_layers+1), then two 3x3 convolutions."""

    def __init__(self, in_channels: int, ngf: int, n_layers: int, max_channels: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ngf, 4, 2, 1), nn.ReLU(True), nn.BatchNorm2d(ngf)]
        for i in range(n_layers):
            width = 2**i * ngf
            c_in = min(width, max_channels)
            c_out = 2 * width if width < max_channels else max_channels
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU(True), nn.BatchNorm2d(c_out)]
        layers += [
            nn.Conv2d(max_channels, max_channels, 3, 1, 1),
            nn.ReLU(True),
            nn.BatchNorm2d(max_channels),
        ]
        layers += [nn.Conv2d(max_channels, max_channels, 3, 1, 1), nn.ReLU(True)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def l2_normalise(features: torch.Tensor) -> torch.Tensor:
    """Unit length along the channel axis (the epsilon is the official one)."""
    return features / torch.sqrt((features * features).sum(1, keepdim=True) + 1e-6)


def correlate(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """[B, h*w, h, w]: channel k holds <A at (k % h, k // h), B at each position>.

    A's positions are enumerated column by column (x outer, y inner), as the official FeatureCorrelation does; the
    regressor's first convolution was trained on that channel order.
    """
    b, c, h, w = features_a.shape
    a = features_a.transpose(2, 3).reshape(b, c, h * w)
    bb = features_b.reshape(b, c, h * w).transpose(1, 2)
    return torch.bmm(bb, a).view(b, h, w, h * w).permute(0, 3, 1, 2)


class FeatureRegression(nn.Module):
    """Correlation volume -> tanh-bounded outputs (the source control points, flattened)."""

    def __init__(
        self, in_channels: int, channels: tuple[int, ...], spatial: tuple[int, int], output_dim: int
    ):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, 2, 1),
            nn.BatchNorm2d(c1),
            nn.ReLU(True),
            nn.Conv2d(c1, c2, 4, 2, 1),
            nn.BatchNorm2d(c2),
            nn.ReLU(True),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.BatchNorm2d(c3),
            nn.ReLU(True),
            nn.Conv2d(c3, c4, 3, padding=1),
            nn.BatchNorm2d(c4),
            nn.ReLU(True),
        )
        h, w = spatial[0] // 4, spatial[1] // 4  # two stride-2 convolutions
        self.linear = nn.Linear(c4 * h * w, output_dim)
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.tanh(self.linear(x.reshape(x.shape[0], -1)))


class BoundedGridLocNet(nn.Module):
    """The regressor, initialised (as the official code does) to output the target grid: an identity warp."""

    def __init__(
        self, in_channels: int, channels: tuple[int, ...], spatial: tuple[int, int], targets: torch.Tensor
    ):
        super().__init__()
        self.regression = FeatureRegression(in_channels, channels, spatial, targets.numel())
        with torch.no_grad():
            self.regression.linear.weight.zero_()
            self.regression.linear.bias.copy_(torch.atanh(targets.reshape(-1)))

    def forward(self, correlation: torch.Tensor) -> torch.Tensor:
        return self.regression(correlation).view(correlation.shape[0], -1, 2)


class TPSRegularisers(NamedTuple):
    """LaDI-VTON's grid constraints (`rx, ry, cx, cy, rg, cg` of its BoundedGridLocNet), each a scalar.

    rx, ry / cx, cy: how unevenly the squared spacing of neighbouring control points changes along each row / column
    (the change of the x and y components, floored at 0.08 element-wise, then averaged); rg / cg: how far each
    triple of consecutive points along a row / column is from collinear (twice the triangle's area, summed, floored
    at 0.02). train_tps.py adds `mean(rx + ry + cx + cy + rg + cg) * const_weight` to its L1 loss.
    """

    rx: torch.Tensor
    ry: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    rg: torch.Tensor
    cg: torch.Tensor

    def total(self) -> torch.Tensor:
        return self.rx + self.ry + self.cx + self.cy + self.rg + self.cg


SPACING_FLOOR = 0.08
COLLINEARITY_FLOOR = 0.02


def _collinearity(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """|cross(p1 - p0, p1 - p2)| for [..., 2] points: 0 when the three are on one line."""
    return torch.abs(
        (p1[..., 1] - p0[..., 1]) * (p1[..., 0] - p2[..., 0])
        - (p1[..., 1] - p2[..., 1]) * (p1[..., 0] - p0[..., 0])
    )


def tps_regularisers(control_points: torch.Tensor, grid_size: int) -> TPSRegularisers:
    """The reference's constraints on [B, grid_size², 2] control points (rows of the grid outer, x inner).

    As in the reference, the collinearity terms rg and cg are computed on the first sample of the batch only
    (its `grad_row`/`grad_col` index `[0]`); the spacing terms use the whole batch.
    """
    grid = control_points.view(
        control_points.shape[0], grid_size, grid_size, 2
    )  # [B, row (y), column (x), 2]
    along_rows = (grid[:, :, 1:] - grid[:, :, :-1]) ** 2
    along_cols = (grid[:, 1:] - grid[:, :-1]) ** 2
    row_change = torch.abs(along_rows[:, :, 1:] - along_rows[:, :, :-1])
    col_change = torch.abs(along_cols[:, 1:] - along_cols[:, :-1])
    floor = control_points.new_tensor(SPACING_FLOOR)
    first = grid[0]
    rg = _collinearity(first[:, :-2], first[:, 1:-1], first[:, 2:]).sum()
    cg = _collinearity(first[:-2], first[1:-1], first[2:]).sum()
    bound = control_points.new_tensor(COLLINEARITY_FLOOR)
    return TPSRegularisers(
        rx=torch.maximum(floor, row_change[..., 0]).mean(),
        ry=torch.maximum(floor, row_change[..., 1]).mean(),
        cx=torch.maximum(floor, col_change[..., 0]).mean(),
        cy=torch.maximum(floor, col_change[..., 1]).mean(),
        rg=torch.maximum(rg, bound),
        cg=torch.maximum(cg, bound),
    )


class ConvNetTPS(nn.Module):
    """(garment [B,3,256,192], body [B,21,256,192]) in [-1, 1] -> (grid [B,256,192,2], control points [B,N,2])."""

    def __init__(self, config: TPSConfig | None = None):
        super().__init__()
        cfg = config or TPSConfig()
        if 2**cfg.n_layers * cfg.ngf != cfg.max_channels:
            raise ValueError("ngf * 2**n_layers must equal max_channels (the extractors end at that width)")
        if cfg.grid_range >= 1:
            raise ValueError("grid_range must be < 1: the regressor's bias is atanh of the target points")
        self.config = cfg
        self.height, self.width = cfg.height, cfg.width
        targets = regular_control_points(cfg.grid_size, cfg.grid_range)
        self.extractionA = FeatureExtraction(cfg.garment_channels, cfg.ngf, cfg.n_layers, cfg.max_channels)
        self.extractionB = FeatureExtraction(cfg.body_channels, cfg.ngf, cfg.n_layers, cfg.max_channels)
        stride = 2 ** (cfg.n_layers + 1)
        feature_hw = (cfg.height // stride, cfg.width // stride)
        self.loc_net = BoundedGridLocNet(
            feature_hw[0] * feature_hw[1], cfg.regression_channels, feature_hw, targets
        )
        self.gridGen = TPSGridGen(cfg.height, cfg.width, targets)

    def forward(
        self, garment: torch.Tensor, body: torch.Tensor, with_regularisers: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, TPSRegularisers]:
        """(grid, control points), plus the training regularisers when `with_regularisers` is set."""
        features_a = l2_normalise(self.extractionA(garment))
        features_b = l2_normalise(self.extractionB(body))
        control_points = self.loc_net(correlate(features_a, features_b))
        coords = self.gridGen(control_points)
        grid = coords.view(garment.shape[0], self.height, self.width, 2)
        if with_regularisers:
            return grid, control_points, tps_regularisers(control_points, self.config.grid_size)
        return grid, control_points


def predict_grid(
    tps: ConvNetTPS, cloth: torch.Tensor, body: torch.Tensor, with_regularisers: bool = False
) -> tuple[torch.Tensor, ...]:
    """The sampling grid at the inputs' resolution, predicted by `tps` at its own (LaDI-VTON's inference and
    training): garment [B, 3, H, W] and body [B, 21, H, W] (masked person, pose map) are resized (bilinear,
    antialiased) to the network's size, and its grid resized back to H x W. Returns (grid [B, H, W, 2], control
    points), plus the regularisers when asked."""
    height, width = cloth.shape[-2:]
    low = (tps.height, tps.width)
    low_cloth = F.interpolate(cloth, size=low, mode="bilinear", antialias=True, align_corners=False)
    low_body = F.interpolate(body, size=low, mode="bilinear", antialias=True, align_corners=False)
    # float32 even under mixed precision: the TPS solve's precision decides the geometry (as the backend runs it)
    with torch.autocast(cloth.device.type, enabled=False):
        low_grid, *rest = tps(low_cloth.float(), low_body.float(), with_regularisers=with_regularisers)
    if (height, width) != low:
        low_grid = F.interpolate(
            low_grid.permute(0, 3, 1, 2),
            size=(height, width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        ).permute(0, 2, 3, 1)
    return (low_grid, *rest)
