"""The garment's category from its product photo: upper_body, lower_body or dresses, read off its silhouette.

Three measurements of the garment's mask, each a property a shop assistant would name (`Silhouette`):

- `leg_split`: trousers, shorts and dungarees have two legs below a crotch. It is the share of the garment's height,
  from the hem up, over which a gap near the vertical axis separates two legs, provided the gap opens from a
  narrow crotch (sleeves hanging below a short top's hem leave a gap as wide as the torso).
- `waistband`: skirts (and trousers) start at a straight waistband; tops and dresses at a neckline, straps or
  shoulders. It is the product of three shares, each 1 for a waistband: how much of the width just below the top
  the topmost rows cover (shoulders sloping into sleeves, straps and necklines cover little), how convex the top
  third is (area over its convex hull's: straps, necklines and armholes cut into it) and how much of the top's
  width the garment keeps further down (sleeves stick out above a narrower torso; hips never narrow a skirt).
- `elongation`: a dress is long for its width. It is the geometric mean of the box's height-to-width ratio and
  the height over the torso's width at mid-height (sleeves spread out or hanging apart count in the first, not
  in the second; a sleeve that lies against the torso widens it, which makes the garment read shorter: the safe
  side for a top).

The decision is a soft tree: two legs or a waistband say lower_body, else a long garment is a dress, else a top.
Each test is a logistic step around a threshold (`Step`), so a garment near a threshold gets split scores and a low
confidence rather than a confident wrong answer.

How the thresholds were set (`vton bench --category` measures all this again and refits the fitted ones): on the
53 labelled garments of the shared test photos (29) and the openvto wheel (24), the legs and the dress length are
each fitted as the midpoint of the gap between the classes they separate, with a width of half the gap, so that
the garment nearest a threshold scores about 0.88 on its side. The waistband cannot be fitted
there (no skirt among them); its threshold lies between what tops and dresses measured and what trousers' tops
(the same waistband) measured.

What it cannot tell: a strapless dress or a tube top starts at a straight edge like a skirt (read as lower_body); a
long tank top is as long for its width as a short dress; a sleeveless top cut as a plain rectangle has the outline
of a skirt; a garment folded, on a hanger at an angle or worn by a person is not a product silhouette.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from services.warp.garment import garment_mask
from services.warp.types import CategoryGuess, Silhouette
from vton.runtime.errors import NoPersonFound
from vton.runtime.vocab import Category

# The mask is measured at this size (its box's longest side): the silhouette needs no more, and it bounds the time.
_SIDE = 256

# Legs. A gap counts as the one between the legs when it lies within this share of the width from the axis and the
# runs either side are each at least this share of the width wide (not a strap or a fringe).
_AXIS_BAND = 0.15
_MIN_LEG = 0.08
# A few rows without a gap (a knee touching the other leg, mask noise) do not end the split: this share of the height.
_GAP_TOLERANCE = 0.03
# The crotch: over the top tenth of the gap's rows, the gap is at most this share of the width wide (median).
# Trousers measured 0.02 to 0.09; sleeves below a short top's hem 0.5 and more.
_CROTCH_ROWS = 0.1
_MAX_CROTCH = 0.3

# Waistband. The top rows: from the garment's top (the 10th percentile of the columns' first rows, so that a label
# or a belt loop sticking up does not move it) down these shares of the height; "just below": these. The top part
# whose convexity counts, and the rows whose narrowest width is compared with the top's widest.
_TOP_ROWS = (0.005, 0.035)
_BELOW_ROWS = (0.09, 0.14)
_TOP_PART = 0.35
_SHOULDER_ROWS = 0.15

# Elongation: the torso's width is the median over these rows (share of the height) of the run through the axis.
_TORSO_ROWS = (0.4, 0.6)


@dataclass(frozen=True)
class Step:
    """A logistic step: 0.5 at `threshold`, about 0.88 one `width` above it (and 0.12 one below)."""

    threshold: float
    width: float

    def __call__(self, value: float) -> float:
        return 1.0 / (1.0 + math.exp(-(value - self.threshold) / (self.width / 2.0)))


@dataclass(frozen=True)
class Thresholds:
    legs: Step
    waistband: Step
    dress: Step


THRESHOLDS = Thresholds(
    # Fitted: lower garments measured 0.33 (wide trousers whose legs touch down to the knee) to 0.76; tops and
    # dresses at most 0.15 (a layered ruffle hem).
    legs=Step(threshold=0.24, width=0.09),
    # Set: trousers' tops measured 0.75 to 0.88 (two with a speck of background stuck to the waistband 0.49 and
    # 0.56, dungarees 0.28); tops and dresses at most 0.62 (a long-sleeved top with its sleeves along its sides).
    waistband=Step(threshold=0.69, width=0.065),
    # Fitted: dresses measured 2.23 to 3.16; tops at most 1.80 (a long T-shirt, a camisole).
    dress=Step(threshold=2.015, width=0.215),
)


def _runs(row: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) column of each run of garment pixels in a row."""
    xs = np.flatnonzero(row)
    if not len(xs):
        return []
    breaks = np.flatnonzero(np.diff(xs) > 1)
    starts = np.concatenate([[xs[0]], xs[breaks + 1]])
    ends = np.concatenate([xs[breaks], [xs[-1]]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _normalised(mask: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """The mask cropped to the garment's box and scaled so that its longest side is _SIDE pixels."""
    ys, xs = np.nonzero(mask > 127)
    if not len(xs):
        raise NoPersonFound("no garment found: the garment mask is empty")
    box = (mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] > 127).astype(np.uint8) * 255
    h, w = box.shape
    scale = _SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(box, size, interpolation=cv2.INTER_AREA) > 127


def _leg_split(m: NDArray[np.bool_]) -> float:
    h, w = m.shape
    cx = 0.5 * (w - 1)
    gap = np.zeros(h)  # the width of the gap between the legs on each row, 0 where there is none
    for y in range(h):
        runs = _runs(m[y])
        for (a0, a1), (b0, b1) in zip(runs, runs[1:], strict=False):
            near_axis = a1 < cx + _AXIS_BAND * w and b0 > cx - _AXIS_BAND * w
            if near_axis and min(a1 - a0, b1 - b0) >= _MIN_LEG * w:
                gap[y] = b0 - a1 - 1
                break
    top, missed = h, 0
    for y in range(h - 1, -1, -1):
        if gap[y] > 0:
            top, missed = y, 0
        else:
            missed += 1
            if missed > _GAP_TOLERANCE * h:
                break
    if top == h:
        return 0.0
    start = gap[top : top + max(1, int(_CROTCH_ROWS * (h - top)))]
    if np.median(start[start > 0]) > _MAX_CROTCH * w:
        return 0.0
    return (h - top) / h


def _waistband(m: NDArray[np.bool_]) -> float:
    h, w = m.shape
    top = int(np.percentile(np.argmax(m, axis=0)[m.any(axis=0)], 10))
    widths = m.sum(axis=1).astype(np.float64)

    def rows(shares: tuple[float, float]) -> slice:
        y0 = min(h - 1, top + int(shares[0] * h))
        return slice(y0, min(h, max(y0 + 1, top + int(shares[1] * h))))

    covered = widths[rows(_TOP_ROWS)].mean() / max(widths[rows(_BELOW_ROWS)].mean(), 1.0)

    part = m[: max(1, top + int(_TOP_PART * h))].astype(np.uint8)
    contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.contourArea(cv2.convexHull(np.vstack(contours))) if contours else 0.0
    convex = sum(cv2.contourArea(c) for c in contours) / max(hull, 1.0)

    cols = np.arange(w)[None, :]
    spans = np.where(m, cols, -1).max(axis=1) - np.where(m, cols, w).min(axis=1) + 1  # <= 0 on empty rows
    shoulders = spans[rows((0.0, _SHOULDER_ROWS))].max()
    below = spans[rows((_SHOULDER_ROWS, _TOP_PART))]
    kept = min(1.0, max(float(below.min()), 0.0) / max(float(shoulders), 1.0))
    return float(covered * convex * kept)


def _elongation(m: NDArray[np.bool_]) -> float:
    h, w = m.shape
    cx = (w - 1) // 2
    widths = []
    for y in range(int(_TORSO_ROWS[0] * h), int(_TORSO_ROWS[1] * h)):
        runs = _runs(m[y])
        through = [b - a + 1 for a, b in runs if a <= cx <= b]
        # No run through the axis (between two legs): the row's whole span.
        widths.append(through[0] if through else (runs[-1][1] - runs[0][0] + 1 if runs else 0))
    torso = max(float(np.median(widths)), 1.0)
    return math.sqrt((h / w) * (h / torso))


def silhouette(mask: NDArray[np.uint8]) -> Silhouette:
    """The measurements of a garment mask (uint8, 255 = garment) that decide its category."""
    m = _normalised(mask)
    return Silhouette(leg_split=_leg_split(m), waistband=_waistband(m), elongation=_elongation(m))


def guess_from(features: Silhouette, thresholds: Thresholds = THRESHOLDS) -> CategoryGuess:
    """The soft decision tree over a garment's measurements (see the module's docstring)."""
    not_lower = (1.0 - thresholds.legs(features.leg_split)) * (1.0 - thresholds.waistband(features.waistband))
    long = thresholds.dress(features.elongation)
    scores = {
        Category.UPPER_BODY: not_lower * (1.0 - long),
        Category.LOWER_BODY: 1.0 - not_lower,
        Category.DRESSES: not_lower * long,
    }
    best = max(scores, key=scores.__getitem__)
    return CategoryGuess(category=best, confidence=scores[best], scores=scores, features=features)


def classify_mask(mask: NDArray[np.uint8]) -> CategoryGuess:
    """The category of the garment a mask (uint8 [h, w], 255 = garment) outlines."""
    return guess_from(silhouette(mask))


def classify_garment(image: NDArray[np.uint8]) -> CategoryGuess:
    """The category of the garment in a product photo (uint8 RGB [h, w, 3] on a plain background).

    Raises InvalidInput for an array that is not an RGB image and NoPersonFound when no garment stands out from
    its background (both from the stage's garment mask).
    """
    return classify_mask(garment_mask(image))
