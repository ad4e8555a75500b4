"""Compositing helpers of the embedded try-on: shading transfer, skin fill, background fill, soft seams.

Everything works on float32 RGB in 0..255 and boolean masks; nothing here knows about requests.
"""

from __future__ import annotations

import cv2
import numpy as np

# Rec. 601 luma weights (RGB order).
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ _LUMA


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; a wide one runs on a reduced copy (the result is smooth at that scale anyway)."""
    if sigma <= 6.0:
        return cv2.GaussianBlur(values, (0, 0), sigma)
    h, w = values.shape[:2]
    factor = sigma / 3.0
    small = cv2.resize(
        values, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), 3.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def masked_blur(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of `values` over `mask` only (normalised convolution): outside pixels do not leak in."""
    weight = mask.astype(np.float32)
    expand = (lambda a: a) if values.ndim == 2 else (lambda a: a[..., None])
    num = _blur(values.astype(np.float32) * expand(weight), sigma)
    den = np.maximum(_blur(weight, sigma), 1e-6)
    return num / expand(den)


# How many colour regions an old garment is split into before its shading is read: a jacket over a T-shirt,
# a print on a shirt, each is normalised on its own, so their colours never reach the new garment as light.
COLOUR_REGIONS = 4
# The reference each region's luminance is divided by is blurred this many times `large_sigma`: what the
# ratio keeps is the folds and the light's falloff within the region, not the region's own brightness.
REFERENCE_SPREAD = 1.0
# Colour regions whose Lab centres lie closer than this (lightness at half weight) are one fabric.
REGION_DISTANCE = 20.0
# A colour region is a layer of its own (an inner T-shirt, a lapel) only when it holds this share of the old
# garment's pixels.
MIN_REGION_SHARE = 0.06


