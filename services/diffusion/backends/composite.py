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
from services.diffusion.types import TryOnInputs, person_size
from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import ARM_CHAINS, LEG_CHAINS, NUM_KEYPOINTS, Category, Keypoint, Lip

SKIN = (Lip.FACE, Lip.LEFT_ARM, Lip.RIGHT_ARM, Lip.LEFT_LEG, Lip.RIGHT_LEG)
# The garments a category replaces: the body lies under them.
REPLACED = {
    Category.UPPER_BODY: (Lip.UPPER_CLOTHES, Lip.COAT),
    Category.LOWER_BODY: (Lip.PANTS, Lip.SKIRT),
    Category.DRESSES: (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT, Lip.PANTS, Lip.SKIRT, Lip.JUMPSUITS),
}
# What a category never repaints: the head's hair and accessories, gloves, shoes, and the garments not replaced.
_ALWAYS_KEPT = (Lip.HAT, Lip.HAIR, Lip.GLOVE, Lip.SUNGLASSES, Lip.LEFT_SHOE, Lip.RIGHT_SHOE)
KEPT = {
    Category.UPPER_BODY: _ALWAYS_KEPT + (Lip.PANTS, Lip.SKIRT),
    Category.LOWER_BODY: _ALWAYS_KEPT + (Lip.UPPER_CLOTHES, Lip.COAT),
    Category.DRESSES: _ALWAYS_KEPT,
}
ARM_RADIUS = 0.13  # of the shoulder width
LEG_RADIUS = 0.2

# How far (Lab, lightness counted at half) a pixel labelled skin may be from the face's tone and still be skin.
SKIN_TOLERANCE = 22.0
DEFAULT_SKIN_LAB = (np.array([70.0, 12.0, 17.0], np.float32), 4.0)  # used only when no skin is visible at all


def keypoints_from_pose_map(pose_map: np.ndarray | None) -> np.ndarray | None:
    """[18, 3] keypoints (x, y, 1; zeros where a channel is empty) from a pose map's 18 channels: the centre of
    each channel's brightest blob (LaDI-VTON draws a small square per keypoint)."""
    if pose_map is None or pose_map.ndim != 3 or pose_map.shape[0] != NUM_KEYPOINTS:
        return None
    points = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    for i, channel in enumerate(pose_map):
        peak = float(channel.max())
        if peak <= 0:
            continue
        ys, xs = np.nonzero(channel >= 0.5 * peak)
        points[i] = (xs.mean(), ys.mean(), 1.0)
    return points


def _keypoints(inputs: TryOnInputs) -> np.ndarray | None:
    """The person's COCO-18 keypoints: the request's own when it carries them, else read off its pose map."""
    keypoints = getattr(inputs, "keypoints", None)
    if keypoints is not None and np.shape(keypoints) == (NUM_KEYPOINTS, 3):
        return np.asarray(keypoints, np.float32)
    return keypoints_from_pose_map(inputs.pose_map)


