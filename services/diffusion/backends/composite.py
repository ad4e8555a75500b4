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

from dataclasses import dataclass

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
# An arm tapers from the shoulder to the wrist; without a visible wrist to measure, the wrist's half width is this
# share of the upper arm's, the elbow's halfway. The wrist is measured on the skin this far along the forearm.
WRIST_SHARE = 0.65
WRIST_SPAN = (0.85, 1.15)
# The arm goes on past the wrist keypoint by this share of the forearm (under the hand's own pixels).
PAST_WRIST = 0.3
# A leg's half width at the hip, knee and ankle, of the shoulder width.
LEG_HALVES = (0.3, 0.17, 0.12)
# Skin filled on a limb is lit like a cylinder seen from the front: CYLINDER_EDGE of the light at its outline,
# the mean over its width 1.
CYLINDER_EDGE = 0.78
# An arm's tone is its hand's when at least this many of its pixels show.
MIN_HAND = 150
# The trousers under a longer top go on up to this many shoulder widths above where they show in a column,
# their pixels mirrored from below the shadow band (this share of the shoulder width) the top's hem casts.
LOWER_REACH = 0.6
HEM_SHADOW = 0.08
# How far (pixels at 512 high: the embedded parse's working size) the parse's outlines may be off.
SEAM_PIXELS = 2

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


