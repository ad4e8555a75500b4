"""What a warp backend takes and returns."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class WarpInputs:
    garment: np.ndarray  # uint8 RGB [h, w, 3], the product photo
    person: np.ndarray  # uint8 RGB [H, W, 3]
    masked_person: np.ndarray  # uint8 RGB [H, W, 3]
    agnostic_mask: np.ndarray  # uint8 [H, W], 255 = region to repaint
    keypoints: np.ndarray  # float32 [18, 3], OpenPose COCO-18, person pixels
    labels: np.ndarray  # uint8 [H, W], LIP label map of the person
    category: str  # "upper_body", "lower_body" or "dresses"
    pose_map: np.ndarray | None = None  # uint8 [18, H, W]
    garment_mask: np.ndarray | None = None  # uint8 [h, w], 255 = garment; computed when absent
    iuv: np.ndarray | None = None  # float32 [3, H, W]
    width: int = 0  # working resolution of a network backend; 0 = its default
    height: int = 0


@dataclass
class WarpOutput:
    warped_garment: np.ndarray  # uint8 RGB [H, W, 3] at the person's size
    warped_mask: np.ndarray  # uint8 [H, W], 255 where the warped garment is
    garment_mask: np.ndarray  # uint8 [h, w], the garment in the product photo
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)  # product-photo pixels
