"""What a pose backend is: the one method the stage calls, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass
class PoseEstimate:
    keypoints: NDArray[np.float32]  # [18, 3] OpenPose COCO-18: x, y (input pixels), confidence; 0 = missing
    people_detected: int


class PoseBackend(Protocol):
    def estimate(self, image: NDArray[np.uint8]) -> PoseEstimate:
        """The keypoints of the largest person in a uint8 RGB [H, W, 3] photo; NoPersonFound where there is none."""
        ...
