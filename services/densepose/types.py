"""What a DensePose backend returns."""

from dataclasses import dataclass

import numpy as np


@dataclass
class DensePoseEstimate:
    iuv: np.ndarray  # float32 [3, H, W]: I (0 background, 1..24 parts), U and V in 0..1
    people_detected: int
