"""What a DensePose backend is: the one method the stage calls, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass
class DensePoseEstimate:
    iuv: NDArray[np.float32]  # [3, H, W]: I (0 background, 1..NUM_DENSEPOSE_PARTS), U and V in 0..1
    people_detected: int


class DensePoseBackend(Protocol):
    def estimate(self, image: NDArray[np.uint8]) -> DensePoseEstimate:
        """The IUV of the largest person in a uint8 RGB [H, W, 3] photo; NoPersonFound where there is none."""
        ...
