"""What the embedded warp's plans share: garment pieces with their control points, the similarity that places a
product photo on the body, the body's torso sides, and the strips that carry sleeves and trouser legs.

A piece is carried onto the person either by a thin-plate spline through its control points or, for a sleeve or
a trouser leg, as a strip of cross-sections from its root to its end, each quad between two sections carried
by its own affine maps, so the strip bends with the limb and stays one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.warp.body import Body

# A garment laid flat is wider than the body it fits seen from the front: its flat width is half its
# circumference. Widths read off the product photo are divided by this to compare them with the body's.
FLAT_FACTOR = 1.25
# A garment counts as loose, and keeps its own width on the body, when its flat width is more than this many
# times the body's width there (a fitted top lies about 1.3-1.5 times as wide as the chest it fits).
LOOSE_FACTOR = 1.5


# A strip's cross-section: (garment outer, garment inner, body outer, body inner) points.
Section = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Piece:
    """One garment part and the control points that carry it onto the person."""

    part: str  # key of GarmentAnalysis.parts
    source: list[tuple[float, float]]
    target: list[tuple[float, float]]
    # Where on the person the part may land (its outline's targets in order); None: the targets' convex hull.
    outline: list[tuple[float, float]] | None = None
    # A sleeve or a trouser leg is drawn as a strip instead of by a spline: its cross-sections from its root to
    # its end; consecutive ones bound one piece of the strip.
    sections: list[Section] | None = None

    def add(self, source, target) -> None:
        self.source.append((float(source[0]), float(source[1])))
        self.target.append((float(target[0]), float(target[1])))


class Similarity:
    """Scale + rotation + translation taking the garment's axes to the body's: x -> across, y -> down.

    A garment laid flat shows its true length (and half its circumference): lengths scale like the widths it
    was scaled by, times `drape` where a plan stretches it (a top's hem snapped to the trousers).
    """

    def __init__(
        self,
        scale: float,
        garment_anchor,
        body_anchor,
        across: np.ndarray,
        down: np.ndarray,
        drape: float = 1.0,
    ):
        self.scale, self.drape = scale, drape
        self.g = np.asarray(garment_anchor, np.float64)
        self.b = np.asarray(body_anchor, np.float64)
        self.across, self.down = across, down

    def __call__(self, p) -> np.ndarray:
        d = (np.asarray(p, np.float64) - self.g) * self.scale
        return self.b + d[0] * self.across + self.drape * d[1] * self.down


def lerp(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def side_x(
    body: Body, y: float, centre_x: float, side: int, labels, exclude, prior_half: float, garment_half: float
) -> float:
    """x of the torso's side (side -1: image left, +1: image right) on row y.

    The label map's run through the axis, if it agrees with the prior within reason; a loose garment (its flat
    half-width over LOOSE_FACTOR beyond the body's) keeps its own width.
    """
    half = prior_half
    extent = body.row_extent(y, centre_x, labels, exclude)
    if extent is not None:
        measured = centre_x - extent[0] if side < 0 else extent[1] - centre_x
        if 0.5 * prior_half < measured < 1.6 * prior_half:
            half = measured
    half = max(half, garment_half / LOOSE_FACTOR)
    return centre_x + side * half


def axis_x(body: Body, anchor: np.ndarray, y: float) -> float:
    """x of the torso's axis on row y (the line from the shoulders' midpoint down the torso)."""
    d = body.down
    t = (y - anchor[1]) / d[1] if abs(d[1]) > 1e-6 else 0.0
    return float(anchor[0] + t * d[0])


def garment_half_at(part: np.ndarray, y: float) -> float:
    """Half the width of the garment part's row y (product-photo pixels)."""
    row = np.flatnonzero(part[int(np.clip(y, 0, part.shape[0] - 1))] > 0)
    if not len(row):
        return 0.0
    return 0.5 * float(row[-1] - row[0])


def garment_side_point(part: np.ndarray, y: float, side: int) -> tuple[float, float] | None:
    row = np.flatnonzero(part[int(np.clip(y, 0, part.shape[0] - 1))] > 0)
    if not len(row):
        return None
    return (float(row[0] if side < 0 else row[-1]), float(y))


def _splits(a: np.ndarray, c: np.ndarray, b: np.ndarray, d: np.ndarray) -> bool:
    """Whether the line through a and c has b and d on opposite sides (the diagonal ac lies inside abcd)."""

    def side(p: np.ndarray) -> float:
        return float((c[0] - a[0]) * (p[1] - a[1]) - (c[1] - a[1]) * (p[0] - a[0]))

    return side(b) * side(d) <= 0


def draw_strip(
    garment: np.ndarray,
    part: np.ndarray,
    sections: list[Section],
    out_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a garment part onto the body piece by piece between consecutive cross-sections: each quad is cut
    into two triangles, each carried by its own affine map. Neighbouring triangles share their edges and each
    is drawn a little grown, so the strip has no cracks; a fold (the inside of a bent elbow) only overlaps."""
    h, w = out_size
    out = np.zeros((h, w, 3), np.uint8)
    out_mask = np.zeros((h, w), bool)
    for (go0, gi0, bo0, bi0), (go1, gi1, bo1, bi1) in zip(sections, sections[1:], strict=False):
        # The quad is cut along the diagonal that lies inside it on the body: a bent arm makes the quad
        # concave, and the other diagonal would leave a sliver of it undrawn (a crack across the sleeve).
        if _splits(bo0, bi1, bo1, bi0):
            triangles = (((go0, go1, gi1), (bo0, bo1, bi1)), ((go0, gi1, gi0), (bo0, bi1, bi0)))
        else:
            triangles = (((go1, gi1, gi0), (bo1, bi1, bi0)), ((go1, gi0, go0), (bo1, bi0, bo0)))
        for g_tri, b_tri in triangles:
            b_tri = np.array(b_tri, np.float32)
            u, v = b_tri[1] - b_tri[0], b_tri[2] - b_tri[0]
            if abs(float(u[0] * v[1] - u[1] * v[0])) < 1.0:  # twice the area: a sliver draws nothing
                continue
            x0, y0 = np.floor(b_tri.min(0)).astype(int) - 3
            x1, y1 = np.ceil(b_tri.max(0)).astype(int) + 4
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if x1 <= x0 or y1 <= y0:
                continue
            local = b_tri - np.array([x0, y0], np.float32)
            m = cv2.getAffineTransform(local, np.array(g_tri, np.float32))
            size = (x1 - x0, y1 - y0)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            img = cv2.warpAffine(garment, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
            msk = cv2.warpAffine(part, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
            region = np.zeros((size[1], size[0]), np.uint8)
            cv2.fillConvexPoly(region, np.round(local).astype(np.int32), 1)
            cv2.polylines(region, [np.round(local).astype(np.int32)], True, 1, 3)
            landed = (region > 0) & (msk >= 128)
            out[y0:y1, x0:x1][landed] = img[landed]
            out_mask[y0:y1, x0:x1] |= landed
    return out, out_mask
