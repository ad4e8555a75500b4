"""The one sample every dataset reader yields, whatever the layout on disk.

Tensors are channels-first at the reader's working size (height, width). Images are float in [-1, 1] as
the LaDI-VTON networks take them; masks are float {0, 1}. A collated batch has the same fields with a
leading batch dimension (`collate`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class TryOnSample:
    name: str  # the person image's file name, unique within a split
    garment_name: str  # the garment image's file name (another person's garment in the unpaired case)
    category: str  # vton.runtime.vocab.Category value
    person: torch.Tensor  # float [3, H, W] in [-1, 1]
    garment: torch.Tensor  # float [3, H, W] in [-1, 1], the product photo resized to the working size
    garment_mask: torch.Tensor  # float [1, H, W] in {0, 1}
    parse: torch.Tensor  # int64 [H, W], LIP labels (vton.runtime.vocab.Lip)
    keypoints: torch.Tensor  # float [18, 3]: x, y in pixels of the working size, confidence (0 = missing)
    pose_map: torch.Tensor  # float [18, H, W] in [0, 1], LaDI-VTON's Gaussian heatmaps
    agnostic_mask: torch.Tensor  # float [1, H, W], 1 = the region to repaint
    masked_person: torch.Tensor  # float [3, H, W]: the person with the agnostic region greyed out
    densepose: torch.Tensor | None = None  # int64 [3, H, W] (I, U, V) where the layout has it
    warped_garment: torch.Tensor | None = None  # float [3, H, W] in [-1, 1], a trained warp's (cached)
    warped_mask: torch.Tensor | None = None  # float [1, H, W] in {0, 1}: where that warped garment is


def collate(samples: list[TryOnSample]) -> TryOnSample:
    """A batch: tensors stacked, strings kept as lists; the optional tensors only when every sample has them."""
    out = {}
    for field in fields(TryOnSample):
        values = [getattr(s, field.name) for s in samples]
        if isinstance(values[0], torch.Tensor):
            out[field.name] = torch.stack(values)
        elif field.name in ("densepose", "warped_garment", "warped_mask"):
            out[field.name] = None
        else:
            out[field.name] = values
    return TryOnSample(**out)
