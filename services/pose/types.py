"""What a pose backend returns."""

from dataclasses import dataclass

import numpy as np

# OpenPose COCO-18 order.
KEYPOINT_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip


@dataclass
class PoseEstimate:
    keypoints: np.ndarray  # float32 [18, 3]: x, y in pixels of the input, confidence; zeros where missing
    people_detected: int
