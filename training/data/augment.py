"""Training augmentations of a RawSample: the ones StableVITON trains its try-on network with on VITON-HD and
Dress Code (LaDI-VTON, Dress Code and CP-VTON train without any):

- a horizontal flip (p 0.5) of the person, its annotations and the garment together;
- a random scale (+-20 %, p 0.5) and then shift (+-20 % of each side, p 0.5) of the person with its
  annotations, and independently of the garment with its mask;
- a colour change (p 0.5 each) of the person and the garment with the same parameters: hue, saturation and
  value shifts of up to 5 (OpenCV's 8-bit HSV units), and a contrast factor within 1 +- 0.3.

Annotations follow the pixels: a flip swaps left and right in the keypoints, the LIP labels and the DensePose
parts; a shift moves the keypoints and drops the ones it pushes out of the frame. Areas uncovered by a shift
take the mean colour of the photo's border (the background), background labels and an empty mask.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from training.data.raw import RawSample
from vton.runtime.vocab import Keypoint, Lip

_KEYPOINT_MIRROR = np.arange(18)
for _a, _b in (
    (Keypoint.R_SHOULDER, Keypoint.L_SHOULDER),
    (Keypoint.R_ELBOW, Keypoint.L_ELBOW),
    (Keypoint.R_WRIST, Keypoint.L_WRIST),
    (Keypoint.R_HIP, Keypoint.L_HIP),
    (Keypoint.R_KNEE, Keypoint.L_KNEE),
    (Keypoint.R_ANKLE, Keypoint.L_ANKLE),
    (Keypoint.R_EYE, Keypoint.L_EYE),
    (Keypoint.R_EAR, Keypoint.L_EAR),
):
    _KEYPOINT_MIRROR[_a], _KEYPOINT_MIRROR[_b] = _b, _a

_LIP_MIRROR = np.arange(256, dtype=np.uint8)
for _a, _b in (
    (Lip.LEFT_ARM, Lip.RIGHT_ARM),
    (Lip.LEFT_LEG, Lip.RIGHT_LEG),
    (Lip.LEFT_SHOE, Lip.RIGHT_SHOE),
):
    _LIP_MIRROR[_a], _LIP_MIRROR[_b] = _b, _a

# DensePose's 24 parts come in right/left pairs (hands, feet, and the front and back of each limb segment),
# with the head's right and left halves last.
_PART_MIRROR = np.arange(256, dtype=np.uint8)
for _a in range(3, 25, 2):
    _PART_MIRROR[_a], _PART_MIRROR[_a + 1] = _a + 1, _a


@dataclass(frozen=True)
class Augmentation:
    flip: float = 0.5  # probability of a horizontal flip
    geometry: float = 0.5  # probability of each of the scale and the shift
    scale: float = 0.2  # largest relative change of size
    shift: float = 0.2  # largest shift, as a share of the width and of the height
    colour: float = 0.5  # probability of each of the HSV shift and the contrast change
    hsv: tuple[float, float, float] = (5.0, 5.0, 5.0)  # largest hue, saturation, value shifts
    contrast: float = 0.3  # largest relative change of contrast


def augment(raw: RawSample, rng: np.random.Generator, config: Augmentation = Augmentation()) -> RawSample:
    """A new RawSample with the augmentations drawn from `rng` applied (the input is not changed)."""
    out = replace(raw)
    if rng.random() < config.flip:
        out = _flip(out)
    person_matrix = _random_affine(rng, config, out.size)
    if person_matrix is not None:
        out = _move_person(out, person_matrix)
    garment_matrix = _random_affine(rng, config, out.garment.shape[:2])
    if garment_matrix is not None:
        out.garment = _warp(out.garment, garment_matrix)
        out.garment_mask = _warp(out.garment_mask.astype(np.uint8), garment_matrix, values=True) > 0
    hsv_shift = rng.uniform(-1, 1, 3) * np.array(config.hsv) if rng.random() < config.colour else None
    contrast = 1 + rng.uniform(-config.contrast, config.contrast) if rng.random() < config.colour else None
    if hsv_shift is not None or contrast is not None:
        out.person = _recolour(out.person, hsv_shift, contrast)
        out.garment = _recolour(out.garment, hsv_shift, contrast)
    return out


def _flip(raw: RawSample) -> RawSample:
    width = raw.size[1]
    keypoints = raw.keypoints[_KEYPOINT_MIRROR].copy()
    found = keypoints[:, 2] > 0
    keypoints[found, 0] = width - 1 - keypoints[found, 0]
    densepose = None
    if raw.densepose is not None:
        densepose = raw.densepose[:, :, ::-1].copy()
        densepose[0] = _PART_MIRROR[densepose[0]]
    return replace(
        raw,
        person=raw.person[:, ::-1].copy(),
        garment=raw.garment[:, ::-1].copy(),
        garment_mask=raw.garment_mask[:, ::-1].copy(),
        parse=_LIP_MIRROR[raw.parse[:, ::-1]],
        keypoints=keypoints,
        densepose=densepose,
    )


def _random_affine(
    rng: np.random.Generator, config: Augmentation, size: tuple[int, int]
) -> np.ndarray | None:
    """A 2x3 matrix: a scale about the centre, then a shift; None when neither was drawn."""
    height, width = size
    scale, dx, dy = 1.0, 0.0, 0.0
    if rng.random() < config.geometry:
        scale = 1 + rng.uniform(-config.scale, config.scale)
    if rng.random() < config.geometry:
        dx, dy = rng.uniform(-config.shift, config.shift, 2) * (width, height)
    if scale == 1.0 and dx == 0.0 and dy == 0.0:
        return None
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([[scale, 0, cx - scale * cx + dx], [0, scale, cy - scale * cy + dy]], np.float64)


def _border_colour(image: np.ndarray) -> tuple[float, ...]:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(float(c) for c in border.mean(0))


def _warp(array: np.ndarray, matrix: np.ndarray, values: bool = False) -> np.ndarray:
    """A photo is resampled linearly and filled with its border's colour; a map of values (labels, a mask)
    is resampled to the nearest pixel, so no value is blended into one that does not exist, and filled with 0."""
    height, width = array.shape[:2]
    return cv2.warpAffine(
        array,
        matrix,
        (width, height),
        flags=cv2.INTER_NEAREST if values else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0 if values else _border_colour(array),
    )


def _move_person(raw: RawSample, matrix: np.ndarray) -> RawSample:
    height, width = raw.size
    keypoints = raw.keypoints.copy()
    found = keypoints[:, 2] > 0
    keypoints[found, :2] = keypoints[found, :2] @ matrix[:, :2].T + matrix[:, 2]
    inside = (
        (keypoints[:, 0] >= 0)
        & (keypoints[:, 0] <= width - 1)
        & (keypoints[:, 1] >= 0)
        & (keypoints[:, 1] <= height - 1)
    )
    keypoints[~(found & inside)] = 0
    densepose = None
    if raw.densepose is not None:
        densepose = np.stack([_warp(channel, matrix, values=True) for channel in raw.densepose])
    return replace(
        raw,
        person=_warp(raw.person, matrix),
        parse=_warp(raw.parse, matrix, values=True),
        keypoints=keypoints,
        densepose=densepose,
    )


def _recolour(image: np.ndarray, hsv_shift: np.ndarray | None, contrast: float | None) -> np.ndarray:
    out = image
    if hsv_shift is not None:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + hsv_shift[0], 180)  # OpenCV's 8-bit hue runs 0..179
        hsv[..., 1:] = np.clip(hsv[..., 1:] + hsv_shift[1:], 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if contrast is not None:
        mean = out.reshape(-1, 3).mean(0)
        out = np.clip((out.astype(np.float32) - mean) * contrast + mean, 0, 255).round().astype(np.uint8)
    return out
