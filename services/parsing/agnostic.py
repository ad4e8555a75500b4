"""The cloth-agnostic (inpainting) mask and the masked person, built the way LaDI-VTON's datasets build them.

LaDI-VTON (VITON-HD and Dress Code loaders) splits the person into three sets from the parse map:
- the region to change: the garment being replaced, plus (upper body and dresses) a thick polyline over the
  arm bones of the pose and the neck (head pixels below the shoulder line); for lower body and dresses also
  the legs. This region is then dilated so the new garment may be larger than the old one.
- the fixed region: hair, hat, sunglasses, scarf, shoes, the garments that are not replaced, the hands (arm
  pixels outside the arm polyline) and the head above the shoulder line. Fixed pixels are never repainted,
  even where the dilation reaches them.
- everything else (background, skin) is changeable: repainted only where the dilated region covers it.
The inpainting mask is dilated-region AND NOT fixed. The masked person keeps the image outside the mask and
is mid grey inside it: LaDI-VTON multiplies the [-1, 1] image by the keep mask, so masked pixels are 0 there,
which is grey 128 in uint8.

Labels are LIP (services.parsing.labels). LIP labels the neck as face, so the neck is found the Dress Code
way, by the shoulder line, rather than by VITON-HD's extra neck label.
"""

from __future__ import annotations

import cv2
import numpy as np

from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import CATEGORIES, NUM_KEYPOINTS, Category, Keypoint, Lip

MASK_GREY = 128

# Sizes are LaDI-VTON's at a 512-pixel-high image and scale with the height. The arm polyline is VITON-HD's
# width (90 px at 512 high; Dress Code's loader draws 45). The dilation is a 5x5 square applied 5 times (a
# 10 px reach at 512 high); the neck starts 20 px above the shoulder line. Those pixel sizes assume the
# datasets' framing (a person filling the frame, shoulders about 0.3 of the width apart); a person smaller in
# the frame would lose the chin to the neck cut and half the body to the arm line, so each size is also
# capped by a share of the shoulder width; the caps bind only for shoulders narrower than 0.2 of the height
# (VITON-HD's persons have 0.22-0.33).
ARM_WIDTH_AT_512 = 90
DILATION_AT_512 = 10
NECK_MARGIN_AT_512 = 20
ARM_WIDTH_PER_SHOULDER = 0.9
DILATION_PER_SHOULDER = 0.1
NECK_MARGIN_PER_SHOULDER = 0.2

_HEAD = (Lip.HAT, Lip.HAIR, Lip.SUNGLASSES, Lip.FACE)
_ALWAYS_FIXED = (Lip.HAT, Lip.HAIR, Lip.SUNGLASSES, Lip.SCARF, Lip.GLOVE, Lip.LEFT_SHOE, Lip.RIGHT_SHOE)
_ARMS = (Lip.LEFT_ARM, Lip.RIGHT_ARM)
_LEGS = (Lip.LEFT_LEG, Lip.RIGHT_LEG)
_UPPER_GARMENTS = (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT)
_LOWER_GARMENTS = (Lip.PANTS, Lip.SKIRT)

# Per category: labels to replace, labels kept untouched, whether the arms and neck join the region.
_RULES = {
    Category.UPPER_BODY: dict(change=_UPPER_GARMENTS, keep=_LOWER_GARMENTS, arms=True, legs=False),
    Category.LOWER_BODY: dict(
        change=_LOWER_GARMENTS + _LEGS, keep=(Lip.UPPER_CLOTHES, Lip.COAT) + _ARMS, arms=False, legs=True
    ),
    Category.DRESSES: dict(
        change=_UPPER_GARMENTS + _LOWER_GARMENTS + (Lip.JUMPSUITS,) + _LEGS, keep=(), arms=True, legs=True
    ),
}


def check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")


def _check_inputs(labels: np.ndarray, keypoints: np.ndarray) -> None:
    if labels.ndim != 2 or labels.size == 0:
        raise InvalidInput(f"the label map must be a 2-D array [H, W], got shape {labels.shape}")
    if keypoints.shape != (NUM_KEYPOINTS, 3):
        raise InvalidInput(
            f"keypoints must be [18, 3] (OpenPose COCO-18 x, y, confidence), got {keypoints.shape}"
        )


def _present(point: np.ndarray) -> bool:
    """LaDI-VTON counts a keypoint at (<=1, <=1) as missing; a zero confidence means the same here."""
    return bool(point[2] > 0 and not (point[0] <= 1 and point[1] <= 1))


