"""The embedded pose backend: MediaPipe's BlazePose networks (LiteRT), its 33 landmarks mapped to COCO-18."""

from __future__ import annotations

import numpy as np

from services.pose.types import PoseEstimate
from vton.runtime.blazepose import OnBlazePose


class BlazePoseBackend(OnBlazePose):
    """Runs on a CPU without any download beyond the shipped `.tflite` files; raises NoPersonFound."""

    def estimate(self, image: np.ndarray) -> PoseEstimate:
        """COCO-18 keypoints (px, confidence; zeros where missing) of the largest person, and how many there are."""
        observation = self.pose.observe(image)
        return PoseEstimate(keypoints=observation.keypoints, people_detected=observation.people_detected)
