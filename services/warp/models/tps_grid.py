"""Thin-plate-spline sampling grids in torch, laid out like LaDI-VTON's `TPSGridGen` so its buffers load unchanged.

A TPS maps the fixed target control points P (a regular grid in [-1, 1]²) onto source points Q predicted by the
regression network; evaluating that map at every output pixel gives the `grid_sample` grid that pulls the in-shop
garment onto the body. Everything that depends only on P and the grid size is precomputed once:

- `inverse_kernel` [N+3, N+3]: the inverse of the TPS system matrix L = [[K, 1, P], [1ᵀ, 0, 0], [Pᵀ, 0, 0]], with
  K_ij = U(|p_i - p_j|) and U(r) = r² log r;
- `target_coordinate_repr` [H*W, N+3]: for every output pixel (row-major), [U(|x - p_j|)_j, 1, x, y];
- `padding_matrix` [3, 2]: the zeros that pad Q to the N+3 rows of the linear system.

The three are registered buffers because the official checkpoint stores them (`gridGen.inverse_kernel`, ...).
"""

from __future__ import annotations

import torch
from torch import nn


def regular_control_points(grid_size: int, grid_range: float) -> torch.Tensor:
    """[grid_size², 2] (x, y) points on a regular grid in [-grid_range, grid_range]², rows (y) outer, x inner."""
    ticks = torch.linspace(-grid_range, grid_range, grid_size, dtype=torch.float64)
    ys, xs = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()


def tps_radial_basis(points: torch.Tensor, control_points: torch.Tensor) -> torch.Tensor:
    """U(|a - b|) = r² log r for every pair: [len(points), len(control_points)], 0 where the points coincide."""
    diff = points[:, None, :] - control_points[None, :, :]
    squared = (diff * diff).sum(-1)
    # r² log r = 0.5 * r² * log(r²); the limit at r = 0 is 0 (log gives -inf and 0 * -inf is nan).
    basis = 0.5 * squared * torch.log(squared)
    return torch.nan_to_num(basis, nan=0.0)


def pixel_coordinates(height: int, width: int) -> torch.Tensor:
    """[H*W, 2] normalised (x, y) of every pixel, row-major, with -1 and 1 on the first and last pixel centres."""
    ys = torch.arange(height, dtype=torch.float64) * 2 / (height - 1) - 1
    xs = torch.arange(width, dtype=torch.float64) * 2 / (width - 1) - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)


class TPSGridGen(nn.Module):
    """Source control points [B, N, 2] -> sampling coordinates [B, H*W, 2] (x, y) of a TPS through them."""

    def __init__(self, height: int, width: int, target_control_points: torch.Tensor):
        super().__init__()
        points = target_control_points.double()
        n = points.shape[0]
        self.num_points = n
        self.height = height
        self.width = width

        system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
        system[:n, :n] = tps_radial_basis(points, points)
        system[:n, n] = 1
        system[n, :n] = 1
        system[:n, n + 1 :] = points
        system[n + 1 :, :n] = points.T

        targets = pixel_coordinates(height, width)
        target_repr = torch.cat(
            [tps_radial_basis(targets, points), torch.ones(len(targets), 1, dtype=torch.float64), targets],
            dim=1,
        )
        self.register_buffer("inverse_kernel", torch.linalg.inv(system).float())
        self.register_buffer("padding_matrix", torch.zeros(3, 2))
        self.register_buffer("target_coordinate_repr", target_repr.float())

    def forward(self, source_control_points: torch.Tensor) -> torch.Tensor:
        batch = source_control_points.shape[0]
        padded = torch.cat([source_control_points, self.padding_matrix.expand(batch, 3, 2)], dim=1)
        mapping = torch.matmul(self.inverse_kernel, padded)  # [B, N+3, 2]: the TPS coefficients
        return torch.matmul(self.target_coordinate_repr, mapping)