def _arm_chains(keypoints: np.ndarray) -> list[list[np.ndarray]]:
    """The arm polyline wrist-elbow-shoulder-shoulder-elbow-wrist, cut where a joint is missing.

    A wrist without its elbow is left out (it would draw a line straight across the body), as LaDI-VTON does.
    """
    right = [keypoints[i] for i in (Keypoint.R_SHOULDER, Keypoint.R_ELBOW, Keypoint.R_WRIST)]
    left = [keypoints[i] for i in (Keypoint.L_SHOULDER, Keypoint.L_ELBOW, Keypoint.L_WRIST)]

    def reach(arm: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for joint in arm:
            if not _present(joint):
                break
            out.append(joint[:2])
        return out

    right_arm, left_arm = reach(right), reach(left)
    if right_arm and left_arm:
        return [right_arm[::-1] + left_arm]
    return [arm[::-1] for arm in (right_arm, left_arm) if arm]


def _size(height: int, keypoints: np.ndarray, at_512: float, per_shoulder: float) -> float:
    """LaDI-VTON's size for this height, capped by the share of the shoulder width (when both are known)."""
    size = at_512 * height / 512
    right, left = keypoints[Keypoint.R_SHOULDER], keypoints[Keypoint.L_SHOULDER]
    if _present(right) and _present(left):
        size = min(size, per_shoulder * float(np.linalg.norm(left[:2] - right[:2])))
    return size


def arm_region(shape: tuple[int, int], keypoints: np.ndarray, width: float | None = None) -> np.ndarray:
    """bool [H, W]: the thick polyline over the arm bones and across the shoulders."""
    if width is None:
        width = _size(shape[0], keypoints, ARM_WIDTH_AT_512, ARM_WIDTH_PER_SHOULDER)
    thickness = max(1, round(width))
    canvas = np.zeros(shape, np.uint8)
    for chain in _arm_chains(keypoints):
        points = np.round(np.array(chain)).astype(np.int32)
        if len(points) == 1:
            cv2.circle(canvas, tuple(int(v) for v in points[0]), thickness // 2, 255, -1)
        else:
            # Round joints and caps, like PIL's line(joint="curve") that LaDI-VTON uses.
            cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, 255, thickness, cv2.LINE_8)
            for x, y in points:
                cv2.circle(canvas, (int(x), int(y)), thickness // 2, 255, -1)
    return canvas > 0


def below_shoulder_line(
    shape: tuple[int, int], keypoints: np.ndarray, margin: float | None = None
) -> np.ndarray:
    """bool [H, W]: pixels below the line through both shoulders raised by `margin` (the neck and down).

    Without both shoulders there is no line: nothing counts as below it.
    """
    height, width = shape
    if margin is None:
        margin = _size(height, keypoints, NECK_MARGIN_AT_512, NECK_MARGIN_PER_SHOULDER)
    right, left = keypoints[Keypoint.R_SHOULDER], keypoints[Keypoint.L_SHOULDER]
    if not (_present(right) and _present(left)) or abs(left[0] - right[0]) < 1:
        return np.zeros(shape, bool)
    slope = (left[1] - right[1]) / (left[0] - right[0])
    line_y = right[1] + slope * (np.arange(width, dtype=np.float32) - right[0]) - margin
    return np.arange(height, dtype=np.float32)[:, None] >= np.floor(line_y)[None, :]


def between_the_legs(region: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """bool [H, W]: every row of `region` below the hips filled from its leftmost to its rightmost pixel.

    A dress or a skirt hangs across the gap between the legs, and wide trousers fill part of it: the region
    the new garment may take below the hips is the legs' and what lies between them, not the old trousers'
    outline alone. Without both hips nothing is added.
    """
    right, left = keypoints[Keypoint.R_HIP], keypoints[Keypoint.L_HIP]
    out = np.zeros(region.shape, bool)
    if not (_present(right) and _present(left)) or not region.any():
        return out
    hip_row = int(max(0, min(right[1], left[1])))
    rows = region[hip_row:]
    filled = rows.any(axis=1)
    first = np.argmax(rows, axis=1)
    last = rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)
    columns = np.arange(rows.shape[1])[None, :]
    out[hip_row:] = filled[:, None] & (columns >= first[:, None]) & (columns <= last[:, None])
    return out


def _isin(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    return np.isin(labels, np.array(classes, dtype=labels.dtype)) if classes else np.zeros(labels.shape, bool)


def agnostic_mask(
    labels: np.ndarray,
    keypoints: np.ndarray,
    category: str,
    arm_width: float | None = None,
) -> np.ndarray:
    """The inpainting mask: uint8 [H, W], 255 where the try-on repaints the person, 0 where it keeps them.

    `labels` is a LIP label map, `keypoints` OpenPose COCO-18 [18, 3] in the label map's pixels. `arm_width`
    overrides the arm polyline's thickness in pixels (default: VITON-HD's, 90 px at 512 high, capped for a
    person small in the frame).
    """
    check_category(category)
    labels = np.asarray(labels)
    keypoints = np.asarray(keypoints, np.float32)
    _check_inputs(labels, keypoints)
    rule = _RULES[category]
    shape = labels.shape

    change = _isin(labels, rule["change"])
    fixed = _isin(labels, _ALWAYS_FIXED + rule["keep"])
    head = _isin(labels, _HEAD)
    if rule["arms"]:
        arms_line = arm_region(shape, keypoints, arm_width)
        change |= arms_line
        # Hands: arm pixels the polyline does not reach stay as they are.
        fixed |= _isin(labels, _ARMS) & ~arms_line
        neck = head & below_shoulder_line(shape, keypoints)
        change |= neck
        fixed |= head & ~neck
    else:
        fixed |= head
    if rule["legs"]:
        change |= between_the_legs(change, keypoints)

    reach = max(1, round(_size(shape[0], keypoints, DILATION_AT_512, DILATION_PER_SHOULDER)))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1, 2 * reach + 1))
    grown = cv2.dilate(change.astype(np.uint8), kernel) > 0
    return np.where(grown & ~fixed, 255, 0).astype(np.uint8)


def masked_person(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The person with the mask's region painted mid grey (128), as LaDI-VTON feeds its UNet and EMASC."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(f"the person image must be RGB [H, W, 3], got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise InvalidInput(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
        )
    out = image.astype(np.uint8, copy=True)
    out[mask > 0] = MASK_GREY
    return out


def cloth_agnostic(
    image: np.ndarray, labels: np.ndarray, keypoints: np.ndarray, category: str
) -> tuple[np.ndarray, np.ndarray]:
    """(inpainting mask, masked person) for a person photo, its LIP label map and its pose."""
    check_category(category)
    image, labels = np.asarray(image), np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise InvalidInput(
            f"the label map is {labels.shape[1] if labels.ndim > 1 else '?'}x{labels.shape[0]} "
            f"but the image is {image.shape[1]}x{image.shape[0]}: they must be the same size"
        )
    mask = agnostic_mask(labels, keypoints, category)
    return mask, masked_person(image, mask)
