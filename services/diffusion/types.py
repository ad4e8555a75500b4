"""What a try-on backend takes."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vton.runtime.errors import InvalidInput
from vton.runtime.images import require_rgb


@dataclass
class TryOnInputs:
    person: np.ndarray  # uint8 RGB [H, W, 3]
    masked_person: np.ndarray  # uint8 RGB [H, W, 3]
    agnostic_mask: np.ndarray  # uint8 [H, W], 255 = region to repaint
    warped_garment: np.ndarray  # uint8 RGB [H, W, 3]
    warped_mask: np.ndarray  # uint8 [H, W]
    garment: np.ndarray  # uint8 RGB [h, w, 3], the product photo
    labels: np.ndarray  # uint8 [H, W], LIP label map
    category: str
    pose_map: np.ndarray | None = None  # uint8 [18, H, W]
    keypoints: np.ndarray | None = None  # float32 [18, 3] (x, y, confidence), OpenPose COCO-18, person pixels
    seed: int = 0
    steps: int = 0  # 0 = the backend's default
    guidance_scale: float = 0.0  # 0 = the backend's default
    scheduler: str = ""  # one of vton.runtime.options.SCHEDULERS; "" = the backend's default
    width: int = 0  # working resolution; 0 = the backend's default
    height: int = 0
    on_step: Callable[[], None] | None = None  # called between denoising steps; raises to stop the work


def person_size(inputs: TryOnInputs) -> tuple[int, int]:
    """(height, width) of the person, once it is a uint8 RGB image and every per-pixel input has its size."""
    h, w = require_rgb(inputs.person, "the person").shape[:2]
    for name in ("agnostic_mask", "warped_garment", "warped_mask", "labels"):
        arr = getattr(inputs, name)
        if arr.shape[:2] != (h, w):
            raise InvalidInput(f"{name} is {arr.shape[1]}x{arr.shape[0]} but the person is {w}x{h}")
    return h, w
