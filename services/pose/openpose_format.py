"""COCO-18 keypoints in the forms the try-on datasets and networks use them.

- `to_openpose_json` / `from_openpose_json`: OpenPose's JSON document (`people[0].pose_keypoints_2d`, 54 numbers
  for COCO-18), as VITON-HD and Dress Code store their pose files.
- `draw_skeleton`: the picture OpenPose's tools draw: 17 limbs as translucent ellipses in OpenPose's 18-colour
  palette, a dot on each joint, on black.
- `pose_map`: LaDI-VTON's Gaussian channels, as uint8 (peak 255); `vton.runtime.posemap` draws them (the warp and
  diffusion stages use the same function).

Keypoints are float32 [18, 3] (x, y in pixels, confidence), zeros where a joint is missing, as OpenPose writes it.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np

from vton.runtime.posemap import pose_map
from vton.runtime.vocab import LIMBS, NUM_KEYPOINTS

__all__ = ["draw_skeleton", "found", "from_openpose_json", "pose_map", "to_openpose_json"]

# OpenPose's palette: joint i and limb i (in `LIMBS` order) are drawn in colour i.
COLORS = (  # RGB
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
STICK_WIDTH = 4
JOINT_RADIUS = 4


def _check(keypoints: np.ndarray) -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be [18, 3] (x, y, confidence), not {list(keypoints.shape)}")
    return keypoints


def found(keypoints: np.ndarray) -> np.ndarray:
    """[18] bool: the joints that are present (OpenPose writes a missing joint as 0, 0, 0)."""
    return _check(keypoints)[:, 2] > 0


def to_openpose_json(keypoints: np.ndarray) -> str:
    """OpenPose's JSON document for one person, as VITON-HD / Dress Code keep it (version 1.3)."""
    flat = [round(float(v), 3) for v in _check(keypoints).ravel()]
    person = {
        "person_id": [-1],
        "pose_keypoints_2d": flat,
        "face_keypoints_2d": [],
        "hand_left_keypoints_2d": [],
        "hand_right_keypoints_2d": [],
        "pose_keypoints_3d": [],
        "face_keypoints_3d": [],
        "hand_left_keypoints_3d": [],
        "hand_right_keypoints_3d": [],
    }
    return json.dumps({"version": 1.3, "people": [person]})


def from_openpose_json(document: str) -> np.ndarray:
    """[18, 3] keypoints of `people[0]` (zeros when the document has nobody)."""
    people = json.loads(document).get("people") or []
    if not people:
        return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    values = np.asarray(people[0]["pose_keypoints_2d"], dtype=np.float32)
    if values.size != NUM_KEYPOINTS * 3:
        raise ValueError(f"pose_keypoints_2d has {values.size} numbers; COCO-18 has {NUM_KEYPOINTS * 3}")
    return values.reshape(NUM_KEYPOINTS, 3)


def draw_skeleton(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 RGB [H, W, 3]: the skeleton as OpenPose's tools draw it, on black."""
    keypoints = _check(keypoints)
    present = found(keypoints)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for i in range(NUM_KEYPOINTS):
        if present[i]:
            x, y = keypoints[i, :2]
            cv2.circle(canvas, (int(x), int(y)), JOINT_RADIUS, COLORS[i], thickness=-1)
    for i, (a, b) in enumerate(LIMBS):
        if not (present[a] and present[b]):
            continue
        (xa, ya), (xb, yb) = keypoints[a, :2], keypoints[b, :2]
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        centre = (int((xa + xb) / 2), int((ya + yb) / 2))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)
        # Each limb is blended 60/40 over what is already drawn, which is what gives OpenPose's look.
        limb = canvas.copy()
        cv2.fillConvexPoly(limb, polygon, COLORS[i])
        canvas = cv2.addWeighted(canvas, 0.4, limb, 0.6, 0)
    return canvas
