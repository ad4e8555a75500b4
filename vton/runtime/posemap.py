"""LaDI-VTON's pose map: one Gaussian heatmap per COCO-18 keypoint, the `pose_map` its networks take.

The pose stage sends it (as uint8, `pose_map`), the warp and diffusion stages draw it from keypoints when a
request carries none (`pose_heatmaps`, float); both go through `pose_heatmaps`, so the rule is written once.

What the release does (src/dataset/vitonhd.py and dresscode.py, `kpoint_to_heatmap(point, (H, W), 9)` of
src/utils/posemap.py): for each keypoint with a coordinate above 0, exp(-d² / sigma²) over the map, divided by its
maximum (plus float32's eps); a zero map otherwise. Its sigma is 9 pixels of the map whatever the map's size, and
the released checkpoints were all trained on 512x384 maps (the dataset classes' default size, which train_vto.py
and train_tps.py pass). So what the released weights saw is sigma = 9 px on a 512-row map: 9/512 of the height.
Here sigma is that fraction of the height of the map being drawn. On a 512x384 map this is the release's 9 px
exactly; a map drawn at the photo's size and resized to 512x384 by a stage ends with the same 9 px; at 1024x768,
which the released weights never saw, the map keeps the proportion they learnt (the release's code would draw
9 px there, half the width it trained on).

Each Gaussian is evaluated within 4 sigma of its peak only: beyond, the release's values are below exp(-16) = 1.1e-7
of the peak (0 once quantised to uint8), and a large photo's map costs milliseconds instead of a second.
"""

from __future__ import annotations

import math

import numpy as np

from vton.runtime.vocab import NUM_KEYPOINTS

POSE_SIGMA_PX = 9.0  # kpoint_to_heatmap(..., sigma=9) of LaDI-VTON's dataset code
TRAINED_MAP_HEIGHT = 512  # the height of every map the released checkpoints were trained on
WINDOW_SIGMAS = 4


def pose_sigma(height: int) -> float:
    """The Gaussian's sigma, in pixels, on a map `height` rows high."""
    return POSE_SIGMA_PX * height / TRAINED_MAP_HEIGHT


def present(keypoints: np.ndarray) -> np.ndarray:
    """[18] bool: the keypoints a map is drawn for: found (confidence > 0, OpenPose writes a missing joint as
    0, 0, 0) and with a coordinate above 0 (the release's own test, `np.any(kpoint > 0)`)."""
    return (keypoints[:, 2] > 0) & ((keypoints[:, 0] > 0) | (keypoints[:, 1] > 0))


def pose_heatmaps(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 [18, height, width] in [0, 1], peak 1 per present keypoint; `keypoints` [18, 3] (x, y, confidence)
    in pixels of this map."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(
            f"keypoints must be [{NUM_KEYPOINTS}, 3] (x, y, confidence), not {list(keypoints.shape)}"
        )
    sigma = pose_sigma(height)
    reach = int(math.ceil(WINDOW_SIGMAS * sigma))
    out = np.zeros((NUM_KEYPOINTS, height, width), dtype=np.float32)
    for i in np.nonzero(present(keypoints))[0]:
        x, y = keypoints[i, :2]
        # around the map's pixel nearest the keypoint, where the map peaks (the keypoint may lie outside)
        cx, cy = min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)
        x0, x1 = max(0, cx - reach), min(width, cx + reach + 1)
        y0, y1 = max(0, cy - reach), min(height, cy + reach + 1)
        gx = np.exp(-((np.arange(x0, x1, dtype=np.float32) - x) ** 2) / sigma**2)
        gy = np.exp(-((np.arange(y0, y1, dtype=np.float32) - y) ** 2) / sigma**2)
        channel = np.outer(gy, gx)
        peak = channel.max()
        if peak > 0:
            out[i, y0:y1, x0:x1] = channel / (peak + np.finfo(np.float32).eps)
    return out


def pose_map(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [18, height, width]: `pose_heatmaps` at peak 255, as the pose stage sends it (receivers divide by 255)."""
    return np.round(pose_heatmaps(keypoints, width, height) * 255).astype(np.uint8)
