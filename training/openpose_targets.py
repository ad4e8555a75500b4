"""OpenPose's training targets from COCO-18 keypoints (Cao et al., CVPR 2017; CMU's training data layer).

At the network's output stride (8), for a grid cell whose centre is at input pixel p:
- part heatmap k: exp(-|p - x_k|² / (2 sigma²)), the maximum over people (sigma = 7 pixels at a 368-pixel input,
  scaled with the input height); the 19th channel is the background, 1 - the maximum over parts;
- part affinity field of limb (a, b): the unit vector from a to b on the cells within one cell of the segment
  (projected length in [0, |b - a|]), zero elsewhere. A try-on sample holds one person, so the reference's
  average over overlapping people does not arise.
The channels are laid out as the network's outputs are read at inference (the backend's LIMBS table: limb k's x
and y in PAF channels 2k', 2k'+1 of its own order), so a trained network is read back by the same code.
"""

from __future__ import annotations

import torch

from services.pose.backends.openpose import LIMBS, STRIDE

SIGMA_AT_368 = 7.0
PAF_WIDTH_CELLS = 1.0


def cell_centres(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-pixel coordinates (ys [h, 1], xs [1, w]) of the output cells' centres."""
    ys = torch.arange(height // STRIDE, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    xs = torch.arange(width // STRIDE, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    return ys[:, None], xs[None, :]


def heatmap_targets(keypoints: torch.Tensor, height: int, width: int, num_heatmaps: int = 19) -> torch.Tensor:
    """[B, num_heatmaps, H/8, W/8] from keypoints [B, 18, 3] (x, y in input pixels, confidence; 0 = missing)."""
    ys, xs = cell_centres(height, width, keypoints.device)
    sigma = SIGMA_AT_368 * height / 368
    dx = xs[None, None] - keypoints[:, :, 0, None, None]
    dy = ys[None, None] - keypoints[:, :, 1, None, None]
    maps = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)) * (keypoints[:, :, 2, None, None] > 0)
    background = (1 - maps.amax(1, keepdim=True)).clamp(min=0)
    return torch.cat([maps, background], 1)[:, :num_heatmaps]


def paf_targets(keypoints: torch.Tensor, height: int, width: int, num_pafs: int = 38) -> torch.Tensor:
    """[B, num_pafs, H/8, W/8] part affinity fields from keypoints [B, 18, 3]."""
    ys, xs = cell_centres(height, width, keypoints.device)
    batch = keypoints.shape[0]
    out = torch.zeros(batch, num_pafs, ys.shape[0], xs.shape[1], device=keypoints.device)
    half_width = PAF_WIDTH_CELLS * STRIDE
    for part_a, part_b, channel_x, channel_y in LIMBS:
        if max(channel_x, channel_y) >= num_pafs:
            continue
        a, b = keypoints[:, part_a], keypoints[:, part_b]
        present = (a[:, 2] > 0) & (b[:, 2] > 0)
        vector = b[:, :2] - a[:, :2]
        length = vector.norm(dim=1).clamp(min=1e-6)
        unit = vector / length[:, None]
        rel_x = xs[None] - a[:, 0, None, None]
        rel_y = ys[None] - a[:, 1, None, None]
        along = rel_x * unit[:, 0, None, None] + rel_y * unit[:, 1, None, None]
        across = (rel_x * unit[:, 1, None, None] - rel_y * unit[:, 0, None, None]).abs()
        on_limb = (
            (along >= 0) & (along <= length[:, None, None]) & (across <= half_width) & present[:, None, None]
        )
        out[:, channel_x] = on_limb * unit[:, 0, None, None]
        out[:, channel_y] = on_limb * unit[:, 1, None, None]
    return out
