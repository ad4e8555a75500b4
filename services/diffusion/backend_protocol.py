"""What a try-on backend is: the one method the diffusion stage calls (its inputs are in types.py)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.diffusion.types import TryOnInputs


class TryOnBackend(Protocol):
    def try_on(self, inputs: TryOnInputs) -> NDArray[np.uint8]:
        """The try-on image, uint8 RGB [H, W, 3] at the person's size."""
        ...
