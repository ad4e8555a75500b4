"""What a parsing backend returns."""

from dataclasses import dataclass

import numpy as np


@dataclass
class ParseEstimate:
    labels: np.ndarray  # uint8 [H, W], class indices of `label_set`
    label_set: str  # "lip", "atr" or "pascal"
    people_detected: int
