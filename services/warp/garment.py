"""Garment analysis of a product photo: the garment's mask, and landmarks read off the mask's contour.

Product photos show one garment on a plain (mostly white or light grey) background, laid flat or on a ghost
mannequin. The mask separates the garment from a smooth background model fitted to the border pixels: a pixel is
background when it can be reached from the border through pixels that are close to the background colour (Lab
distance) and carry no edge. The edge test is what keeps a white garment on a white background: its colour barely
differs from the background, but its outline and the shadow along it form a closed curve the flood cannot cross.

Landmarks name the garment's points in the wearer's frame, like OpenPose: the garment is seen from the front, so
the wearer's right (`right_*`) appears on the image's left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from vton.runtime.errors import InvalidInput, NoPersonFound
from vton.runtime.images import require_rgb

CATEGORIES = ("upper_body", "lower_body", "dresses")

# The gap between trouser legs: background-coloured garment pixels (Lab distance to the border's median below
# GAP_COLOUR) reached from within GAP_REACH of the photo's height of the crotch.
GAP_COLOUR = 6.0
GAP_REACH = 0.01
# Flaps of background stuck to a garment's outline are at most this share of the photo's shorter side thick.
FLAP_SIZE = 0.05
# The mask is computed at most at this size (longest side): enough for the outline, and bounded in time.
_WORK_SIDE = 768


def _border_strip(h: int, w: int, width: int) -> np.ndarray:
    strip = np.zeros((h, w), bool)
    strip[:width], strip[-width:], strip[:, :width], strip[:, -width:] = True, True, True, True
    return strip


def _fit_background(lab: np.ndarray, strip: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """A quadratic surface per Lab channel fitted to the border pixels, robust to garment pixels that touch it.

    Returns the background model [h, w, 3], the residual noise level of the border (Lab units) and which
    border pixels (in `np.nonzero(strip)` order) are background.
    Studio backgrounds fall off in brightness towards the corners; a constant colour would take that falloff
    for garment.
    """
    h, w = lab.shape[:2]
    ys, xs = np.nonzero(strip)
    xn, yn = xs / w - 0.5, ys / h - 0.5
    design = np.stack([np.ones_like(xn), xn, yn, xn * xn, yn * yn, xn * yn], 1)
    values = lab[ys, xs].astype(np.float64)
    # Start from the border's dominant colour, so that garment touching the border never steers the surface.
    keep = np.linalg.norm(values - np.median(values, axis=0), axis=1) < 8.0
    if keep.sum() < 0.3 * len(xs):
        keep[:] = True
    coef = np.zeros((6, 3))
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        resid = np.linalg.norm(values - design @ coef, axis=1)
        scale = 1.4826 * np.median(resid[keep]) + 1e-3
        keep = resid < max(3.0 * scale, 2.0)
        if keep.sum() < 0.3 * len(xs):  # the border is mostly garment: fall back to the brightest pixels
            keep = values[:, 0] >= np.percentile(values[:, 0], 70)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = gx / w - 0.5, gy / h - 0.5
    basis = np.stack([np.ones_like(gx), gx, gy, gx * gx, gy * gy, gx * gy], -1)
    model = basis @ coef.astype(np.float32)
    noise = float(1.4826 * np.median(np.linalg.norm(values[keep] - design[keep] @ coef, axis=1)))
    return model, noise, keep


def _gradient(lab: np.ndarray) -> np.ndarray:
    """Largest Sobel gradient magnitude over the Lab channels of a lightly smoothed image."""
    smooth = cv2.GaussianBlur(lab, (0, 0), 1.0)
    mags = []
    for c in range(3):
        gx = cv2.Sobel(smooth[:, :, c], cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(smooth[:, :, c], cv2.CV_32F, 0, 1, ksize=3)
        mags.append(cv2.magnitude(gx, gy))
    return np.max(mags, axis=0) / 8.0  # Sobel 3x3 sums 8x the unit difference


def _reachable_from_border(passable: np.ndarray) -> np.ndarray:
    n, cc = cv2.connectedComponents(passable.astype(np.uint8), connectivity=4)
    edge_ids = np.unique(np.concatenate([cc[0], cc[-1], cc[:, 0], cc[:, -1]]))
    edge_ids = edge_ids[edge_ids > 0]
    return np.isin(cc, edge_ids)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, cc, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return cc == best


def _fill_holes(mask: np.ndarray, background_like: np.ndarray, max_open_hole: float) -> np.ndarray:
    """Fill enclosed holes, except large ones that look like the background (a gap between straps)."""
    holes = ~mask & ~_reachable_from_border(~mask)
    n, cc, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    out = mask.copy()
    area = max(int(mask.sum()), 1)
    for i in range(1, n):
        region = cc == i
        if stats[i, cv2.CC_STAT_AREA] < max_open_hole * area or background_like[region].mean() < 0.9:
            out |= region
    return out


def _separate(rgb: np.ndarray, nested: bool = False) -> np.ndarray:
    """Boolean garment mask of an RGB photo whose border is background (the flood and cleanup).

    A product photo pasted onto a larger canvas floods as one filled box; then the garment is separated again
    inside the box, whose own border is the garment's true background (once: `nested`).
    """
    sh, sw = rgb.shape[:2]
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # L 0..100, a/b about -100..100
    strip = _border_strip(sh, sw, max(2, round(0.01 * min(sh, sw))))
    model, noise, inliers = _fit_background(lab, strip)
    dist = np.linalg.norm(lab - model, axis=2)
    # Product backgrounds are often one exact value (clipped white): then a single grey level tells a white
    # garment from them, and the thresholds follow the border's own noise down to that.
    color_thr = max(0.6, 5.0 * noise)
    strong_thr = max(6.0, 5.0 * noise)
    grad = _gradient(lab)
    border_grad = grad[strip][inliers]  # garment that touches the border says nothing of the background
    grad_thr = max(0.6, 4.0 * float(np.percentile(border_grad, 95))) if len(border_grad) else 1.5

    # A pixel blocks the flood from the border when its colour or an edge says garment; dilating the edges
    # closes the small gaps of a faint outline.
    edges = cv2.dilate((grad > grad_thr).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    colored = dist > color_thr
    fg = ~_reachable_from_border(~(colored | edges))
    box = None if nested else _pasted_rectangle(_largest_component(fg))
    if box is not None:
        x0, y0, x1, y1 = box
        inner = np.zeros_like(fg)
        crop = np.ascontiguousarray(rgb[y0 + 2 : y1 - 1, x0 + 2 : x1 - 1])
        inner[y0 + 2 : y1 - 1, x0 + 2 : x1 - 1] = _separate(crop, nested=True)
        if inner.mean() > 0.01 and inner.sum() < 0.8 * fg.sum():
            return inner
    # The flood stops a dilation short of the garment's outline, and JPEG ringing lifts the background next to
    # it a few levels: give the outermost pixels back to the background unless their colour clearly differs.
    fg &= (dist > strong_thr) | cv2.erode(fg.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)

    # JPEG ringing and soft shadows lift the background a few Lab units next to a contrasted outline, and the
    # weak threshold takes them for garment: peel off such pixels near strong contrast, from the outside in.
    # A white garment's faint outline has no strong contrast next to it and keeps its border.
    strong = dist > strong_thr
    ring = max(5, round(0.012 * min(sh, sw)) | 1)
    near_strong = cv2.dilate(
        strong.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (ring, ring))
    )
    # Only a band along the outline: a pale stripe that runs into the garment from its side stays.
    outline_band = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3) <= ring
    peelable = fg & outline_band & (near_strong > 0) & (dist < max(4.0, 5.0 * noise))
    fg &= ~(peelable & _reachable_from_border(peelable | ~fg))

    fg &= ~_drop_shadow(lab, model, grad, fg, noise, min(sh, sw))

    k = max(3, round(0.006 * min(sh, sw)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    fg &= ~_background_flaps(fg, dist < strong_thr, min(sh, sw))
    fg = _largest_component(fg)
    return _fill_holes(fg, dist < color_thr, max_open_hole=0.004)


def _background_flaps(fg: np.ndarray, background_like: np.ndarray, side: int) -> np.ndarray:
    """Thin flaps of the photo's background stuck to the outline (the flood stopped by a faint line on the
    backdrop): what an opening FLAP_SIZE of the photo wide removes and has the background's colour. A thin part of
    the garment (a strap, a string) differs from the background and stays."""
    size = max(5, round(FLAP_SIZE * side) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    return fg & ~opened & background_like


def _drop_shadow(
    lab: np.ndarray, model: np.ndarray, grad: np.ndarray, fg: np.ndarray, noise: float, side: int
) -> np.ndarray:
    """The soft shadow a garment casts on its background, which the flood takes for garment: pixels along the
    outline that have the background's hue, are darker than it and smooth, reached from outside through such
    pixels. Only for a clearly coloured garment: a white or grey one shares the background's hue and keeps
    its outline as it is."""
    chroma = np.linalg.norm(lab[..., 1:] - model[..., 1:], axis=2)
    if not fg.any() or np.median(chroma[fg]) < 10.0:
        return np.zeros_like(fg)
    darker = model[..., 0] - lab[..., 0]
    smooth = cv2.GaussianBlur(grad, (0, 0), 1.5) < max(1.5, 3.0 * noise)
    band = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3) <= 0.05 * side
    shadow = fg & band & (chroma < max(4.0, 3.0 * noise)) & (darker > 2.0) & smooth
    return shadow & _reachable_from_border(shadow | ~fg)


def _pasted_rectangle(fg: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) when the "garment" is really a photo pasted on a canvas: a filled axis-aligned box.

    Each side must hold a straight, almost fully covered line within a few pixels of the bounding box (bits of
    the garment or JPEG ringing may stick out of the box).
    """
    ys, xs = np.nonzero(fg)
    if not len(xs):
        return None
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    if x1 - x0 < 32 or y1 - y0 < 32 or fg[y0 : y1 + 1, x0 : x1 + 1].mean() < 0.85:
        return None
    rows, cols = fg[:, x0 : x1 + 1].mean(axis=1), fg[y0 : y1 + 1, :].mean(axis=0)
    slack = max(3, round(0.03 * min(x1 - x0, y1 - y0)))
    found = []
    for fill, start, step in ((rows, y0, 1), (rows, y1, -1), (cols, x0, 1), (cols, x1, -1)):
        line = [start + step * i for i in range(slack) if fill[start + step * i] > 0.9]
        if not line:
            return None
        found.append(line[0])
    y0, y1, x0, x1 = found
    return x0, y0, x1, y1


