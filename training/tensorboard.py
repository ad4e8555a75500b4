"""TensorBoard logs of a run: scalars (losses, learning rate) and sample grids, written by the main process only."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def image_grid(rows: list[torch.Tensor], max_samples: int = 4, padding: int = 2) -> torch.Tensor:
    """[3, H', W'] in [0, 1]: one row per sample, one column per tensor of `rows` ([B, C, H, W], [-1, 1]).

    Single-channel tensors (masks) are shown grey; tensors of other sizes are resized to the first's.
    """
    height, width = rows[0].shape[-2:]
    columns = []
    for tensor in rows:
        t = tensor[:max_samples].detach().float().cpu()
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        elif t.shape[1] != 3:  # e.g. an 18-channel pose map: its maximum over channels
            t = t.amax(1, keepdim=True).expand(-1, 3, -1, -1) * 2 - 1
        if t.shape[-2:] != (height, width):
            t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
        columns.append(((t + 1) / 2).clamp(0, 1))
    samples = columns[0].shape[0]
    grid = torch.ones(3, samples * (height + padding) + padding, len(columns) * (width + padding) + padding)
    for c, column in enumerate(columns):
        for s in range(samples):
            top, left = padding + s * (height + padding), padding + c * (width + padding)
            grid[:, top : top + height, left : left + width] = column[s]
    return grid


class RunLog:
    """A SummaryWriter under `folder`, or nothing on processes other than the main one."""

    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            folder.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(folder))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def grid(self, name: str, rows: list[torch.Tensor], step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(name, image_grid(rows), step)

    def text(self, name: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(name, text, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
