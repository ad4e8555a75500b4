"""The embedded try-on backend `composite`: the warped garment put into the masked person, with their shading.

No network. Inside the inpainting mask the picture is rebuilt from layers; outside it the person's pixels are
returned untouched (bit for bit):
1. background: what the old garment covered beyond the body, filled from the person's own background around
   it (cv2.inpaint);
2. skin: the body the new garment leaves bare (a short sleeve where a long one was, a lower neckline, a crop
   top's midriff), in the person's own skin tone sampled from their face, arms and legs outside the mask,
   shaded like a rounded limb with a faint texture;
3. the warped garment, its luminance multiplied by the person's shading: the folds and the light's falloff
   read off the old garment (services.diffusion.shading.shading_gain), so the new one sits in the same light.
Seams between the layers are feathered inside the mask, and a narrow band along the mask's border blends into
the pixels just outside it.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.diffusion import shading
from services.diffusion.types import TryOnInputs
from vton.runtime.errors import InvalidInput

# LIP labels (written out: a stage never imports another stage's code).
BACKGROUND, UPPER_CLOTHES, DRESS, COAT, PANTS, JUMPSUITS, SKIRT = 0, 5, 6, 7, 9, 10, 12
FACE, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG = 13, 14, 15, 16, 17
SKIN = (FACE, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG)
# The garments a category replaces: the body lies under them.
REPLACED = {
    "upper_body": (UPPER_CLOTHES, COAT),
    "lower_body": (PANTS, SKIRT),
    "dresses": (UPPER_CLOTHES, DRESS, COAT, PANTS, SKIRT, JUMPSUITS),
}
# What a category never repaints: the head's hair and accessories, gloves, shoes, and the garments not replaced.
_ALWAYS_KEPT = (1, 2, 3, 4, 18, 19)  # hat, hair, glove, sunglasses, shoes
KEPT = {
    "upper_body": _ALWAYS_KEPT + (PANTS, SKIRT),
    "lower_body": _ALWAYS_KEPT + (UPPER_CLOTHES, COAT),
    "dresses": _ALWAYS_KEPT,
}
# OpenPose COCO-18 limbs whose capsules mark where arms (and, for lower body, legs) are.
ARM_LIMBS = ((2, 3, 4), (5, 6, 7))
LEG_LIMBS = ((8, 9, 10), (11, 12, 13))
ARM_RADIUS = 0.13  # of the shoulder width
LEG_RADIUS = 0.2

# How far (Lab, lightness counted at half) a pixel labelled skin may be from the face's tone and still be skin.
SKIN_TOLERANCE = 22.0
DEFAULT_SKIN_LAB = (np.array([70.0, 12.0, 17.0], np.float32), 4.0)  # used only when no skin is visible at all


def keypoints_from_pose_map(pose_map: np.ndarray | None) -> np.ndarray | None:
    """[18, 3] keypoints (x, y, 1; zeros where a channel is empty) from a pose map's 18 channels: the centre of
    each channel's brightest blob (LaDI-VTON draws a small square per keypoint)."""
    if pose_map is None or pose_map.ndim != 3 or pose_map.shape[0] != 18:
        return None
    points = np.zeros((18, 3), np.float32)
    for i, channel in enumerate(pose_map):
        peak = float(channel.max())
        if peak <= 0:
            continue
        ys, xs = np.nonzero(channel >= 0.5 * peak)
        points[i] = (xs.mean(), ys.mean(), 1.0)
    return points


