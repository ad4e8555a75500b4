"""The embedded pose backend: MediaPipe's BlazePose networks (LiteRT), its 33 landmarks mapped to COCO-18."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.pose.types import PoseEstimate
from vton.runtime.blazepose import BlazePose


class BlazePoseBackend:
    """Runs on a CPU without any download beyond the shipped `.tflite` files; raises NoPersonFound."""

    def __init__(self, model: BlazePose):
        self.model = model

    @classmethod
    def from_pretrained(cls, folder: Path, landmark_model: str = "full") -> BlazePoseBackend:
        return cls(BlazePose.from_pretrained(Path(folder), landmark_model=landmark_model))

    def estimate(self, image: np.ndarray) -> PoseEstimate:
        """COCO-18 keypoints (px, confidence; zeros where missing) of the largest person, and how many there are."""
        observation = self.model.observe(image)
        return PoseEstimate(keypoints=observation.keypoints, people_detected=observation.people_detected)
