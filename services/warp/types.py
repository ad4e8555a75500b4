"""What a warp backend is: the one method the stage calls, what it takes and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vton.runtime.vocab import Category


@dataclass
class WarpInputs:
    garment: NDArray[np.uint8]  # RGB [h, w, 3], the product photo
    person: NDArray[np.uint8]  # RGB [H, W, 3]
    masked_person: NDArray[np.uint8]  # RGB [H, W, 3]
    agnostic_mask: NDArray[np.uint8]  # [H, W], 255 = region to repaint
    keypoints: NDArray[np.float32]  # [18, 3], OpenPose COCO-18, person pixels
    labels: NDArray[np.uint8]  # [H, W], LIP label map of the person
    category: str  # a vton.runtime.vocab.Category
    pose_map: NDArray[np.uint8] | None = None  # [18, H, W]
    garment_mask: NDArray[np.uint8] | None = None  # [h, w], 255 = garment; computed when absent
    iuv: NDArray[np.float32] | None = None  # [3, H, W]
    width: int = 0  # working resolution of a network backend; 0 = its default
    height: int = 0


@dataclass
class WarpOutput:
    warped_garment: NDArray[np.uint8]  # RGB [H, W, 3] at the person's size
    warped_mask: NDArray[np.uint8]  # [H, W], 255 where the warped garment is
    garment_mask: NDArray[np.uint8]  # [h, w], the garment in the product photo
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)  # product-photo pixels


@dataclass(frozen=True)
class Silhouette:
    """What the embedded classifier measures on a garment's mask (services/warp/category.py says how)."""

    leg_split: float  # share of the height, from the hem up, split into two legs
    waistband: float  # coverage of the top rows over the width just below them
    elongation: float  # length for the garment's width


@dataclass(frozen=True)
class CategoryGuess:
    """A garment's category inferred from its photo, how sure the backend is, and the score of every category."""

    category: Category
    confidence: float  # in [0, 1]: the chosen category's score
    scores: dict[Category, float]  # every category, summing to 1
    features: Silhouette | None = None  # what an embedded classifier measured, for reports


class WarpBackend(Protocol):
    def warp(self, inputs: WarpInputs) -> WarpOutput:
        """The garment fitted onto the person, at the person's size."""
        ...

    def classify(self, garment: NDArray[np.uint8]) -> CategoryGuess:
        """The category of the garment in a product photo (RGB [h, w, 3]), for a request that names none."""
        ...