def _limb_capsules(shape: tuple[int, int], keypoints: np.ndarray, limbs, radius: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for limb in limbs:
        pts = [keypoints[i, :2] for i in limb if keypoints[i, 2] > 0]
        if len(pts) != len(limb):
            pts = pts[:2] if len(pts) >= 2 else []
        for a, b in zip(pts, pts[1:], strict=False):
            cv2.line(mask, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, max(1, int(2 * radius)))
    return mask > 0


class CompositeBackend:
    """Shading-preserving compositing of the warped garment; deterministic (the seed sets the skin texture)."""

    def __init__(self, seam_sigma: float = 1.2, border_band: int = 3):
        self.seam_sigma = seam_sigma
        self.border_band = border_band

    def try_on(self, inputs: TryOnInputs) -> np.ndarray:
        person = inputs.person
        if person.ndim != 3 or person.shape[2] != 3 or person.dtype != np.uint8:
            raise InvalidInput("the person must be a uint8 RGB image [H, W, 3]")
        h, w = person.shape[:2]
        for name in ("agnostic_mask", "warped_garment", "warped_mask", "labels"):
            arr = getattr(inputs, name)
            if arr.shape[:2] != (h, w):
                raise InvalidInput(f"{name} is {arr.shape[1]}x{arr.shape[0]} but the person is {w}x{h}")
        if inputs.category not in REPLACED:
            raise InvalidInput(f"unknown category {inputs.category!r}; expected one of {', '.join(REPLACED)}")

        inside = inputs.agnostic_mask > 127
        if not inside.any():
            return person.copy()
        labels = inputs.labels
        garment = (inputs.warped_mask > 127) & inside
        replaced = np.isin(labels, REPLACED[inputs.category]) & inside
        body = self._body_region(inputs, inside, replaced)
        skin = body & ~garment

        # Layer 1: background, from the person's background pixels around the mask.
        base = shading.fill_background(person, ~inside & (labels == BACKGROUND))
        # Layer 2: skin. Where the person showed bare skin already (a forearm under the mask), it is their own
        # pixels; where the old garment covered the body, their skin tone, sampled from arms, hands and legs
        # outside the mask (the face, with its make-up and shadows, only when no limb shows).
        person_lab = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        reference = shading.skin_tone(person, ~inside & (labels == FACE))
        reference = (
            reference or shading.skin_tone(person, ~inside & np.isin(labels, SKIN)) or DEFAULT_SKIN_LAB
        )
        # Parsers (and datasets) label a tight sleeve as arm now and then: a pixel counts as skin only when its
        # colour is near the face's.
        skin_like = shading.near_tone(person_lab, reference[0], SKIN_TOLERANCE)
        limbs_outside = ~inside & np.isin(labels, (LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG)) & skin_like
        tone = shading.skin_tone(person, limbs_outside) if limbs_outside.sum() >= 400 else None
        tone = tone or reference
        scale = self._body_scale(inputs, inside)
        limb = shading.limb_shading(body, 0.5 * ARM_RADIUS * scale)
        samples = np.isin(labels, SKIN) & skin_like & (~inside | skin)
        tone_map = shading.skin_tone_map(person, samples, tone, 0.06 * h)
        skin_rgb = shading.fill_skin(skin, tone_map, tone[1], limb, seed=inputs.seed)
        was_skin = np.isin(labels, SKIN) & skin & skin_like
        skin_rgb[was_skin] = person[was_skin]
        skin_alpha = shading.soft_mask(skin, self.seam_sigma, ~inside)
        result = base * (1 - skin_alpha[..., None]) + skin_rgb * skin_alpha[..., None]
        # What stays the person's own even inside the mask (hair over the shoulders, the trousers under a top):
        # drawn as it is, under the new garment.
        kept = np.isin(labels, KEPT[inputs.category]) & inside
        result[kept] = person[kept]
        # Layer 3: the garment, in the person's light.
        gain = shading.shading_gain(person, replaced, garment, large_sigma=max(8.0, 0.04 * h))
        shaded = shading.apply_gain(inputs.warped_garment, gain)
        # The garment's edge is soft against skin and background inside the mask, hard against the mask's
        # border (handled below), so it never turns translucent there.
        garment_alpha = shading.soft_mask(garment, self.seam_sigma, ~inside)
        result = result * (1 - garment_alpha[..., None]) + shaded * garment_alpha[..., None]

        # A narrow band along the mask's border fades into the pixels just outside it.
        if self.border_band > 0:
            dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
            band = inside & (dist <= self.border_band)
            outside_colour = shading.masked_blur(person.astype(np.float32), ~inside, 1.5)
            t = np.clip((dist - 0.5) / self.border_band, 0.0, 1.0)[..., None]
            blended = t * result + (1 - t) * (0.5 * result + 0.5 * outside_colour)
            result[band] = blended[band]

        out = person.copy()
        out[inside] = np.clip(result[inside] + 0.5, 0, 255).astype(np.uint8)
        return out

    @staticmethod
    def _body_scale(inputs: TryOnInputs, inside: np.ndarray) -> float:
        """The shoulder width in pixels from the pose map, else a fifth of the mask's width."""
        kp = keypoints_from_pose_map(inputs.pose_map)
        if kp is not None and kp[2, 2] > 0 and kp[5, 2] > 0:
            return float(np.linalg.norm(kp[2, :2] - kp[5, :2]))
        xs = np.flatnonzero(inside.any(axis=0))
        return 0.4 * float(xs[-1] - xs[0]) if len(xs) else 0.25 * inside.shape[1]

    def _body_region(self, inputs: TryOnInputs, inside: np.ndarray, replaced: np.ndarray) -> np.ndarray:
        """Where the person's body is inside the mask: bare skin already, whatever the replaced garment covered
        between the shoulders and hips (the torso), and the limbs' capsules from the pose under it (the arm
        inside a long sleeve). A loose old garment's parts beyond the body hung over background."""
        labels = inputs.labels
        body = np.isin(labels, SKIN)
        kp = keypoints_from_pose_map(inputs.pose_map)
        scale = self._body_scale(inputs, inside)
        if kp is not None:
            limbs = _limb_capsules(labels.shape, kp, ARM_LIMBS, ARM_RADIUS * scale)
            if inputs.category != "upper_body":
                limbs |= _limb_capsules(labels.shape, kp, LEG_LIMBS, LEG_RADIUS * scale)
            body |= limbs & replaced
        body |= replaced & ~self._beside_torso(kp, labels.shape, scale)
        return body & inside

    @staticmethod
    def _beside_torso(kp: np.ndarray | None, shape: tuple[int, int], scale: float) -> np.ndarray:
        """Pixels further out than the shoulders and hips (plus a margin): not torso, whatever the parse says."""
        out = np.zeros(shape, bool)
        if kp is None or not (kp[2, 2] > 0 and kp[5, 2] > 0):
            return out
        xs = [kp[i, 0] for i in (2, 5, 8, 11) if kp[i, 2] > 0]
        lo, hi = min(xs) - 0.1 * scale, max(xs) + 0.1 * scale
        out[:, : max(0, int(lo))] = True
        out[:, min(shape[1], int(hi)) :] = True
        return out