def colour_regions(person: np.ndarray, source: np.ndarray, k: int = COLOUR_REGIONS) -> np.ndarray:
    """Labels [H, W] int32 of `source`'s pixels by colour (k-means in Lab on a sample), -1 outside `source`.

    Deterministic: the sample is a regular stride and the centres start from luminance quantiles.
    """
    out = np.full(source.shape, -1, np.int32)
    n = int(source.sum())
    if n == 0:
        return out
    lab = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[source]
    sample = lab[:: max(1, n // 4000)]
    k = max(1, min(k, len(sample)))
    order = np.argsort(sample[:, 0])
    centres = sample[order[((np.arange(k) + 0.5) / k * len(sample)).astype(int)]].copy()
    for _ in range(8):  # Lloyd iterations
        assign = np.argmin(((sample[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for c in range(k):
            if (assign == c).any():
                centres[c] = sample[assign == c].mean(axis=0)
    # Light and shade move a fabric's lightness, not its hue: centres closer than REGION_DISTANCE (lightness
    # counted at half) are one fabric in different light, and are merged, so a plain garment stays one region
    # and its folds are kept.
    merged = np.arange(k)
    weights = np.array([0.5, 1.0, 1.0], np.float32)
    for a in range(k):
        for b in range(a + 1, k):
            if np.linalg.norm((centres[a] - centres[b]) * weights) < REGION_DISTANCE:
                merged[merged == merged[b]] = merged[a]
    # A region too small to be a garment layer (a logo, a button) joins the nearest large one: its own
    # reference would be read off a few pixels, and the gain's bounds already keep its contrast from printing.
    assign = merged[np.argmin(((sample[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)]
    share = np.bincount(assign, minlength=k) / len(assign)
    large = [c for c in range(k) if share[c] >= MIN_REGION_SHARE]
    if not large:
        large = [int(np.argmax(share))]
    for c in range(k):
        if share[merged[c]] < MIN_REGION_SHARE:
            nearest = min(large, key=lambda j: float(np.linalg.norm((centres[c] - centres[j]) * weights)))
            merged[merged == merged[c]] = merged[nearest]
    out[source] = merged[np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)]
    return out


def shading_gain(
    person: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    large_sigma: float,
    bounds: tuple[float, float] = (0.4, 1.15),
    dark_offset: float = 12.0,
    fine_sigma: float = 1.2,
) -> np.ndarray:
    """A multiplicative gain [H, W] that carries the person's shading onto a new surface.

    The person's luminance over `source` (their old garment, which shows the folds and the light) is split into
    colour regions (an open jacket and the T-shirt under it) and each region's luminance is divided by a heavy
    blur of itself restricted to that region: what remains is the light's falloff and the folds, around 1, not
    the old layers' own brightness. `dark_offset` keeps the ratio of a black garment from amplifying sensor
    noise. The gain is bounded (a new garment is shaded, not repainted): deep folds may darken it to 40 %, but
    nothing lightens it by more than 15 %, the blow-out a white inner layer or a light print used to cause (a
    small print joins its surrounding region, and only its darkening within the bounds comes through). It is
    eased to 1 away from `source` and rescaled to mean 1 over `target`, so the new garment keeps its own colour.
    """
    lum = luminance(person)
    regions = colour_regions(person, source)
    # Outside the old garment the fine luminance is the person's own (eased out below); inside, each region's
    # is blurred over that region only, so a print's or a lapel's edge does not leak into its neighbour.
    fine = cv2.GaussianBlur(lum, (0, 0), fine_sigma)
    reference = fine.copy()
    for c in range(int(regions.max()) + 1):
        member = regions == c
        if member.any():
            fine[member] = masked_blur(lum, member, fine_sigma)[member]
            reference[member] = masked_blur(lum, member, REFERENCE_SPREAD * large_sigma)[member]
    ratio = (fine + dark_offset) / (reference + dark_offset)
    ratio = np.where(source, np.clip(ratio, *bounds), 1.0).astype(np.float32)
    # Where the person showed no old garment (skin, background under the new one), no shading is known.
    weight = cv2.GaussianBlur(source.astype(np.float32), (0, 0), 3.0)
    gain = 1.0 + (ratio - 1.0) * weight
    if target.any():
        gain /= float(gain[target].mean())
    return np.clip(gain, *bounds).astype(np.float32)


def skin_shading(
    person: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    large_sigma: float,
    fine_sigma: float,
    strength: float = 0.7,
) -> np.ndarray:
    """A multiplicative gain [H, W] on the lightness of filled skin: the person's light and large folds over
    `source` (the old garment), at scales between `fine_sigma` (below it: the fabric's weave, not the body's
    shape) and `large_sigma`, softened by `strength` and kept in a narrow band, mean 1 over `target`."""
    blurred = cv2.GaussianBlur(person, (0, 0), max(fine_sigma, 1.0))
    gain = shading_gain(blurred, source, target, large_sigma, bounds=(0.75, 1.3))
    gain = 1.0 + strength * (gain - 1.0)
    if target.any():
        gain /= float(gain[target].mean())
    return gain.astype(np.float32)


def apply_gain(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain[..., None], 0, 255)


def skin_tone(person: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(mean Lab colour, L standard deviation) of the person's skin over `samples`, robust to eyes, lips,
    brows and stray hair in the face label; None when there are too few pixels."""
    if samples.sum() < 50:
        return None
    lab = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[samples]
    median = np.median(lab, axis=0)
    spread = 1.4826 * np.median(np.abs(lab - median), axis=0) + 1e-3
    keep = np.all(np.abs(lab - median) < 2.0 * spread + 2.0, axis=1)
    if keep.sum() < 20:
        keep[:] = True
    core = lab[keep]
    return core.mean(axis=0), float(core[:, 0].std())


def near_tone(lab: np.ndarray, tone: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels whose Lab colour is within `tolerance` of `tone`, lightness weighted by half (light and shade
    change a skin's lightness far more than its hue)."""
    d = lab - tone[None, None, :]
    return (0.25 * d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2) < tolerance**2


def skin_tone_map(
    person: np.ndarray, samples: np.ndarray, tone: tuple[np.ndarray, float], sigma: float
) -> np.ndarray:
    """Lab tone per pixel [H, W, 3]: the person's skin colour nearby (a wide blur over the skin samples that
    lie close to the global tone), fading to the global tone where no skin is near. A filled neck then meets
    the real chin in the same colour, an arm its own hand."""
    mean_lab, l_std = tone
    lab = cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    close = samples & (np.abs(lab[..., 0] - mean_lab[0]) < 2.5 * l_std + 6.0)
    local = masked_blur(lab, close, sigma)
    weight = np.clip(_blur(close.astype(np.float32), sigma) * 8.0, 0.0, 1.0)[..., None]
    return (weight * local + (1.0 - weight) * mean_lab[None, None, :]).astype(np.float32)


def fill_skin(
    region: np.ndarray,
    tone_map: np.ndarray,
    l_std: float,
    shading: np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """RGB float image of skin over `region`: the Lab tone map, the given shading (multiplicative on L) and a
    faint fine texture, so a filled arm does not look painted flat."""
    h, w = region.shape
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0)
    texture *= min(2.0, 0.25 * l_std) / (float(texture.std()) + 1e-6)
    lab = tone_map.copy()
    lab[..., 0] = np.clip(tone_map[..., 0] * shading + texture, 0, 100)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0
    rgb[~region] = 0
    return rgb


def limb_shading(region: np.ndarray, radius: float) -> np.ndarray:
    """Shading of a rounded limb: full light along its middle, darker towards its outline (a cylinder seen
    from the front), from the distance to the region's edge."""
    dist = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
    t = np.clip(dist / max(radius, 1.0), 0.0, 1.0)
    return (0.82 + 0.18 * np.sqrt(t)).astype(np.float32)


def fill_background(person: np.ndarray, known: np.ndarray, work_height: int = 256) -> np.ndarray:
    """The person photo with everything outside `known` filled from the known pixels around it (cv2.inpaint on
    a reduced copy: the filled parts are smooth studio background), float RGB at full size. Known pixels keep
    their values exactly."""
    h, w = person.shape[:2]
    scale = min(1.0, work_height / h)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(person, size, interpolation=cv2.INTER_AREA)
    small_known = cv2.resize(known.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    # Pixels next to the unknown region are often half person: take only solid known pixels as the source.
    small_known = cv2.erode(small_known.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if not small_known.any():
        fill = np.full_like(small, int(np.median(person.reshape(-1, 3), axis=0).mean()))
    else:
        fill = cv2.inpaint(small, (~small_known).astype(np.uint8), 5, cv2.INPAINT_TELEA)
    full = cv2.resize(fill, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    full[known] = person[known]
    return full


def soft_mask(mask: np.ndarray, sigma: float, solid: np.ndarray | None = None) -> np.ndarray:
    """`mask` as a soft alpha: 1 inside, falling off towards its edge, 0 outside it (a layer never spills out
    of its own mask). Along `solid` the edge stays hard (the layer meets pixels it must not fade against)."""
    hard = mask if solid is None else (mask | solid)
    alpha = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma) if sigma > 0 else hard.astype(np.float32)
    alpha = np.clip(2.0 * alpha - 0.5, 0.0, 1.0)  # the edge pixel at about half, full a pixel or two in
    alpha[~mask] = 0.0
    return alpha