def garment_mask(image: np.ndarray) -> np.ndarray:
    """uint8 [h, w] mask (255 = garment) of the garment in a product photo on a plain background.

    Raises NoPersonFound when nothing separates from the background (an empty or uniform photo) or when no
    background can be found (the garment fills the whole frame).
    """
    h, w = require_rgb(image, "the garment photo").shape[:2]
    scale = min(1.0, _WORK_SIDE / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    fg = _separate(small)
    box = _pasted_rectangle(fg)
    if box is not None:
        # A product photo pasted onto a larger canvas: the garment's background is the box's own content.
        x0, y0, x1, y1 = box
        inner = np.zeros_like(fg)
        inner[y0 + 2 : y1 - 1, x0 + 2 : x1 - 1] = _separate(
            np.ascontiguousarray(small[y0 + 2 : y1 - 1, x0 + 2 : x1 - 1])
        )
        fg = inner

    strip = _border_strip(sh, sw, max(2, round(0.01 * min(sh, sw))))
    area = fg.mean()
    if area < 0.01:
        raise NoPersonFound("no garment found: nothing in the garment photo stands out from its background")
    if area > 0.97 or fg[strip].mean() > 0.6:
        raise NoPersonFound(
            "no garment found: the garment photo has no plain background to separate the garment from"
        )
    mask = fg.astype(np.uint8) * 255
    if scale < 1.0:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    return mask


# ---------------------------------------------------------------------------------------------- landmarks


def _run_containing(row: np.ndarray, x: int) -> tuple[int, int] | None:
    """The run of True pixels of `row` that contains x (or the nearest run to x)."""
    xs = np.flatnonzero(row)
    if not len(xs):
        return None
    breaks = np.flatnonzero(np.diff(xs) > 1)
    starts = np.concatenate([[xs[0]], xs[breaks + 1]])
    ends = np.concatenate([xs[breaks], [xs[-1]]])
    inside = np.flatnonzero((starts <= x) & (ends >= x))
    i = inside[0] if len(inside) else int(np.argmin(np.minimum(abs(starts - x), abs(ends - x))))
    return int(starts[i]), int(ends[i])


def _top_profile(mask: np.ndarray) -> np.ndarray:
    """For every column the first garment row, or -1 where the column is empty."""
    has = mask.any(axis=0)
    top = np.argmax(mask, axis=0).astype(np.float64)
    top[~has] = -1
    return top


def _convexity_defects(contour: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(point, depth) of every concavity of the outline, deepest first."""
    for candidate in (contour, cv2.approxPolyDP(contour, 1.0, True)):
        try:
            hull = cv2.convexHull(candidate, returnPoints=False)
            defects = cv2.convexityDefects(candidate, hull) if hull is not None and len(hull) > 3 else None
        except cv2.error:  # a self-touching outline can give a hull OpenCV calls non-monotonic
            continue
        if defects is None:
            return []
        out = [(candidate[d[2], 0].astype(np.float64), d[3] / 256.0) for d in defects.reshape(-1, 4)]
        return sorted(out, key=lambda item: -item[1])
    return []


def _main_contour(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise NoPersonFound("no garment found: the garment mask is empty")
    return max(contours, key=cv2.contourArea)


def _distance_to_segment(xs: np.ndarray, ys: np.ndarray, a: tuple[float, float], b: tuple[float, float]):
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.hypot(xs - (ax + t * dx), ys - (ay + t * dy))


def _torso_runs(m: np.ndarray, cx: int, top_y: int, hem_y: int) -> tuple[np.ndarray, np.ndarray]:
    """Left and right ends of the run through the garment's axis on every row (NaN where the axis is empty)."""
    h = m.shape[0]
    left, right = np.full(h, np.nan), np.full(h, np.nan)
    for y in range(top_y, hem_y + 1):
        run = _run_containing(m[y], cx)
        if run is not None and run[0] <= cx <= run[1]:
            left[y], right[y] = run
    return left, right


def _find_armpit(
    edge: np.ndarray, outward: int, top_y: int, hem_y: int, width: float, row_widths: np.ndarray
) -> tuple[int, bool] | None:
    """Walk one torso side up from the hem: (row of the armpit, whether a sleeve leaves the side there).

    `edge` holds the side's x per row and `outward` is -1 for the image's left side, +1 for its right. A sleeve
    shows as the side leaping outwards (its underside leaves the torso at the armpit); without one the side
    bends inwards along the armhole, and the armpit is where that bend starts. None when the walk reaches the
    neckline (the axis leaves the garment) or the top without either. `width` is the torso's width near the
    hem and `row_widths` the torso run's width per row.
    """
    jump = max(3.0, 0.03 * width)
    step = max(2, round(0.01 * (hem_y - top_y)))
    start = int(hem_y - 0.08 * (hem_y - top_y))
    hem_width = width
    for y in range(start, top_y + step, -1):
        lower, upper = edge[y + step] if y + step <= hem_y else edge[y], edge[y]
        higher = edge[max(y - step, top_y)]
        if np.isnan(upper) or np.isnan(lower) or np.isnan(higher):
            # The neckline: with straight sides up to it the top is sleeveless and the armhole starts about
            # here, unless the sides are really sleeves hanging against the torso (the row is far too wide).
            return None if row_widths[y + step] > 1.3 * hem_width else (y + step, False)
        move = (upper - lower) * outward  # > 0: the side moves outwards going up
        if move > jump and (higher - lower) * outward > jump:
            # A sleeve's underside keeps leaving the torso; a notch in the side does not.
            return y + step, True
        if -move > 1.5 * step + jump:  # the armhole curves in faster than any torso tapers
            return y + step, False
    return None


# Where the armpit sits between the garment's top and the bottom of its torso (the hem of a top, the waist of a
# dress) when the outline does not show it, and the band in which an armpit read off the outline is believed.
_ARMPIT_PRIOR = {False: (0.42, 0.12, 0.6), True: (0.5, 0.15, 0.8)}


# The hem of a top: among the bottoms of the columns within HEM_COLUMNS of the garment's width either side of its
# axis, this percentile (a curved, slit or wrapped hem still gives a row that crosses the whole torso).
HEM_COLUMNS = 0.2
HEM_PERCENTILE = 20
# The torso's sides are median-filtered over this many rows (lace or fringe is no armpit).
SIDE_SMOOTHING = 5
# A dress's sides are walked up from its waist: the narrowest row between these shares of its height.
DRESS_WAIST_BAND = (0.22, 0.5)
# The torso's width: the median over this share of the span above the base row.
TORSO_WIDTH_SPAN = 0.3
# An armpit read off the outline is doubted when a sleeve hangs beside the torso below it: garment more than
# HANGING_OUT of the torso's width beyond its side, over HANGING_SHARE of the garment, from HANGING_BELOW of the
# span under the armpit down; then it is put at the prior (ARMPIT_PRIOR_SLACK lower when read too low).
HANGING_OUT, HANGING_SHARE, HANGING_BELOW = 0.05, 0.005, 0.1
ARMPIT_DOUBT = 0.08
ARMPIT_PRIOR_SLACK = 0.03
# With the armpit at its prior, garment more than SLEEVE_BEYOND of the torso's width beyond the side above it,
# over SLEEVE_SHARE of the garment, is a sleeve.
SLEEVE_BEYOND, SLEEVE_SHARE = 0.08, 0.01
# The neckline is looked for within NECK_COLUMNS of the armpits' half distance of the axis, the collar corners
# within COLLAR_COLUMNS of it; a sleeved shoulder's seam sits SEAM_OUT of that beyond the armpit's column.
NECK_COLUMNS, COLLAR_COLUMNS, SEAM_OUT = 0.3, 0.7, 0.04
# A sleeve smaller than CAP_SLEEVE_SHARE of the garment, or reaching less than CAP_SLEEVE_REACH of the span from
# its root, is a cap sleeve; one narrower than STRAP_WIDTH of the torso's width is a strap or a tie. The cuff
# is the sleeve's pixels within CUFF_BAND of the span from its farthest one.
CAP_SLEEVE_SHARE, CAP_SLEEVE_REACH = 0.002, 0.1
STRAP_WIDTH = 0.12
CUFF_BAND = 0.03
# The hem corners are read this share of the span above the hem.
HEM_CORNER_INSET = 0.01


@dataclass
class _TorsoOutline:
    """A top's torso in its product photo: the axis column, the rows of its top, hem and base (the hem, or a
    dress's waist), the smoothed x of each side per row (NaN off the torso) and the torso's width."""

    m: np.ndarray
    cx: int
    top_y: int
    hem_y: int
    base_y: int
    left: np.ndarray
    right: np.ndarray
    torso_width: float

    @property
    def widths(self) -> np.ndarray:
        return self.right - self.left

    @property
    def span(self) -> int:
        return max(self.base_y - self.top_y, 1)


def _torso_outline(m: np.ndarray, dress: bool) -> _TorsoOutline:
    """The torso's outline: the run of garment through the axis on each row from the top to the hem."""
    w = m.shape[1]
    ys, xs = np.nonzero(m)
    top_y, bottom_y = int(ys.min()), int(ys.max())
    cx = int(np.median(xs))
    reach = int(HEM_COLUMNS * (xs.max() - xs.min()))
    near_axis = [c for c in range(cx - reach, cx + reach + 1) if 0 <= c < w and m[:, c].any()]
    col_bottoms = [int(np.flatnonzero(m[:, c])[-1]) for c in near_axis] or [bottom_y]
    hem_y = int(np.percentile(col_bottoms, HEM_PERCENTILE))
    left, right = _torso_runs(m, cx, top_y, hem_y)
    for edge in (left, right):
        valid = ~np.isnan(edge)
        if valid.sum() > SIDE_SMOOTHING:
            filled = np.where(valid, edge, 0).astype(np.float32).reshape(-1, 1)
            edge[valid] = cv2.medianBlur(filled, SIDE_SMOOTHING).ravel()[valid]
    widths = right - left
    base_y = int(hem_y - HEM_CORNER_INSET * (hem_y - top_y))
    if dress:
        lo, hi = (int(top_y + share * (hem_y - top_y)) for share in DRESS_WAIST_BAND)
        band = widths[lo:hi]
        if np.isfinite(band).any():
            base_y = lo + int(np.nanargmin(band))
    span = max(base_y - top_y, 1)
    near_base = widths[int(base_y - TORSO_WIDTH_SPAN * span) : base_y + 1]
    # A slit up the hem, or a mask that is the garment's outline and print rather than its silhouette (some of
    # VITON's cloth masks), leaves the axis outside the garment above the base: the torso's width is then read
    # wherever a row crosses the axis, and a mask where none does shows no torso to place.
    measured = near_base if np.isfinite(near_base).any() else widths
    if not np.isfinite(measured).any():
        raise NoPersonFound(
            "no garment found: no row of the garment mask crosses its middle column, so it shows no torso "
            "(it looks like an outline or scattered pieces, not the garment's filled silhouette)"
        )
    torso_width = float(np.nanmedian(measured))
    return _TorsoOutline(m, cx, top_y, hem_y, base_y, left, right, torso_width)


def _armpit(o: _TorsoOutline, side: str, dress: bool) -> tuple[tuple[float, float], bool, np.ndarray]:
    """One side's armpit, whether a sleeve leaves the torso there, and the side's line (the smoothed edge, drawn
    straight up from the base where the outline does not show the armpit)."""
    edge, outward = (o.left, -1) if side == "right" else (o.right, 1)
    cols = np.arange(o.m.shape[1])[None, :]
    prior, lowest, highest = _ARMPIT_PRIOR[dress]
    found = _find_armpit(edge, outward, o.top_y, o.base_y, o.torso_width, o.widths)
    base_x = edge[o.base_y] if not np.isnan(edge[o.base_y]) else o.cx + outward * 0.5 * o.torso_width
    line = edge.copy()
    ay, has_sleeve = found if found is not None else (o.base_y, False)
    ratio = (ay - o.top_y) / o.span
    below = o.m[min(o.base_y, int(ay + HANGING_BELOW * o.span)) : o.base_y + 1, :]
    hanging = (
        below & ((cols - base_x) * outward > HANGING_OUT * o.torso_width)
    ).sum() > HANGING_SHARE * o.m.sum()
    if found is None or ratio > highest or ratio < lowest or (ratio > prior + ARMPIT_DOUBT and hanging):
        # The outline does not show the armpit: a sleeve that hangs against the torso opens its gap far below
        # it, a neckline or front opening stops the walk. Put the armpit where garments have it, on the torso's
        # side drawn straight up from the hem (or waist), and what lies beyond that is sleeve.
        ay = int(
            o.top_y
            + (prior + ARMPIT_PRIOR_SLACK if found is not None and ratio > highest else prior) * o.span
        )
        line[ay : o.base_y + 1] = base_x
        # Beyond the side by a share of the torso's own width at its base: sleeves hanging against the torso
        # widen the rows above the base, and would hide a sleeve from a share of those.
        base_width = o.widths[o.base_y] if np.isfinite(o.widths[o.base_y]) else o.torso_width
        above = o.m[o.top_y : ay, :] & (
            (cols - base_x) * outward > SLEEVE_BEYOND * min(o.torso_width, base_width)
        )
        has_sleeve = bool(above.sum() > SLEEVE_SHARE * o.m.sum())
    ax = line[ay] if not np.isnan(line[ay]) else base_x
    return (float(ax), float(ay)), has_sleeve, line


def _neckline_and_collar(o: _TorsoOutline, half: float) -> dict[str, tuple[float, float]]:
    """The neckline, the lowest point of the top outline near the axis, and the collar corners, where the
    outline peaks on either side of it."""
    w = o.m.shape[1]
    top = _top_profile(o.m)
    cols = np.arange(int(o.cx - NECK_COLUMNS * half), int(o.cx + NECK_COLUMNS * half) + 1)
    cols = cols[(cols >= 0) & (cols < w)]
    cols = cols[top[cols] >= 0]
    neck_x = int(0.5 * (cols[np.argmax(top[cols])] + o.cx)) if len(cols) else o.cx
    neck_y = float(top[neck_x]) if top[neck_x] >= 0 else float(o.top_y)
    marks = {"neckline": (float(neck_x), neck_y)}
    for side, sign in (("right", -1), ("left", 1)):
        cols = np.arange(neck_x, int(neck_x + sign * COLLAR_COLUMNS * half), sign)
        cols = cols[(cols >= 0) & (cols < w)]
        cols = cols[top[cols] >= 0]
        if len(cols):
            c = int(cols[np.argmin(top[cols])])
            marks[f"{side}_collar"] = (float(c), float(top[c]))
    return marks


def _shoulder(o: _TorsoOutline, marks: dict, side: str, sleeved: bool, half: float) -> tuple[float, float]:
    """With a sleeve, the top outline just outside the armpit's column (the seam sits a little beyond the
    torso's side); without, the top of the strap or shoulder between the armpit and the collar."""
    w = o.m.shape[1]
    top = _top_profile(o.m)
    sign = -1 if side == "right" else 1
    ax, _ = marks[f"{side}_armpit"]
    if sleeved:
        sx = int(np.clip(ax + sign * SEAM_OUT * half, 0, w - 1))
    else:
        neck_x = marks["neckline"][0]
        lo, hi = sorted((int(ax), int(marks.get(f"{side}_collar", (neck_x, 0))[0])))
        cols = np.arange(lo, hi + 1)
        cols = cols[top[cols] >= 0]
        sx = int(cols[np.argmin(top[cols])]) if len(cols) else int(ax)
    col = np.flatnonzero(o.m[:, sx])
    return float(sx), float(col[0]) if len(col) else float(o.top_y)


def _sleeve(
    o: _TorsoOutline, marks: dict, side: str, line: np.ndarray
) -> tuple[np.ndarray, dict[str, tuple[float, float]]] | None:
    """The sleeve: garment beyond the seam (the shoulder's column above the shoulder, the straight line from
    shoulder to armpit, then the torso's side), in the piece that joins the shoulder; its end is the middle of
    the cuff, the pixels farthest from its root. None for a cap sleeve, a strap or a tie."""
    h, w = o.m.shape
    sign = -1 if side == "right" else 1
    ax, ay = marks[f"{side}_armpit"]
    shx, shy = marks[f"{side}_shoulder"]
    limit = np.full(h, shx)
    rows = np.arange(int(shy), int(ay))
    if len(rows):
        limit[rows] = shx + (rows - shy) / max(ay - shy, 1.0) * (ax - shx)
    rows = np.arange(int(ay), o.hem_y + 1)
    limit[rows] = np.where(np.isnan(line[rows]), ax, line[rows])
    limit[o.hem_y + 1 :] = limit[o.hem_y]
    region = o.m & ((np.arange(w)[None, :] - limit[:, None]) * sign > 0)
    n, cc = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    ry, rx = np.nonzero(cc)
    root = np.array([0.5 * (shx + ax), 0.5 * (shy + ay)])
    nearest = int(np.argmin(np.hypot(rx - root[0], ry - root[1])))
    sleeve = cc == cc[ry[nearest], rx[nearest]]
    sy, sx = np.nonzero(sleeve)
    # Distance from the sleeve's root, the segment from shoulder to armpit: the cuff is farthest from it, for a
    # long sleeve hanging down as for a short one sticking out.
    d = _distance_to_segment(sx, sy, (shx, shy), (ax, ay))
    if len(sx) < CAP_SLEEVE_SHARE * o.m.sum() or d.max() < CAP_SLEEVE_REACH * o.span:
        return None
    if len(sx) / d.max() < STRAP_WIDTH * o.torso_width:
        return None
    near = d > d.max() - CUFF_BAND * o.span
    end = (float(sx[near].mean()), float(sy[near].mean()))
    axis = np.array([end[0] - root[0], end[1] - root[1]])
    axis /= np.linalg.norm(axis) + 1e-9
    across = (sx[near] - end[0]) * -axis[1] + (sy[near] - end[1]) * axis[0]
    a = (float(sx[near][np.argmin(across)]), float(sy[near][np.argmin(across)]))
    b = (float(sx[near][np.argmax(across)]), float(sy[near][np.argmax(across)]))
    # The cuff's outer corner is the one on the shoulder's side of the sleeve (farther from the armpit).
    outer, inner = (a, b) if np.hypot(a[0] - ax, a[1] - ay) > np.hypot(b[0] - ax, b[1] - ay) else (b, a)
    return sleeve, {f"{side}_sleeve_end": end, f"{side}_cuff_outer": outer, f"{side}_cuff_inner": inner}


def _upper_landmarks(
    mask: np.ndarray, dress: bool = False
) -> tuple[dict[str, tuple[float, float]], dict[str, np.ndarray]]:
    """Neckline, collar corners, shoulders, armpits, sleeve ends (with cuff corners) and hem corners of a top,
    and its parts (boolean masks): "torso", and "right_sleeve" / "left_sleeve" where it has them.

    The torso is the run of garment through the vertical axis on each row; its lowest row is the hem (a long
    sleeve may hang lower beside it), its sides lead up to the armpits, and what lies outside them is sleeve.
    A dress's sides are walked up from its waist, the narrowest row of its upper half, not from the hem.
    """
    o = _torso_outline(mask > 0, dress)
    marks: dict[str, tuple[float, float]] = {}
    sleeved: dict[str, bool] = {}
    side_lines: dict[str, np.ndarray] = {}
    for side in ("right", "left"):
        marks[f"{side}_armpit"], sleeved[side], side_lines[side] = _armpit(o, side, dress)
    half = 0.5 * (marks["left_armpit"][0] - marks["right_armpit"][0])
    marks.update(_neckline_and_collar(o, half))
    for side in ("right", "left"):
        marks[f"{side}_shoulder"] = _shoulder(o, marks, side, sleeved[side], half)
    parts: dict[str, np.ndarray] = {}
    for side in ("right", "left"):
        found = _sleeve(o, marks, side, side_lines[side]) if sleeved[side] else None
        if found is not None:
            parts[f"{side}_sleeve"], sleeve_marks = found
            marks.update(sleeve_marks)
    hem_row = int(o.hem_y - HEM_CORNER_INSET * (o.hem_y - o.top_y))
    if not np.isnan(o.left[hem_row]):
        marks["right_hem"] = (float(o.left[hem_row]), float(hem_row))
        marks["left_hem"] = (float(o.right[hem_row]), float(hem_row))
    torso = o.m.copy()
    for sleeve in parts.values():
        torso &= ~sleeve
    parts["torso"] = torso
    return marks, parts


# The waistband of trousers or a skirt: the first row from the top whose run through the axis is this share of
# the widest run in the garment's top WAISTBAND_BAND (a curved or tabbed top edge is narrower).
WAISTBAND_FULL = 0.85
WAISTBAND_BAND = 0.1
# The crotch: the top of a concavity at least CROTCH_DEPTH of the garment's height deep, within CROTCH_OFF_AXIS
# of the waist's width of the axis and CROTCH_BELOW of the height under its top; wide legs laid against each other
# close the gap far below it (lower than CROTCH_ABOVE), and trousers have it at about CROTCH_PRIOR of their length.
CROTCH_DEPTH = 0.25
CROTCH_OFF_AXIS = 0.25
CROTCH_BELOW = 0.15
CROTCH_ABOVE = 0.5
CROTCH_PRIOR = 0.35
# Hems are read this share of the height above the lowest row (a rounded hem's last row is a few pixels).
HEM_INSET = 0.01


def _waistband(m: np.ndarray, top_y: int, height: int, cx: float) -> tuple[int, int, int]:
    """(row, left x, right x) of the waistband's run through the axis."""
    band = range(top_y, min(m.shape[0], top_y + max(2, int(WAISTBAND_BAND * height))))
    runs = [(y, _run_containing(m[y], int(cx))) for y in band]
    widest = max((r[1] - r[0] for _, r in runs if r is not None), default=0)
    for y, run in runs:
        if run is not None and run[1] - run[0] >= WAISTBAND_FULL * widest:
            return y, run[0], run[1]
    xs = np.flatnonzero(m.any(axis=0))
    return top_y, int(xs.min()), int(xs.max())


def _crotch(mask: np.ndarray, top_y: int, height: int, cx: float, waist_width: float) -> np.ndarray | None:
    """The top of the deep concavity between the legs, open towards the bottom; None for a skirt."""
    for point, depth in _convexity_defects(_main_contour(mask)):
        if (
            depth > CROTCH_DEPTH * height
            and abs(point[0] - cx) < CROTCH_OFF_AXIS * waist_width
            and point[1] > top_y + CROTCH_BELOW * height
        ):
            if point[1] >= top_y + CROTCH_ABOVE * height:
                return np.array([point[0], top_y + CROTCH_PRIOR * height])
            return point
    return None


def _leg_hems(m: np.ndarray, crotch_x: float, height: int, hem_row: int) -> dict[str, tuple[float, float]]:
    """Each trouser leg's hem corners: the ends of the bottom row on its side of the crotch."""
    marks = {}
    for side, sel in (("right", slice(0, int(crotch_x))), ("left", slice(int(crotch_x), m.shape[1]))):
        rows = np.flatnonzero(m[:, sel].any(axis=1))
        row = int(rows.max() - HEM_INSET * height) if len(rows) else hem_row
        xs_row = np.flatnonzero(m[row, sel]) + sel.start
        if len(xs_row):
            outer, inner = (xs_row[0], xs_row[-1]) if side == "right" else (xs_row[-1], xs_row[0])
            marks[f"{side}_hem_outer"] = (float(outer), float(row))
            marks[f"{side}_hem_inner"] = (float(inner), float(row))
    return marks


def _lower_landmarks(mask: np.ndarray) -> dict[str, tuple[float, float]]:
    """Waistband corners and centre, the crotch for trousers, and the hems (one per leg for trousers)."""
    m = mask > 0
    ys, xs = np.nonzero(m)
    top_y, bottom_y = int(ys.min()), int(ys.max())
    height = bottom_y - top_y + 1
    cx = float(np.median(xs))
    waist_row, wl, wr = _waistband(m, top_y, height, cx)
    marks: dict[str, tuple[float, float]] = {
        "right_waist": (float(wl), float(waist_row)),
        "left_waist": (float(wr), float(waist_row)),
        "waist_centre": (0.5 * (wl + wr), float(waist_row)),
    }
    hem_row = int(bottom_y - HEM_INSET * height)
    crotch = _crotch(mask, top_y, height, cx, wr - wl)
    if crotch is not None:
        marks["crotch"] = (float(crotch[0]), float(crotch[1]))
        marks.update(_leg_hems(m, float(crotch[0]), height, hem_row))
    else:
        run = _run_containing(m[hem_row], int(cx)) or (int(xs.min()), int(xs.max()))
        marks["right_hem"], marks["left_hem"] = (
            (float(run[0]), float(hem_row)),
            (float(run[1]), float(hem_row)),
        )
    return marks


def _dress_waist_row(mask: np.ndarray, marks: dict[str, tuple[float, float]]) -> float:
    """The narrowest row of the dress's torso between the armpits and the middle of the skirt."""
    m = mask > 0
    ys = np.flatnonzero(m.any(axis=1))
    top_y, bottom_y = ys.min(), ys.max()
    start = int(max(marks["right_armpit"][1], marks["left_armpit"][1]) + 0.05 * (bottom_y - top_y))
    stop = int(top_y + 0.6 * (bottom_y - top_y))
    cx = 0.5 * (marks["right_armpit"][0] + marks["left_armpit"][0])
    widths = []
    for y in range(start, max(stop, start + 1)):
        run = _run_containing(m[y], int(cx))
        widths.append(run[1] - run[0] if run else 1e9)
    return float(start + int(np.argmin(widths))) if widths else float(top_y + 0.4 * (bottom_y - top_y))


@dataclass
class GarmentAnalysis:
    """A product photo's garment: its mask, landmarks and parts (uint8 0/255 masks, together the garment)."""

    mask: np.ndarray
    landmarks: dict[str, tuple[float, float]]
    parts: dict[str, np.ndarray] = field(default_factory=dict)


def analyse_mask(mask: np.ndarray, category: str) -> GarmentAnalysis:
    """Landmarks and parts of a garment mask (uint8, 255 = garment) for a category.

    upper_body: neckline, {right,left}_collar, _shoulder, _armpit, _sleeve_end with _cuff_outer/_cuff_inner
    (when the garment has sleeves), right_hem, left_hem; parts "torso" and the sleeves found.
    lower_body: {right,left}_waist, waist_centre, then crotch with {right,left}_hem_outer/_hem_inner for
    trousers, or right_hem/left_hem for a skirt; one part, "torso".
    dresses: the upper-body set (hem corners at the dress's hem) plus {right,left}_waist at its narrowest row.
    `right_*` is the wearer's right, on the image's left.
    """
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    m = mask > 0
    if m.mean() < 0.001:
        raise NoPersonFound("no garment found: the garment mask is empty")
    if category == "lower_body":
        marks, parts = _lower_landmarks(mask), {"torso": m}
    else:
        marks, parts = _upper_landmarks(mask, dress=category == "dresses")
        if category == "dresses":
            wy = _dress_waist_row(mask, marks)
            cx = 0.5 * (marks["right_armpit"][0] + marks["left_armpit"][0])
            run = _run_containing(m[int(wy)], int(cx))
            if run is not None:
                marks["right_waist"], marks["left_waist"] = (float(run[0]), wy), (float(run[1]), wy)
    out_mask = m.astype(np.uint8) * 255
    return GarmentAnalysis(out_mask, marks, {k: v.astype(np.uint8) * 255 for k, v in parts.items()})


def garment_landmarks(mask: np.ndarray, category: str) -> dict[str, tuple[float, float]]:
    """Named landmarks (x, y) in the product photo's pixels, read off the garment mask's contour.

    See `analyse_mask` for the names per category.
    """
    return analyse_mask(mask, category).landmarks


def analyse_garment(image: np.ndarray, category: str, mask: np.ndarray | None = None) -> GarmentAnalysis:
    """Mask (computed unless given), landmarks and parts of the garment in a product photo."""
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    if mask is None:
        mask = garment_mask(image)
    elif mask.shape[:2] != image.shape[:2]:
        raise InvalidInput(
            f"the garment mask is {mask.shape[1]}x{mask.shape[0]} but the garment photo is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    mask = np.where(mask > 127, 255, 0).astype(np.uint8)
    if category == "lower_body":
        mask = _open_leg_gap(image, mask)
    return analyse_mask(mask, category)


def _open_leg_gap(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Trousers' mask with the top of the gap between the legs given back to the background.

    The legs' shadows on the backdrop close the gap below the crotch for the background's flood, so its top is
    taken for garment (and would land on the body as a white wedge between the legs): the background-coloured
    part of the mask that the gap's concavity reaches is removed.
    """
    marks = _lower_landmarks(mask)
    if "crotch" not in marks:
        return mask
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    h, w = mask.shape
    strip = _border_strip(h, w, max(2, round(0.01 * min(h, w))))
    background = np.median(lab[strip], axis=0)
    background_like = (mask > 0) & (np.linalg.norm(lab - background, axis=2) < GAP_COLOUR)
    cx, cy = (int(round(v)) for v in marks["crotch"])
    count, components = cv2.connectedComponents(background_like.astype(np.uint8), connectivity=8)
    reach = max(3, round(GAP_REACH * h))
    near = components[max(0, cy - reach) : cy + reach, max(0, cx - reach) : cx + reach]
    gap = np.unique(near[near > 0])
    return np.where(np.isin(components, gap), 0, mask).astype(np.uint8)
