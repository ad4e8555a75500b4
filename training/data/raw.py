"""A sample as its files give it (arrays at the working size), and the TryOnSample derived from it.

Readers fill a RawSample from their layout; augmentations change it; `to_sample` then derives what depends on
the rest (the pose map from the keypoints, the agnostic mask and the masked person from the parse, the pose
and the category) with the platform's own functions, so a flipped or shifted sample stays consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from services.parsing.agnostic import agnostic_mask, masked_person
from services.pose.openpose_format import pose_map  # the one place training takes the pose map from
from training.data.sample import TryOnSample


@dataclass
class RawSample:
    name: str
    garment_name: str
    category: str
    person: np.ndarray  # uint8 RGB [H, W, 3]
    garment: np.ndarray  # uint8 RGB [H, W, 3], the product photo at the working size
    garment_mask: np.ndarray  # bool [H, W]
    parse: np.ndarray  # uint8 [H, W], LIP labels
    keypoints: np.ndarray  # float32 [18, 3], pixels of the working size, zeros where missing
    densepose: np.ndarray | None = None  # uint8 [3, H, W]: I (0..24), U and V (0..255)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.person.shape[0], self.person.shape[1]


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def image_array(tensor: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [-1, 1] -> uint8 RGB [H, W, 3] (the inverse of image_tensor)."""
    values = tensor.detach().float().add(1.0).mul(127.5).round().clamp(0, 255)
    return values.byte().permute(1, 2, 0).cpu().numpy()


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """bool or uint8 [H, W] -> float [1, H, W] in {0, 1}."""
    return torch.from_numpy(np.ascontiguousarray(mask > 0)).float()[None]


@dataclass
class Derived:
    agnostic_mask: np.ndarray  # uint8 [H, W], 255 = the region to repaint
    masked_person: np.ndarray  # uint8 RGB [H, W, 3], grey inside the mask
    pose_map: np.ndarray  # uint8 [18, H, W]


def derive(raw: RawSample) -> Derived:
    """What the networks take besides the files: LaDI-VTON's agnostic mask, masked person and pose map."""
    height, width = raw.size
    inpaint = agnostic_mask(raw.parse, raw.keypoints, raw.category)
    return Derived(inpaint, masked_person(raw.person, inpaint), pose_map(raw.keypoints, width, height))


def to_sample(raw: RawSample) -> TryOnSample:
    derived = derive(raw)
    return TryOnSample(
        name=raw.name,
        garment_name=raw.garment_name,
        category=raw.category,
        person=image_tensor(raw.person),
        garment=image_tensor(raw.garment),
        garment_mask=mask_tensor(raw.garment_mask),
        parse=torch.from_numpy(raw.parse.astype(np.int64)),
        keypoints=torch.from_numpy(raw.keypoints.astype(np.float32)),
        pose_map=torch.from_numpy(derived.pose_map).float().div(255.0),
        agnostic_mask=mask_tensor(derived.agnostic_mask),
        masked_person=image_tensor(derived.masked_person),
        densepose=None if raw.densepose is None else torch.from_numpy(raw.densepose.astype(np.int64)),
    )
