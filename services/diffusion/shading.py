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


# The light is read on the old garment at this height: folds and the light's falloff are broad, and a knit or
# the grain of a print averages out.
SHADING_WORK_HEIGHT = 512
# At that size a step in log-luminance steeper than this per pixel is an edge of the old garment's own colours
# (a print, a lapel, an inner layer), not of its light: folds shade gradually.
REFLECTANCE_EDGE = 0.15
# The old garment's colours are split into this many clusters; those closer than FABRIC_DISTANCE (Lab, lightness
# at half weight) are one fabric in different light, and one holding less than MIN_FABRIC_SHARE of the garment
# is a print or a trim.
FABRIC_CLUSTERS = 6
# A print's letters or graphic: within a window of PATTERN_WINDOW pixels, more than PATTERN_DENSITY of the pixels
# step by more than PATTERN_EDGE in log-luminance.
PATTERN_EDGE = 0.04
PATTERN_WINDOW = 11
PATTERN_DENSITY = 0.2
FABRIC_DISTANCE = 20.0
MIN_FABRIC_SHARE = 0.15


def _neumann_poisson(divergence: np.ndarray) -> np.ndarray:
    """The u [h, w] whose Laplacian is `divergence`, with no flow across the border (mean 0): solved with the
    FFT of the mirrored problem, which is the cosine transform's solution."""
    h, w = divergence.shape
    mirrored = np.concatenate([divergence, divergence[::-1]], axis=0)
    mirrored = np.concatenate([mirrored, mirrored[:, ::-1]], axis=1)
    ky = 2.0 * np.cos(2.0 * np.pi * np.arange(2 * h) / (2 * h)) - 2.0
    kx = 2.0 * np.cos(2.0 * np.pi * np.arange(2 * w) / (2 * w)) - 2.0
    eigen = ky[:, None] + kx[None, :]
    eigen[0, 0] = 1.0
    spectrum = np.fft.fft2(mirrored) / eigen
    spectrum[0, 0] = 0.0
    return np.real(np.fft.ifft2(spectrum))[:h, :w]


def fabric_regions(lab: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Labels [H, W] int32 of `source`'s pixels by fabric, -1 outside `source` and on a print or trim.

    Colours are clustered (a few Lloyd iterations in Lab, lightness at half weight, seeded from lightness
    quantiles: deterministic); clusters closer than FABRIC_DISTANCE are one fabric in different light, and a
    cluster holding less than MIN_FABRIC_SHARE of the pixels is a print, a logo or a trim, which shows no light
    of its own.
    """
    out = np.full(source.shape, -1, np.int32)
    pixels = lab[source] * np.array([0.5, 1.0, 1.0], np.float32)
    if len(pixels) < FABRIC_CLUSTERS:
        return out
    sample = pixels[:: max(1, len(pixels) // 4000)]
    order = np.argsort(sample[:, 0])
    centres = sample[order[((np.arange(FABRIC_CLUSTERS) + 0.5) / FABRIC_CLUSTERS * len(sample)).astype(int)]]
    for _ in range(8):
        assign = np.argmin(((sample[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        centres = np.array(
            [
                sample[assign == c].mean(axis=0) if (assign == c).any() else centres[c]
                for c in range(len(centres))
            ]
        )
    fabric = np.arange(len(centres))
    for a in range(len(centres)):
        for b in range(a + 1, len(centres)):
            if np.linalg.norm(centres[a] - centres[b]) < FABRIC_DISTANCE:
                fabric[fabric == fabric[b]] = fabric[a]
    assign = fabric[np.argmin(((pixels[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)]
    share = np.bincount(assign, minlength=len(centres)) / len(assign)
    out[source] = np.where(share[assign] >= MIN_FABRIC_SHARE, assign, -1)
    return out


def _patterned(log_lum: np.ndarray) -> np.ndarray:
    """bool [h, w]: where the photo is busy with edges (letters, a graphic, a fine print): many steep steps
    close together, which no fold makes (a fold is one soft edge)."""
    gy, gx = np.gradient(log_lum)
    edges = (np.hypot(gx, gy) > PATTERN_EDGE).astype(np.float32)
    density = cv2.blur(edges, (PATTERN_WINDOW, PATTERN_WINDOW))
    busy = (density > PATTERN_DENSITY).astype(np.uint8)
    return cv2.dilate(busy, np.ones((3, 3), np.uint8)) > 0


def _light(person: np.ndarray, source: np.ndarray, dark_offset: float) -> np.ndarray:
    """log light [h, w] over `source` (0 on average there), Land's Retinex: the gradients of the old garment's
    log-luminance between pixels of one fabric, without the steep ones (its colours' edges), integrated back."""
    log_lum = np.log(luminance(person) + dark_offset)
    fabric = fabric_regions(cv2.cvtColor(person.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB), source)
    fabric[_patterned(log_lum)] = -1
    divergence = np.zeros(source.shape, np.float64)
    for axis in (0, 1):
        step = np.diff(log_lum, axis=axis)
        first = fabric[:-1] if axis == 0 else fabric[:, :-1]
        second = fabric[1:] if axis == 0 else fabric[:, 1:]
        keep = (first >= 0) & (second >= 0) & (np.abs(step) < REFLECTANCE_EDGE)
        flow = np.where(keep, step, 0.0)
        # The divergence of the kept gradient field (forward differences, so backward ones here).
        head = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        tail = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        divergence[head] += flow
        divergence[tail] -= flow
    light = _neumann_poisson(divergence)
    seen = fabric >= 0
    return light - float(light[seen if seen.any() else source].mean())


def shading_gain(
    person: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    bounds: tuple[float, float] = (0.4, 1.15),
    dark_offset: float = 12.0,
) -> np.ndarray:
    """A multiplicative gain [H, W] that carries the person's light onto a new surface.

    The person's old garment (`source`) shows the folds and the light's falloff, but also its own colours: a
    print, a knit, a lapel, an inner T-shirt under an open jacket. Those end in steep or hue-changing edges
    while light changes gradually, so the light is what integrating the old garment's gentle luminance
    gradients gives (Retinex), read at a small size where a knit's or a print's grain averages out. The gain is
    bounded (a new garment is shaded, not repainted): deep folds may darken it to 40 %, nothing lightens it by
    more than 15 %. It is eased to 1 away from `source` (where no light is known) and rescaled to mean 1 over
    `target`, so the new garment keeps its own colour. `dark_offset` keeps a black garment's noise from
    reading as light.
    """
    h, w = source.shape
    scale = min(1.0, SHADING_WORK_HEIGHT / h)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small_source = cv2.resize(source.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if not small_source.any():
        return np.ones((h, w), np.float32)
    small = cv2.resize(person, size, interpolation=cv2.INTER_AREA)
    light = np.clip(np.exp(_light(small, small_source, dark_offset)), *bounds)
    ratio = cv2.resize(np.where(small_source, light, 1.0).astype(np.float32), (w, h), cv2.INTER_LINEAR)
    weight = cv2.GaussianBlur(source.astype(np.float32), (0, 0), 3.0)
    gain = 1.0 + (ratio - 1.0) * weight
    if target.any():
        gain /= float(gain[target].mean())
    return np.clip(gain, *bounds).astype(np.float32)


def skin_shading(
    person: np.ndarray, source: np.ndarray, target: np.ndarray, strength: float = 0.7
) -> np.ndarray:
    """A multiplicative gain [H, W] on the lightness of filled skin: the person's light and large folds over
    `source` (the old garment), softened by `strength` and kept in a narrow band, mean 1 over `target`."""
    gain = shading_gain(person, source, target, bounds=(0.75, 1.3))
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
