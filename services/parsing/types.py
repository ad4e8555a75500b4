"""What a parsing backend is: the one method the stage calls, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass
class ParseEstimate:
    labels: NDArray[np.uint8]  # [H, W], class indices of `label_set`
    label_set: str  # a vton.runtime.vocab.LabelSet: one of the backend's declared Capabilities.label_sets
    people_detected: int


class ParsingBackend(Protocol):
    def parse(self, image: NDArray[np.uint8]) -> ParseEstimate:
        """The label map of a uint8 RGB [H, W, 3] photo at its size; NoPersonFound where there is nobody."""
        ...