def _ipt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _sleeve_half_width(region: np.ndarray, pts: list[np.ndarray], scale: float) -> float:
    """Half the width of the arm inside a sleeve: the sleeve's width across the arm's segments where both its
    edges are in reach (an arm against the torso shows only its outer edge: twice the nearer side then), as a
    share of an arm's (the sleeve hangs a little looser), bounded by what arms measure against the shoulders."""
    h, w = region.shape
    reach = int(0.35 * scale)
    widths = []
    for a, b in zip(pts, pts[1:], strict=False):
        seg = b - a
        length = float(np.linalg.norm(seg))
        if length < 4:
            continue
        normal = np.array([-seg[1], seg[0]]) / length
        for t in (0.3, 0.5, 0.7):
            centre = a + t * seg
            sides = []
            for sign in (-1, 1):
                steps = np.arange(reach)
                xy = np.round(centre[None, :] + sign * steps[:, None] * normal[None, :]).astype(int)
                ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
                hit = np.zeros(reach, bool)
                hit[ok] = region[xy[ok, 1], xy[ok, 0]]
                gaps = np.flatnonzero(~hit)
                sides.append(int(gaps[0]) if len(gaps) else reach)
            if min(sides) == 0:
                continue
            widths.append(sum(sides) if max(sides) < reach else 2 * min(sides))
    if not widths:
        return ARM_RADIUS * scale
    return float(np.clip(0.42 * np.median(widths), 0.07 * scale, 1.1 * ARM_RADIUS * scale))


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
        h, w = person_size(inputs)
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
        base = shading.fill_background(person, ~inside & (labels == Lip.BACKGROUND))
        # Layer 2: skin. Where the person showed bare skin already (a forearm under the mask), it is their own
        # pixels; where the old garment covered the body, their skin tone, sampled from arms, hands and legs
        # outside the mask (the face, with its make-up and shadows, only when no limb shows).
        person_lab = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        reference = shading.skin_tone(person, ~inside & (labels == Lip.FACE))
        reference = (
            reference or shading.skin_tone(person, ~inside & np.isin(labels, SKIN)) or DEFAULT_SKIN_LAB
        )
        # Parsers (and datasets) label a tight sleeve as arm now and then: a pixel counts as skin only when its
        # colour is near the face's.
        skin_like = shading.near_tone(person_lab, reference[0], SKIN_TOLERANCE)
        limbs_outside = (
            ~inside & np.isin(labels, (Lip.LEFT_ARM, Lip.RIGHT_ARM, Lip.LEFT_LEG, Lip.RIGHT_LEG)) & skin_like
        )
        tone = shading.skin_tone(person, limbs_outside) if limbs_outside.sum() >= 400 else None
        tone = tone or reference
        scale = self._body_scale(inputs, inside)
        limb = shading.limb_shading(body, 0.5 * ARM_RADIUS * scale)
        # The person's own light on the body: the folds and falloff the old garment showed, softened (a sleeve's
        # knit is not the arm's), on top of the rounded limb's shading.
        limb *= shading.skin_shading(person, replaced, skin, strength=0.5)
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
        gain = shading.shading_gain(person, replaced, garment)
        shaded = shading.apply_gain(inputs.warped_garment, gain)
        # The garment's edge is soft against skin and background inside the mask, hard against the mask's
        # border (handled below), so it never turns translucent there.
        # Its feather grows with the photo's size, so it reads as a fabric's edge and not a cut-out at any size.
        garment_alpha = shading.soft_mask(garment, max(self.seam_sigma, 0.0015 * h), ~inside)
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
        kp = _keypoints(inputs)
        if kp is not None and kp[Keypoint.R_SHOULDER, 2] > 0 and kp[Keypoint.L_SHOULDER, 2] > 0:
            return float(np.linalg.norm(kp[Keypoint.R_SHOULDER, :2] - kp[Keypoint.L_SHOULDER, :2]))
        xs = np.flatnonzero(inside.any(axis=0))
        return 0.4 * float(xs[-1] - xs[0]) if len(xs) else 0.25 * inside.shape[1]

    def _body_region(self, inputs: TryOnInputs, inside: np.ndarray, replaced: np.ndarray) -> np.ndarray:
        """Where the person's body is inside the mask: bare skin already, the torso the replaced garment covered
        between the shoulders and hips, and the arms inside the old sleeves (an arm as wide as the sleeve it was
        in, a little narrower). The rest of the mask (the dilation around the body, a loose garment's parts
        that hung over background) is background."""
        labels = inputs.labels
        body = np.isin(labels, SKIN)
        kp = _keypoints(inputs)
        scale = self._body_scale(inputs, inside)
        if kp is not None:
            body |= self._arms(labels, kp, replaced, scale)
            if inputs.category != "upper_body":
                body |= _limb_capsules(labels.shape, kp, LEG_CHAINS, LEG_RADIUS * scale) & replaced
        body |= replaced & self._torso(kp, labels.shape, scale)
        return body & inside

    @staticmethod
    def _arms(labels: np.ndarray, kp: np.ndarray, replaced: np.ndarray, scale: float) -> np.ndarray:
        """The arms under the old sleeves: capsules along shoulder-elbow-wrist whose width is the sleeve's own
        (measured across the arm where the sleeve stands free), cut to the old sleeve and the arm labels."""
        arm_like = replaced | np.isin(labels, (Lip.LEFT_ARM, Lip.RIGHT_ARM))
        out = np.zeros(labels.shape, bool)
        for limb in ARM_CHAINS:
            pts = []
            for i in limb:
                if kp[i, 2] <= 0:
                    break
                pts.append(kp[i, :2].astype(np.float64))
            if len(pts) < 2:
                continue
            half = _sleeve_half_width(arm_like, pts, scale)
            capsule = np.zeros(labels.shape, np.uint8)
            for a, b in zip(pts, pts[1:], strict=False):
                cv2.line(capsule, _ipt(a), _ipt(b), 1, max(1, int(round(2 * half))))
            for p in pts:
                cv2.circle(capsule, _ipt(p), int(round(half)), 1, -1)
            out |= (capsule > 0) & arm_like
        # The shoulder's cap above the shoulder line is the new garment's or the background's, never an arm's.
        rs, ls = (
            kp[Keypoint.R_SHOULDER, :2].astype(np.float64),
            kp[Keypoint.L_SHOULDER, :2].astype(np.float64),
        )
        if kp[Keypoint.R_SHOULDER, 2] > 0 and kp[Keypoint.L_SHOULDER, 2] > 0 and abs(ls[0] - rs[0]) > 1:
            ys, xs = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]]
            line_y = rs[1] + (xs - rs[0]) * (ls[1] - rs[1]) / (ls[0] - rs[0])
            out &= ys > line_y - 0.05 * scale
        return out

    @staticmethod
    def _torso(kp: np.ndarray | None, shape: tuple[int, int], scale: float) -> np.ndarray:
        """The torso's polygon: from the shoulders' tops down the body's sides (the shoulder joints sit over
        them) to a little beyond the hips. Empty without both shoulders."""
        out = np.zeros(shape, np.uint8)
        if kp is None or not (kp[Keypoint.R_SHOULDER, 2] > 0 and kp[Keypoint.L_SHOULDER, 2] > 0):
            return out > 0
        rs, ls = (
            kp[Keypoint.R_SHOULDER, :2].astype(np.float64),
            kp[Keypoint.L_SHOULDER, :2].astype(np.float64),
        )
        up = np.array([0.0, -0.1 * scale])
        if kp[Keypoint.R_HIP, 2] > 0 and kp[Keypoint.L_HIP, 2] > 0:
            rh, lh = kp[Keypoint.R_HIP, :2].astype(np.float64), kp[Keypoint.L_HIP, :2].astype(np.float64)
            spread = lh - rh
            rh, lh = rh - 0.25 * spread, lh + 0.25 * spread
            rh[1], lh[1] = rh[1] + 0.1 * scale, lh[1] + 0.1 * scale
        else:
            rh, lh = rs + np.array([0.0, 1.5 * scale]), ls + np.array([0.0, 1.5 * scale])
        polygon = np.array([rs + up, ls + up, ls, lh, rh, rs])
        cv2.fillPoly(out, [np.round(polygon).astype(np.int32)], 1)
        return out > 0