def _tapered(
    shape: tuple[int, int], pts: list[np.ndarray], halves: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """A limb along the polyline `pts`, its half width going from one value per point to the next: (across,
    along) maps [H, W] float32. `across` is 0 on the bone and 1 at the limb's outline (inf far away), `along` the
    distance down the polyline (pixels) of the nearest point of the bone."""
    h, w = shape
    across = np.full(shape, np.inf, np.float32)
    along = np.zeros(shape, np.float32)
    start = 0.0
    for a, b, ra, rb in zip(pts, pts[1:], halves, halves[1:], strict=False):
        reach = max(ra, rb) + 2
        x0, x1 = int(max(0, min(a[0], b[0]) - reach)), int(min(w, max(a[0], b[0]) + reach + 1))
        y0, y1 = int(max(0, min(a[1], b[1]) - reach)), int(min(h, max(a[1], b[1]) + reach + 1))
        seg = b - a
        length2 = float(seg @ seg)
        if x1 <= x0 or y1 <= y0 or length2 < 1.0:
            start += float(np.sqrt(length2))
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        t = np.clip(((xs - a[0]) * seg[0] + (ys - a[1]) * seg[1]) / length2, 0.0, 1.0)
        dist = np.hypot(xs - (a[0] + t * seg[0]), ys - (a[1] + t * seg[1]))
        share = dist / np.maximum(ra + t * (rb - ra), 1.0)
        window = across[y0:y1, x0:x1]
        nearer = share < window
        window[nearer] = share[nearer]
        along[y0:y1, x0:x1][nearer] = (start + t * np.sqrt(length2))[nearer]
        start += float(np.sqrt(length2))
    return across, along


def _chain(kp: np.ndarray, chain) -> list[np.ndarray]:
    """The chain's keypoints up to its first missing one."""
    pts = []
    for i in chain:
        if kp[i, 2] <= 0:
            break
        pts.append(kp[i, :2].astype(np.float64))
    return pts


def _wrist_half(skin: np.ndarray, pts: list[np.ndarray], scale: float) -> float | None:
    """Half the width of the arm at the wrist, measured across the forearm on the person's own visible skin there
    (the wrist below a cuff); None where too little of it shows."""
    if len(pts) < 3:
        return None
    elbow, wrist = pts[1], pts[2]
    forearm = wrist - elbow
    length = float(np.linalg.norm(forearm))
    if length < 4:
        return None
    direction = forearm / length
    ys, xs = np.nonzero(skin)
    rel = np.stack([xs - elbow[0], ys - elbow[1]], 1)
    t = rel @ direction / length
    across = rel @ np.array([-direction[1], direction[0]])
    near = (t > WRIST_SPAN[0]) & (t < WRIST_SPAN[1]) & (np.abs(across) < 0.25 * scale)
    if near.sum() < 30:
        return None
    low, high = np.percentile(across[near], [5, 95])
    half = 0.5 * float(high - low)
    return half if 0.04 * scale < half < 0.15 * scale else None


def _mirrored_from_below(
    person: np.ndarray, lower: np.ndarray, region: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(float RGB, where it is drawn): `region`'s pixels taken from the lower garment below them in their column,
    mirrored about where the garment shows, past the shadow the old top's hem cast on it (its weave and light go
    on up to the waist). A pixel whose mirror image is not the lower garment (its outline's corner) is left out."""
    h, w = region.shape
    out = person.astype(np.float32)
    ys, xs = np.nonzero(region)
    rows = np.where(lower, np.arange(h)[:, None], h).astype(np.int32)
    first = np.minimum.accumulate(rows[::-1], axis=0)[::-1]  # the next lower-garment row at or below
    top = first[ys, xs]
    source = np.clip(top + int(HEM_SHADOW * scale) + (top - ys), 0, h - 1)
    ok = (top < h) & lower[source, xs]
    out[ys[ok], xs[ok]] = person[source[ok], xs[ok]]
    drawn = np.zeros_like(region)
    drawn[ys[ok], xs[ok]] = True
    return out, drawn


@dataclass
class _Limb:
    """An arm or a leg to fill with skin: where it lies, its cylinder coordinate (0 on the bone, 1 at the outline)
    and its own tone (Lab mean, lightness spread) where its skin shows elsewhere."""

    region: np.ndarray
    across: np.ndarray
    tone: tuple[np.ndarray, float] | None


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
        person_lab = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        reference = shading.skin_tone(person, ~inside & (labels == Lip.FACE))
        reference = (
            reference or shading.skin_tone(person, ~inside & np.isin(labels, SKIN)) or DEFAULT_SKIN_LAB
        )
        # Parsers (and datasets) label a tight sleeve as arm now and then: a pixel counts as skin only when its
        # colour is near the face's.
        skin_like = shading.near_tone(person_lab, reference[0], SKIN_TOLERANCE)
        scale = self._body_scale(inputs, inside)
        kp = _keypoints(inputs)
        limbs = self._limbs(inputs, kp, replaced, garment, skin_like, scale)
        arms = np.zeros_like(inside)
        for limb in limbs:
            arms |= limb.region
        lower = np.zeros_like(inside)
        trousers = None
        if inputs.category == Category.UPPER_BODY and kp is not None:
            lower = self._lower_garment(labels, kp, replaced & ~garment & ~arms, scale)
            # The parse's outline between the old top and the trousers is a few pixels off: the trousers' pixels
            # along it are redrawn too, or a line of the old top's hem stays.
            seam = max(1, round(SEAM_PIXELS * h / 512))
            near = cv2.dilate(lower.astype(np.uint8), np.ones((2 * seam + 1, 2 * seam + 1), np.uint8)) > 0
            lower |= near & inside & np.isin(labels, (Lip.PANTS, Lip.SKIRT))
            trousers, lower = _mirrored_from_below(
                person, np.isin(labels, (Lip.PANTS, Lip.SKIRT)), lower, scale
            )
        body = self._body_region(inputs, kp, inside, replaced, limbs, scale) & ~lower
        skin = body & ~garment

        # Layer 1: background, from the person's background pixels around the mask.
        result = shading.fill_background(person, ~inside & (labels == Lip.BACKGROUND), inside)
        # Layer 2: the lower garment where a longer top covered it (a jacket's hem over the trousers' hips).
        if trousers is not None and lower.any():
            alpha = shading.soft_mask(lower, self.seam_sigma, ~inside | garment | skin)[..., None]
            result = result * (1 - alpha) + trousers * alpha
        # Layer 3: skin. Where the person showed bare skin already (a forearm under the mask), it is their own
        # pixels; where the old garment covered the body, their skin tone, sampled from arms, hands and legs
        # outside the mask (the face, with its make-up and shadows, only when no limb shows); an arm takes its
        # own hand's.
        limbs_outside = (
            ~inside & np.isin(labels, (Lip.LEFT_ARM, Lip.RIGHT_ARM, Lip.LEFT_LEG, Lip.RIGHT_LEG)) & skin_like
        )
        tone = shading.skin_tone(person, limbs_outside) if limbs_outside.sum() >= 400 else None
        tone = tone or reference
        # A torso's skin (a neckline, a midriff) is shaded by its distance to the outline, a limb's like a
        # cylinder about its bone.
        light = shading.limb_shading(body, 0.5 * ARM_RADIUS * scale)
        # The person's own light on the body: the folds and falloff the old garment showed, softened (a sleeve's
        # knit is not the arm's), on top of the rounded limb's shading.
        light *= shading.skin_shading(person, replaced, skin, strength=0.5)
        samples = np.isin(labels, SKIN) & skin_like & (~inside | skin)
        tone_map = shading.skin_tone_map(person, samples, tone, 0.06 * h)
        for limb in limbs:
            light[limb.region] *= shading.cylinder_shading(limb.across[limb.region], CYLINDER_EDGE)
            if limb.tone is not None:
                tone_map[limb.region] = limb.tone[0]
        skin_rgb = shading.fill_skin(skin, tone_map, tone[1], light, seed=inputs.seed)
        was_skin = np.isin(labels, SKIN) & skin & skin_like
        skin_rgb[was_skin] = person[was_skin]
        # The skin's edge is soft like the garment's (a limb's outline is no cut-out).
        skin_alpha = shading.soft_mask(skin, max(self.seam_sigma, 0.0015 * h), ~inside | garment)
        result = result * (1 - skin_alpha[..., None]) + skin_rgb * skin_alpha[..., None]
        # What stays the person's own even inside the mask (hair over the shoulders, the trousers under a top):
        # drawn as it is, under the new garment.
        kept = np.isin(labels, KEPT[inputs.category]) & inside & ~lower
        result[kept] = person[kept]
        # Layer 4: the garment, in the person's light.
        gain = shading.shading_gain(person, replaced, garment)
        shaded = shading.apply_gain(inputs.warped_garment, gain)
        # The garment's edge is soft against skin and background inside the mask, hard against the mask's
        # border (handled below), so it never turns translucent there.
        # Its feather grows with the photo's size, so it reads as a fabric's edge and not a cut-out at any size.
        garment_alpha = shading.soft_mask(garment, max(self.seam_sigma, 0.0015 * h), ~inside)
        result = result * (1 - garment_alpha[..., None]) + shaded * garment_alpha[..., None]

        # A narrow band of the garment, the skin and the trousers along the mask's border fades into the pixels
        # just outside it. The backdrop's fill already goes on from them: blended again, it would draw the
        # border as a line.
        if self.border_band > 0:
            dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
            band = inside & (dist <= self.border_band) & (garment | skin | lower)
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

    def _body_region(
        self,
        inputs: TryOnInputs,
        kp: np.ndarray | None,
        inside: np.ndarray,
        replaced: np.ndarray,
        limbs: list[_Limb],
        scale: float,
    ) -> np.ndarray:
        """Where the person's body is inside the mask: bare skin already, the torso the replaced garment covered
        between the shoulders and hips, the arms inside the old sleeves and the legs below the new garment's
        hem. The rest of the mask (the dilation around the body, a loose garment's parts that hung over
        background, an old garment wider than the new one) is background."""
        body = np.isin(inputs.labels, SKIN)
        for limb in limbs:
            body |= limb.region
        body |= replaced & self._torso(kp, inputs.labels.shape, scale)
        return body & inside

    def _limbs(
        self,
        inputs: TryOnInputs,
        kp: np.ndarray | None,
        replaced: np.ndarray,
        garment: np.ndarray,
        skin_like: np.ndarray,
        scale: float,
    ) -> list[_Limb]:
        """The arms under the old sleeves and, for trousers, skirts and dresses, the legs below the new hem."""
        if kp is None:
            return []
        labels = inputs.labels
        own = np.isin(labels, SKIN) & skin_like & ~replaced
        limbs = [
            self._arm(inputs.person, labels, kp, chain, label, replaced, own, scale)
            for chain, label in zip(ARM_CHAINS, (Lip.RIGHT_ARM, Lip.LEFT_ARM), strict=True)
        ]
        if inputs.category != Category.UPPER_BODY:
            limbs += [self._leg(labels, kp, chain, replaced, garment, scale) for chain in LEG_CHAINS]
        return [limb for limb in limbs if limb is not None]

    @staticmethod
    def _arm(
        person: np.ndarray,
        labels: np.ndarray,
        kp: np.ndarray,
        chain,
        label: int,
        replaced: np.ndarray,
        own_skin: np.ndarray,
        scale: float,
    ) -> _Limb | None:
        """An arm under the old sleeve: tapering from the sleeve's own width (measured across the arm where the
        sleeve stands free) to the wrist's, measured on the person's skin below the cuff where it shows; cut to
        the old sleeve and the arm labels, and to below the shoulder line. Its tone is its own hand's."""
        pts = _chain(kp, chain)
        if len(pts) < 2:
            return None
        arm_like = replaced | np.isin(labels, (Lip.LEFT_ARM, Lip.RIGHT_ARM))
        upper = _sleeve_half_width(arm_like, pts, scale)
        hand = own_skin & (labels == label)
        wrist = _wrist_half(hand, pts, scale) or WRIST_SHARE * upper
        upper = max(upper, wrist)
        halves = [upper, 0.5 * (upper + wrist), wrist][: len(pts)]
        if len(pts) == 3:
            # On past the wrist keypoint to the hand (a cuff may hang below it): never a gap above the hand.
            pts = [*pts, pts[2] + PAST_WRIST * (pts[2] - pts[1])]
            halves.append(wrist)
        across, _ = _tapered(labels.shape, pts, halves)
        region = (across <= 1.0) & arm_like
        # The shoulder's cap above the shoulder line is the new garment's or the background's, never an arm's.
        rs, ls = kp[Keypoint.R_SHOULDER], kp[Keypoint.L_SHOULDER]
        if rs[2] > 0 and ls[2] > 0 and abs(ls[0] - rs[0]) > 1:
            ys, xs = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]]
            line_y = rs[1] + (xs - rs[0]) * (ls[1] - rs[1]) / (ls[0] - rs[0])
            region &= ys > line_y - 0.05 * scale
        tone = None
        if hand.sum() >= MIN_HAND:
            # A hand's creases and shadowed side are not its tone: an arm filled in their colour looks dull.
            lightness = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 0]
            tone = shading.skin_tone(person, hand & (lightness >= np.median(lightness[hand])))
        return _Limb(region, across, tone)

    @staticmethod
    def _leg(
        labels: np.ndarray, kp: np.ndarray, chain, replaced: np.ndarray, garment: np.ndarray, scale: float
    ) -> _Limb | None:
        """A leg where the old garment hid it and the new one does not reach: below the new garment's hem along
        the leg (a shorter hem, a skirt). Beside the new garment, where the old one was wider, is background."""
        pts = _chain(kp, chain)
        if len(pts) < 2:
            return None
        across, along = _tapered(labels.shape, pts, [LEG_HALVES[i] * scale for i in range(len(pts))])
        region = (across <= 1.0) & replaced
        under = garment & (across <= 1.0)
        if under.any():
            region &= along > float(along[under].max())
        return _Limb(region, across, None)

    @staticmethod
    def _lower_garment(labels: np.ndarray, kp: np.ndarray, free: np.ndarray, scale: float) -> np.ndarray:
        """Where the trousers or skirt worn under a longer top go on up to the waist, below the new top's hem:
        the pixels of `free` (the old top's, left bare) right above the lower garment in their column, within
        reach of it, and below its waistband (the lower garment's top between the hips)."""
        lower = np.isin(labels, (Lip.PANTS, Lip.SKIRT))
        if not lower.any() or not free.any() or kp[Keypoint.R_HIP, 2] <= 0 or kp[Keypoint.L_HIP, 2] <= 0:
            return np.zeros_like(free)
        h, w = labels.shape
        centre = 0.5 * (kp[Keypoint.R_HIP, :2] + kp[Keypoint.L_HIP, :2])
        spread = abs(float(kp[Keypoint.L_HIP, 0] - kp[Keypoint.R_HIP, 0]))
        x0, x1 = int(max(0, centre[0] - 0.25 * spread)), int(min(w, centre[0] + 0.25 * spread + 1))
        columns = lower[:, x0:x1]
        tops = np.argmax(columns, axis=0)[columns.any(axis=0)]
        if not len(tops):
            return np.zeros_like(free)
        waist = float(np.median(tops))
        # Going down its column from each pixel, the first pixel that is not free must be the lower garment's
        # (not a hand, not the background beside the hips), within reach.
        ys = np.arange(h)[:, None]
        stop = np.where(~free, ys, h).astype(np.int32)
        first = np.minimum.accumulate(stop[::-1], axis=0)[::-1]
        below = np.take_along_axis(np.vstack([lower, np.zeros((1, w), bool)]), np.minimum(first, h), axis=0)
        return free & (ys >= waist) & below & (first - ys <= LOWER_REACH * scale)

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
