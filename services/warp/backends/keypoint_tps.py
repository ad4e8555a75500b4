"""The embedded warp backend: thin-plate splines from the garment's landmarks to the body's keypoints.

No network: the garment's landmarks (services.warp.garment) are paired with points on the body, measured from
the pose keypoints and the label map (services.warp.body), and a thin-plate spline per garment part carries the
product photo onto the person. The garment is placed by a similarity (scale and rotation) from its shoulders
to the body's, so its proportions stay where the body says nothing (neckline depth, length, sleeve length);
the body then sets what it constrains: the torso's width at the armpits, waist and hem from the label map,
the sleeves along the arms' polylines, the legs along the legs'. Sleeves are drawn on their own, over the
torso, so an arm bent across the body carries its sleeve in front: not by a spline (a long sleeve's few control
points let it tear at the elbow) but as a strip of cross-sections from the seam to the cuff, split at the
elbow, each piece between two sections carried by its own affine maps, so the sleeve stays one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.warp import tps
from services.warp.body import (
    ARM_RADIUS,
    ARMS,
    COAT,
    DRESS,
    GLOVE,
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    LEFT_SHOE,
    LEG_LABELS,
    PANTS,
    R_ANKLE,
    R_ELBOW,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    RIGHT_SHOE,
    SKIRT,
    TORSO_LABELS,
    UPPER_CLOTHES,
    Body,
    point_along,
    polyline_length,
)
from services.warp.category import classify_garment
from services.warp.garment import CATEGORIES, GarmentAnalysis, analyse_garment
from services.warp.types import CategoryGuess, WarpInputs, WarpOutput
from vton.runtime.errors import InvalidInput

# A garment laid flat is wider than the body it fits seen from the front: its flat width is half its
# circumference. Widths read off the product photo are divided by this to compare them with the body's.
FLAT_FACTOR = 1.25
# A garment counts as loose, and keeps its own width on the body, when its flat width is more than this many
# times the body's width there (a fitted top lies about 1.3-1.5 times as wide as the chest it fits).
LOOSE_FACTOR = 1.5
# The shoulder seam sits outside the shoulder joint (the keypoint) and above it, on the shoulder's surface;
# both as shares of the shoulder width.
SHOULDER_OUT = 0.06
SHOULDER_LIFT = 0.12
# How much shorter a garment hangs on the body than it lies flat, against its width (measured on VITON-HD
# pairs: 0.72-0.85 for trousers and skirts, whose product photos lie wider than they hang).
DRAPE = 0.8
# A top keeps its product photo's length against its shoulder width: shoulder seam to hem over seam to seam,
# laid flat, is what it is worn (a flat-laid top's shoulder seams are its real width across the shoulders).
TOP_DRAPE = 1.0
# A top whose hem lands at most this share of the torso's length above the old top's hem reaches down to it: a
# preview must not open a sliver of midriff for a garment that is meant to meet the trousers.
HEM_SNAP = 0.15
# A sleeve is a tube: laid flat it is about 1.4 times as wide as the arm in it seen from the front.
SLEEVE_FLAT_FACTOR = 1.4
# Where the armpit may sit below the shoulders, as shares of the torso's length (neck to hips).
ARMPIT_RANGE = (0.15, 0.55)
# A sleeve's seam ends at most this far below the shoulders (same shares): a torso whose armpit the label map
# puts lower (a loose top, arms against the body) takes the sleeve's root over its side, not an elbow-deep seam.
SLEEVE_ROOT_MAX = 0.36


@dataclass
class Piece:
    """One garment part and the control points that carry it onto the person."""

    part: str  # key of GarmentAnalysis.parts
    source: list[tuple[float, float]]
    target: list[tuple[float, float]]
    # Where on the person the part may land (its outline's targets in order); None: the targets' convex hull.
    outline: list[tuple[float, float]] | None = None
    # A sleeve is drawn as a strip instead of by a spline: its cross-sections from the seam to the cuff, each
    # (garment outer, garment inner, body outer, body inner); consecutive ones bound one piece of the strip.
    sections: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None = None

    def add(self, source, target) -> None:
        self.source.append((float(source[0]), float(source[1])))
        self.target.append((float(target[0]), float(target[1])))


class Similarity:
    """Scale + rotation + translation taking the garment's axes to the body's: x -> across, y -> down.

    Lengths shrink by DRAPE against widths: a worn garment follows the chest's curve and gathers at the waist.
    """

    def __init__(
        self,
        scale: float,
        garment_anchor,
        body_anchor,
        across: np.ndarray,
        down: np.ndarray,
        drape: float = DRAPE,
    ):
        self.scale, self.drape = scale, drape
        self.g = np.asarray(garment_anchor, np.float64)
        self.b = np.asarray(body_anchor, np.float64)
        self.across, self.down = across, down

    def __call__(self, p) -> np.ndarray:
        d = (np.asarray(p, np.float64) - self.g) * self.scale
        return self.b + d[0] * self.across + self.drape * d[1] * self.down


def _lerp(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def _side_x(
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


def _axis_x(body: Body, anchor: np.ndarray, y: float) -> float:
    """x of the torso's axis on row y (the line from the shoulders' midpoint down the torso)."""
    d = body.down
    t = (y - anchor[1]) / d[1] if abs(d[1]) > 1e-6 else 0.0
    return float(anchor[0] + t * d[0])


def _garment_half_at(part: np.ndarray, y: float) -> float:
    """Half the width of the garment part's row y (product-photo pixels)."""
    row = np.flatnonzero(part[int(np.clip(y, 0, part.shape[0] - 1))] > 0)
    if not len(row):
        return 0.0
    return 0.5 * float(row[-1] - row[0])


def _garment_side_point(part: np.ndarray, y: float, side: int) -> tuple[float, float] | None:
    row = np.flatnonzero(part[int(np.clip(y, 0, part.shape[0] - 1))] > 0)
    if not len(row):
        return None
    return (float(row[0] if side < 0 else row[-1]), float(y))


def _extended(limb: list[np.ndarray], ratio: float) -> list[np.ndarray]:
    """A limb seen only to its middle joint (the wrist or ankle out of the frame) goes on straight, `ratio` of
    its first segment further."""
    if len(limb) == 2:
        return [limb[0], limb[1], limb[1] + ratio * (limb[1] - limb[0])]
    return limb


def _arc_position(polyline: list[np.ndarray], p: np.ndarray) -> float:
    """Arc length along the polyline of its point closest to p."""
    best, best_d, travelled = 0.0, np.inf, 0.0
    for a, b in zip(polyline, polyline[1:], strict=False):
        seg = b - a
        length = float(np.linalg.norm(seg))
        if length < 1e-6:
            continue
        t = float(np.clip(np.dot(p - a, seg) / (length * length), 0.0, 1.0))
        d = float(np.linalg.norm(a + t * seg - p))
        if d < best_d:
            best, best_d = travelled + t * length, d
        travelled += length
    return best


def _shoulder_top(body: Body, point: np.ndarray, sw: float) -> float:
    """y of the shoulder's upper surface above a point at the shoulder joint's height: the top of the clothes or
    arm in the label map there when it lies where a shoulder can be, else a fixed share of the shoulder width
    above the joint."""
    prior = float(point[1] - SHOULDER_LIFT * sw)
    top = body.column_top(point[0], point[1] - 0.35 * sw, point[1], TORSO_LABELS + ARMS)
    if top is not None and point[1] - 0.3 * sw < top < point[1] - 0.03 * sw:
        return top
    return prior


def _old_top_bottom(body: Body, anchor: np.ndarray, length: float, sw: float) -> float | None:
    """How far down the torso's axis from `anchor` (the shoulders) the top the person wears ends: the median
    over columns about the axis of the bottom of the top's run that starts at the chest. None without one."""
    h, w = body.labels.shape
    chest_y = anchor[1] + 0.3 * length
    stop = int(min(h, anchor[1] + 1.8 * length))
    bottoms = []
    for dx in np.linspace(-0.25 * sw, 0.25 * sw, 9):
        x = int(round(_axis_x(body, anchor, chest_y) + dx))
        if not 0 <= x < w or not 0 <= int(chest_y) < stop:
            continue
        column = np.isin(body.labels[int(chest_y) : stop, x], (UPPER_CLOTHES, COAT, DRESS))
        if not column[0]:
            continue
        gaps = np.flatnonzero(~column)
        bottoms.append(chest_y + (gaps[0] if len(gaps) else len(column)))
    if len(bottoms) < 3:
        return None
    return float((np.median(bottoms) - anchor[1]) / max(body.down[1], 0.5))


# A person's upper arm and forearm against the torso's length (neck to hips), for an arm the pose misses.
UPPER_ARM_SHARE, FOREARM_SHARE = 0.62, 0.55
# Where a long sleeve's elbow lies along its outer edge, shoulder seam to cuff, as a share (and its bounds).
SLEEVE_ELBOW_RANGE = (0.3, 0.7)
# A sleeve's cross-sections reach this much beyond the garment's edges (and the body's), so that the sleeve's
# bulges outside the straight strip still land; the garment's own mask cuts what lies outside it.
SECTION_MARGIN = 0.08
# Where the cuff's section lies along the sleeve's axis (root 0, end 1).
CUFF_INSET = 0.97


def _hanging_arm(body: Body, shoulder: int, side: int) -> list[np.ndarray]:
    """An arm that hangs from the shoulder along the body's side (side -1: image left): for a pose without
    the elbow, so that a sleeve still drops along the torso instead of sticking out as laid flat."""
    length, sw = body.torso_length, body.shoulder_width
    start = body.point(shoulder)
    elbow = start + UPPER_ARM_SHARE * length * body.down + side * 0.08 * sw * body.across
    wrist = elbow + FOREARM_SHARE * length * body.down + side * 0.03 * sw * body.across
    return [start, elbow, wrist]


def _arm_half_width(body: Body, centre: np.ndarray, normal: np.ndarray, prior: float) -> float:
    """Half the width of what the person wears on the arm at `centre`, read on the arm's outer side (`normal`)
    in the label map (the inner side may run into the torso); the prior where the map disagrees."""
    h, w = body.labels.shape
    steps = np.arange(0, int(2 * prior) + 1)
    pts = np.round(centre[None, :] + steps[:, None] * normal[None, :]).astype(int)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    if not inside[0]:
        return prior
    hit = np.zeros(len(steps), bool)
    hit[inside] = np.isin(body.labels[pts[inside, 1], pts[inside, 0]], ARMS + (UPPER_CLOTHES, COAT, GLOVE))
    if not hit[0]:
        return prior
    gaps = np.flatnonzero(~hit)
    measured = float(gaps[0]) if len(gaps) else float(steps[-1])
    return float(np.clip(measured + 0.1 * prior, prior, 1.6 * prior))


def _sleeve_run(part: np.ndarray, outer: np.ndarray, inner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sleeve's own edges on the line through a straight section (outer, inner) of the product photo.

    A long sleeve laid flat hangs away from the torso: the straight line from the armpit to the cuff runs
    through the background between them, which would land on the arm as a hole. The section is cut to the
    first and last sleeve pixels on its line (reaching a little beyond it for a bulging outline); the straight
    section stays where the line misses the sleeve.
    """
    d = inner - outer
    length = float(np.linalg.norm(d))
    if length < 2:
        return outer, inner
    ts = np.linspace(-0.25, 1.25, max(8, int(1.5 * length)))
    pts = np.round(outer[None, :] + ts[:, None] * d[None, :]).astype(int)
    h, w = part.shape
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    hit = np.zeros(len(ts), bool)
    hit[ok] = part[pts[ok, 1], pts[ok, 0]] > 0
    # The longest run of sleeve along the line, across gaps of a few pixels (a seam, a fold's shadow): specks of
    # the photo's background that the garment's mask kept beside the sleeve are not its edge.
    gap = max(2, len(ts) // 40)
    closed = cv2.morphologyEx(
        hit.astype(np.uint8).reshape(1, -1), cv2.MORPH_CLOSE, np.ones((1, gap), np.uint8)
    )
    closed = closed.ravel() > 0
    edges = np.diff(np.concatenate([[0], closed.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    if not len(starts):
        return outer, inner
    longest = int(np.argmax(stops - starts))
    lo, hi = int(starts[longest]), int(stops[longest])
    if ts[hi] - ts[lo] < 0.3:
        return outer, inner
    return outer + ts[lo] * d, outer + ts[hi] * d


def _sleeve_sections(
    analysis: GarmentAnalysis,
    body: Body,
    side: str,
    arm: list[np.ndarray],
    b_sh: np.ndarray,
    b_ap: np.ndarray,
    scale: float,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The sleeve's cross-sections, product photo and body, from the seam (shoulder to armpit) to the cuff.

    A long sleeve is split at its elbow, about half way along it, and the elbow's section lies across the
    person's elbow: the upper half then follows the upper arm and the lower half the forearm, and the two
    halves share that section, so the sleeve stays one piece however the arm bends.
    """
    g = analysis.landmarks
    sw = body.shoulder_width
    g_sh, g_ap = np.array(g[f"{side}_shoulder"]), np.array(g[f"{side}_armpit"])
    g_out_end, g_in_end = np.array(g[f"{side}_cuff_outer"]), np.array(g[f"{side}_cuff_inner"])
    g_length = float(np.linalg.norm(g_out_end - g_sh))
    sleeve_mask = analysis.parts[f"{side}_sleeve"]
    g_root, g_end = 0.5 * (g_sh + g_ap), 0.5 * (g_out_end + g_in_end)
    g_axis = (g_end - g_root) / max(float(np.linalg.norm(g_end - g_root)), 1e-6)
    g_normal = np.array([-g_axis[1], g_axis[0]])
    if np.dot(g_normal, g_sh - g_ap) < 0:
        g_normal = -g_normal

    reach = polyline_length(arm) + 0.05 * sw
    s_out, s_in = _arc_position(arm, b_sh), _arc_position(arm, b_ap)
    cuff_arc = min(reach, s_out + scale * g_length)
    inner_end = max(cuff_arc, s_in + 0.05 * sw)
    elbow_arc = float(np.linalg.norm(arm[1] - arm[0]))
    # Garment fractions (shoulder seam 0, cuff 1) of the sections; the body's arcs follow from them.
    fractions = [0.0, 0.5, 1.0]
    g_elbow = None
    if cuff_arc > elbow_arc + 0.1 * sw and elbow_arc > s_out:
        g_elbow = float(np.clip((elbow_arc - s_out) / max(scale * g_length, 1.0), *SLEEVE_ELBOW_RANGE))
        fractions = [0.0, 0.5 * g_elbow, g_elbow, 0.5 * (g_elbow + 1.0), 1.0]

    def body_arcs(f: float) -> tuple[float, float]:
        if g_elbow is None:
            return s_out + f * (cuff_arc - s_out), s_in + f * (inner_end - s_in)
        if f <= g_elbow:
            u = f / g_elbow
            return _lerp(s_out, elbow_arc, u), _lerp(s_in, max(elbow_arc, s_in), u)
        u = (f - g_elbow) / (1.0 - g_elbow)
        return _lerp(elbow_arc, cuff_arc, u), _lerp(max(elbow_arc, s_in), inner_end, u)

    root_half = 1.3 * ARM_RADIUS * sw
    cuff_width = scale * float(np.linalg.norm(g_out_end - g_in_end)) / SLEEVE_FLAT_FACTOR
    cuff_half = max(0.5 * cuff_width, 0.95 * ARM_RADIUS * sw)
    # One handedness for the whole arm, chosen so that the first section's outer side is the shoulder's: the
    # normal then turns with the arm and never flips from one section to the next.
    _, d0 = point_along(arm, s_out)
    hand = 1.0 if np.dot(np.array([-d0[1], d0[0]]), b_sh - b_ap) >= 0 else -1.0

    def normal_at(arc: float) -> tuple[np.ndarray, np.ndarray]:
        centre, direction = point_along(arm, arc)
        if g_elbow is not None and abs(arc - elbow_arc) < 1e-3 and len(arm) > 2:
            # Across the elbow: the bisector of the upper arm's and the forearm's directions.
            up = (arm[1] - arm[0]) / max(float(np.linalg.norm(arm[1] - arm[0])), 1e-6)
            fore = (arm[2] - arm[1]) / max(float(np.linalg.norm(arm[2] - arm[1])), 1e-6)
            direction = up + fore
            direction /= max(float(np.linalg.norm(direction)), 1e-6)
        return centre, hand * np.array([-direction[1], direction[0]])

    sections = [(g_sh, g_ap, np.asarray(b_sh, np.float64), np.asarray(b_ap, np.float64))]
    for f in fractions[1:]:
        # The sleeve's edges, straight from the seam's ends to the cuff's corners: a flat sleeve's outline
        # bulges little, and what it does bulge the sections' margin takes in (measured cross-sections run
        # into the torso where a hanging sleeve touches it).
        g_outer, g_inner = _lerp(g_sh, g_out_end, f), _lerp(g_ap, g_in_end, f)
        if f > 0.0:
            # Across the sleeve's axis (root to cuff), as wide as the straight section: a sleeve laid flat
            # hanging down has its seam along it, and sections between the seam and the cuff would turn
            # with it and run along the sleeve instead of across.
            # (The cuff's section a little inside the sleeve's end, where its run spans the whole sleeve; the
            # cuff's corners read off the outline sit where its pixels lie farthest from the root, which on a
            # wide short sleeve is one corner of its end, not across it.)
            centre = g_root + min(f, CUFF_INSET) * (g_end - g_root)
            half = 0.5 * float(np.linalg.norm(g_outer - g_inner))
            g_outer, g_inner = _sleeve_run(sleeve_mask, centre + g_normal * half, centre - g_normal * half)
        a_out, a_in = body_arcs(f)
        prior = float(_lerp(root_half, cuff_half, f))
        c_out, n_out = normal_at(a_out)
        c_in, n_in = normal_at(a_in)
        half = _arm_half_width(body, 0.5 * (c_out + c_in), n_out, prior)
        sections.append((g_outer, g_inner, c_out + n_out * half, c_in - n_in * half))
    widened = []
    for g_o, g_i, b_o, b_i in sections:
        g_d, b_d = SECTION_MARGIN * (g_o - g_i), SECTION_MARGIN * (b_o - b_i)
        widened.append((g_o + g_d, g_i - g_d, b_o + b_d, b_i - b_d))
    return widened


def _splits(a: np.ndarray, c: np.ndarray, b: np.ndarray, d: np.ndarray) -> bool:
    """Whether the line through a and c has b and d on opposite sides (the diagonal ac lies inside abcd)."""

    def side(p: np.ndarray) -> float:
        return float((c[0] - a[0]) * (p[1] - a[1]) - (c[1] - a[1]) * (p[0] - a[0]))

    return side(b) * side(d) <= 0


def _draw_strip(
    garment: np.ndarray,
    part: np.ndarray,
    sections: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
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


def _plan_upper(analysis: GarmentAnalysis, body: Body, dress: bool) -> list[Piece]:
    g = analysis.landmarks
    body.require(R_SHOULDER, L_SHOULDER, what="shoulders")
    sw = body.shoulder_width
    down, across = body.down, body.across
    length = body.torso_length
    b_rs = body.point(R_SHOULDER) - across * SHOULDER_OUT * sw
    b_ls = body.point(L_SHOULDER) + across * SHOULDER_OUT * sw
    b_rs[1], b_ls[1] = _shoulder_top(body, b_rs, sw), _shoulder_top(body, b_ls, sw)
    anchor_b = 0.5 * (b_rs + b_ls)
    anchor_g = 0.5 * (np.array(g["right_shoulder"]) + np.array(g["left_shoulder"]))
    sleeved = "right_sleeve_end" in g or "left_sleeve_end" in g
    capsules = body.limb_capsules(
        [(R_SHOULDER, R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW, L_WRIST)], ARM_RADIUS * sw
    )
    torso = analysis.parts["torso"]
    g_armpit_half = 0.5 * abs(g["left_armpit"][0] - g["right_armpit"][0])
    # The body's half-width at the armpits: the label map's, else about the shoulder keypoints' half distance.
    prior_half = 0.47 * sw
    if sleeved:
        g_width = abs(g["left_shoulder"][0] - g["right_shoulder"][0])
        scale = float(np.linalg.norm(b_ls - b_rs)) / max(g_width, 1.0)
    else:
        # Straps or a strapless top: its width at the armpits against the body's chest.
        armpit_y = anchor_b[1] + 0.3 * length
        x_axis = _axis_x(body, anchor_b, armpit_y)
        extent = body.row_extent(armpit_y, x_axis, TORSO_LABELS, capsules)
        chest_half = prior_half
        if extent is not None and 0.5 * prior_half < 0.5 * (extent[1] - extent[0]) < 1.6 * prior_half:
            chest_half = 0.5 * (extent[1] - extent[0])
        scale = chest_half * FLAT_FACTOR / max(g_armpit_half, 1.0)
    drape = TOP_DRAPE
    if "right_hem" in g and not dress:
        g_hem_y = 0.5 * (g["right_hem"][1] + g["left_hem"][1])
        natural = scale * TOP_DRAPE * (g_hem_y - anchor_g[1])
        old = _old_top_bottom(body, anchor_b, length, sw)
        if natural > 0 and old is not None and natural < old < natural + HEM_SNAP * length:
            drape = TOP_DRAPE * old / natural
    T = Similarity(scale, anchor_g, anchor_b, across, down, drape)

    piece = Piece("torso", [], [])
    targets: dict[str, np.ndarray] = {}
    # Neckline and collar: the garment's own shape, placed by the similarity.
    for name in ("neckline", "right_collar", "left_collar"):
        if name in g:
            targets[name] = T(g[name])
    if sleeved:
        targets["right_shoulder"], targets["left_shoulder"] = b_rs, b_ls
    else:
        targets["right_shoulder"], targets["left_shoulder"] = T(g["right_shoulder"]), T(g["left_shoulder"])

    def side_target(g_point, side: int, labels, y_range=None) -> np.ndarray:
        """The body's side at the height the similarity gives a garment point on its side."""
        p = T(g_point)
        y = float(p[1])
        if y_range is not None:
            y = float(np.clip(y, *y_range))
        cx = _axis_x(body, anchor_b, y)
        g_half = scale * _garment_half_at(torso, g_point[1])
        # The prior widens from the chest towards the hips by the hips' own keypoint spread.
        prior = prior_half
        hip = body.mid_hip
        if hip is not None and y > anchor_b[1] + 0.5 * length:
            hip_half = 0.8 * float(np.linalg.norm(body.point(L_HIP) - body.point(R_HIP)))
            t = float(np.clip((y - anchor_b[1] - 0.5 * length) / (0.5 * length), 0, 1))
            prior = (1 - t) * prior_half + t * max(hip_half, prior_half)
        x = _side_x(body, y, cx, side, labels, capsules, prior, g_half)
        return np.array([x, y])

    armpit_range = (anchor_b[1] + ARMPIT_RANGE[0] * length, anchor_b[1] + ARMPIT_RANGE[1] * length)
    for side, sign in (("right", -1), ("left", 1)):
        targets[f"{side}_armpit"] = side_target(g[f"{side}_armpit"], sign, TORSO_LABELS, armpit_range)
        if f"{side}_hem" in g:
            labels = TORSO_LABELS + LEG_LABELS
            targets[f"{side}_hem"] = side_target(g[f"{side}_hem"], sign, labels)
        if dress and f"{side}_waist" in g:
            targets[f"{side}_waist"] = side_target(g[f"{side}_waist"], sign, TORSO_LABELS)
    for name, target in targets.items():
        piece.add(g[name], target)

    # Points down each side between the armpit and the hem, so the torso follows the body's outline.
    if "right_hem" in g:
        for side, sign in (("right", -1), ("left", 1)):
            top_y, bottom_y = g[f"{side}_armpit"][1], g[f"{side}_hem"][1]
            for t in (0.33, 0.66):
                gp = _garment_side_point(torso, _lerp(top_y, bottom_y, t), sign)
                if gp is not None:
                    piece.add(gp, side_target(gp, sign, TORSO_LABELS + LEG_LABELS))
        # The axis at the hem keeps the centre under the neck.
        hem_mid = _lerp(g["right_hem"], g["left_hem"], 0.5)
        hem_target = _lerp(targets["right_hem"], targets["left_hem"], 0.5)
        piece.add(hem_mid, hem_target)
    pieces = [piece]

    # Sleeves along the arms.
    for side, arm_ids in (
        ("right", (R_SHOULDER, R_ELBOW, R_WRIST)),
        ("left", (L_SHOULDER, L_ELBOW, L_WRIST)),
    ):
        if f"{side}_sleeve_end" not in g or f"{side}_sleeve" not in analysis.parts:
            continue
        arm = body.limb(arm_ids)
        sleeve = Piece(f"{side}_sleeve", [], [])
        g_sh, g_ap = np.array(g[f"{side}_shoulder"]), np.array(g[f"{side}_armpit"])
        b_sh, b_ap = targets[f"{side}_shoulder"], targets[f"{side}_armpit"]
        # The seam from shoulder to armpit is shared with the torso, point for point, so that both sides of
        # it land on the same line.
        for t in (0.33, 0.67):
            piece.add(_lerp(g_sh, g_ap, t), _lerp(b_sh, b_ap, t))
        if len(arm) < 2:
            # No elbow in the pose: the arm is taken to hang from the shoulder along the body's side.
            arm = _hanging_arm(body, arm_ids[0], -1 if side == "right" else 1)
        b_root = np.array([b_ap[0], min(b_ap[1], anchor_b[1] + SLEEVE_ROOT_MAX * length)])
        sleeve.sections = _sleeve_sections(analysis, body, side, _extended(arm, 0.85), b_sh, b_root, scale)
        pieces.append(sleeve)
    return pieces


def _plan_lower(analysis: GarmentAnalysis, body: Body) -> list[Piece]:
    g = analysis.landmarks
    body.require(R_HIP, L_HIP, what="hips")
    length = body.torso_length
    hip = body.mid_hip
    hip_spread = float(np.linalg.norm(body.point(L_HIP) - body.point(R_HIP)))
    down, across = body.down, body.across
    sw = body.shoulder_width if body.has(R_SHOULDER, L_SHOULDER) else 1.6 * hip_spread
    capsules = body.limb_capsules(
        [(R_SHOULDER, R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW, L_WRIST)], ARM_RADIUS * sw
    )
    # The waistband: the top of the trousers or skirt the person wears, when it lies about where a waist is.
    waist_y = hip[1] - 0.15 * length
    top = body.column_top(hip[0], hip[1] - 0.45 * length, hip[1], (PANTS, SKIRT))
    if top is not None and top > hip[1] - 0.4 * length:
        waist_y = top
    waist_x = _axis_x(body, hip, waist_y)
    prior_half = 0.8 * hip_spread
    extent = body.row_extent(waist_y + 0.02 * length, waist_x, TORSO_LABELS, capsules)
    waist_half = prior_half
    if extent is not None and 0.5 * prior_half < 0.5 * (extent[1] - extent[0]) < 1.8 * prior_half:
        waist_half = 0.5 * (extent[1] - extent[0])
        waist_x = 0.5 * (extent[0] + extent[1])
    g_waist_half = 0.5 * abs(g["left_waist"][0] - g["right_waist"][0])
    scale = waist_half * FLAT_FACTOR / max(g_waist_half, 1.0)
    b_waist = np.array([waist_x, waist_y])
    T = Similarity(scale, g["waist_centre"], b_waist, across, down)

    piece = Piece("torso", [], [])
    piece.add(g["right_waist"], b_waist - across * waist_half)
    piece.add(g["left_waist"], b_waist + across * waist_half)
    piece.add(g["waist_centre"], b_waist)
    legs = {
        "right": body.limb((R_HIP, R_KNEE, R_ANKLE)),
        "left": body.limb((L_HIP, L_KNEE, L_ANKLE)),
    }
    if "crotch" in g:
        crotch = T(g["crotch"])
        piece.add(g["crotch"], np.array([_axis_x(body, hip, crotch[1]), crotch[1]]))
        for side, sign in (("right", -1), ("left", 1)):
            outer, inner = np.array(g[f"{side}_hem_outer"]), np.array(g[f"{side}_hem_inner"])
            g_mid = 0.5 * (outer + inner)
            leg = _extended(legs[side], 1.0)
            g_waist_side = np.array(g[f"{side}_waist"])
            knee_t = 0.5  # the knee sits about halfway down a full-length leg
            if len(leg) >= 2:
                # The leg's length down from the waist, along the hip-knee-ankle line.
                start = np.array([leg[0][0], waist_y])
                polyline = [start] + leg[1:]
                total = polyline_length(polyline)
                b_len = min(scale * float(g_mid[1] - g_waist_side[1]), total + 0.05 * length)
                centre, direction = point_along(polyline, b_len)
                knee_centre, knee_dir = point_along(polyline, knee_t * b_len)
            else:
                centre = T(g_mid)
                direction = down
                knee_centre, knee_dir = T(_lerp(g_waist_side, g_mid, knee_t)), down
            half = max(0.5 * scale * float(np.linalg.norm(outer - inner)) / FLAT_FACTOR, 0.25 * hip_spread)
            normal = np.array([-direction[1], direction[0]])
            if np.dot(normal, across) * sign < 0:
                normal = -normal
            piece.add(outer, centre + normal * half)
            piece.add(inner, centre - normal * half)
            # Knee level: the garment's leg at mid-length, around the body's leg.
            g_knee_y = _lerp(g_waist_side, g_mid, knee_t)[1]
            g_out_knee = _garment_side_point(analysis.parts["torso"], g_knee_y, sign)
            if g_out_knee is not None:
                k_normal = np.array([-knee_dir[1], knee_dir[0]])
                if np.dot(k_normal, across) * sign < 0:
                    k_normal = -k_normal
                k_half = _lerp(0.5 * waist_half, half, 0.5)
                piece.add(g_out_knee, knee_centre + k_normal * k_half)
    else:
        # A skirt: its hem keeps its flare, at least as wide as the legs under it.
        for side, sign in (("right", -1), ("left", 1)):
            p = T(g[f"{side}_hem"])
            cx = _axis_x(body, hip, p[1])
            g_half = 0.5 * abs(g["left_hem"][0] - g["right_hem"][0])
            x = _side_x(body, p[1], cx, sign, LEG_LABELS, capsules, prior_half, scale * g_half)
            piece.add(g[f"{side}_hem"], np.array([x, p[1]]))
            mid = _garment_side_point(
                analysis.parts["torso"], _lerp(g[f"{side}_waist"][1], g[f"{side}_hem"][1], 0.5), sign
            )
            if mid is not None:
                q = T(mid)
                x = _side_x(
                    body,
                    q[1],
                    _axis_x(body, hip, q[1]),
                    sign,
                    TORSO_LABELS + LEG_LABELS,
                    capsules,
                    prior_half,
                    scale * abs(mid[0] - g["waist_centre"][0]),
                )
                piece.add(mid, np.array([x, q[1]]))
    return [piece]


def _hull_region(points: list[tuple[float, float]], shape: tuple[int, int], margin: float) -> np.ndarray:
    """The convex hull of the target points, grown by `margin` pixels: where a piece may land."""
    region = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(np.array(points)).astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    k = max(3, int(2 * margin) | 1)
    return cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0


def _polygon_region(points: list[tuple[float, float]], shape: tuple[int, int], margin: float) -> np.ndarray:
    """The polygon through the points in order, grown by `margin` pixels."""
    region = np.zeros(shape, np.uint8)
    cv2.fillPoly(region, [np.round(np.array(points)).astype(np.int32)], 1)
    k = max(3, int(2 * margin) | 1)
    return cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0


def _arm_reach(body: Body, sw: float) -> np.ndarray:
    """Where an arm of this pose can lie: wide capsules along shoulder-elbow-wrist, carried on past the wrist
    by half the forearm for the hand. Everywhere when the pose has no elbow to go by."""
    h, w = body.labels.shape
    reach = np.zeros((h, w), np.uint8)
    radius = max(2, int(round(1.6 * ARM_RADIUS * sw)))
    for ids in ((R_SHOULDER, R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW, L_WRIST)):
        arm = body.limb(ids)
        if len(arm) < 2:
            return np.ones((h, w), bool)
        arm = _extended(arm, 0.85)
        arm = arm + [arm[-1] + 0.5 * (arm[-1] - arm[-2])]
        for a, b in zip(arm, arm[1:], strict=False):
            cv2.line(reach, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, 2 * radius)
    return reach > 0


class KeypointTPSWarp:
    """Warp without weights: garment landmarks -> body keypoints and parse regions, by thin-plate splines."""

    def __init__(self, grid_step: int = 8, regularization: float = 1e-3):
        self.grid_step = grid_step
        self.regularization = regularization

    def classify(self, garment: np.ndarray) -> CategoryGuess:
        return classify_garment(garment)  # the garment's silhouette (services/warp/category.py)

    def warp(self, inputs: WarpInputs) -> WarpOutput:
        if inputs.category not in CATEGORIES:
            raise InvalidInput(
                f"unknown category {inputs.category!r}; expected one of {', '.join(CATEGORIES)}"
            )
        h, w = inputs.person.shape[:2]
        for name in ("masked_person", "agnostic_mask", "labels"):
            arr = getattr(inputs, name)
            if arr.shape[:2] != (h, w):
                raise InvalidInput(f"{name} is {arr.shape[1]}x{arr.shape[0]} but the person is {w}x{h}")
        analysis = analyse_garment(inputs.garment, inputs.category, inputs.garment_mask)
        body = Body(np.asarray(inputs.keypoints, np.float32), inputs.labels)
        if inputs.category == "lower_body":
            pieces = _plan_lower(analysis, body)
        else:
            pieces = _plan_upper(analysis, body, dress=inputs.category == "dresses")

        sw = body.shoulder_width if body.has(R_SHOULDER, L_SHOULDER) else 0.25 * w
        out = np.zeros((h, w, 3), np.uint8)
        out_mask = np.zeros((h, w), bool)
        labels = inputs.labels
        arms = np.isin(labels, ARMS)
        # The garment's colours spread over its photo's background, for the sleeves' strips (tps.warp does the
        # same for the pieces it draws): its outermost pixels blend into that background.
        core = cv2.erode(analysis.mask, np.ones((3, 3), np.uint8), iterations=2)
        padded = tps.pad_colors(inputs.garment, core if core.any() else analysis.mask)
        sleeved = any(piece.sections is not None for piece in pieces)
        for piece in pieces:  # the torso first; sleeves are drawn over it
            part = analysis.parts[piece.part]
            if piece.part != "torso":
                # Specks of the photo's background that the garment's mask joined to the sleeve's outline would
                # land on the arm as white flecks: an opening a little wider than they are drops them.
                k = max(3, int(0.015 * max(part.shape)) | 1)
                part = cv2.morphologyEx(
                    part, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
                )
                # Sleeves reach a few pixels into the torso, under which they close the seam.
                grown = cv2.dilate(part, np.ones((7, 7), np.uint8))
                part = np.where(analysis.mask > 0, grown, 0).astype(np.uint8)
            if piece.sections is not None:
                warped, landed = _draw_strip(padded, part, piece.sections, (h, w))
                out[landed] = warped[landed]
                out_mask |= landed
                continue
            warped, mask = tps.warp(
                inputs.garment,
                part,
                np.array(piece.source),
                np.array(piece.target),
                (h, w),
                self.grid_step,
                self.regularization,
            )
            if piece.outline is not None:
                allowed = _polygon_region(piece.outline, (h, w), 0.04 * sw)
            else:
                allowed = _hull_region(piece.target, (h, w), 0.12 * sw)
            landed = (mask > 0) & allowed
            if piece.part == "torso" and inputs.category != "lower_body":
                # An arm lying over the torso stays in front of the garment's body (not of its sleeves). Under
                # a sleeved garment only where an arm can be, along the arm's keypoints: "arm" far from them is
                # a skin-coloured garment the parser took for skin, and the new garment covers it.
                landed &= ~(arms & _arm_reach(body, sw)) if sleeved else ~arms
            out[landed] = warped[landed]
            out_mask |= landed

        # What is always in front of the garment: the head and hair; for trousers and skirts also the arms,
        # hands, the top worn over them and the shoes.
        in_front = np.isin(labels, HEAD + (GLOVE,))
        if inputs.category == "lower_body":
            in_front |= np.isin(labels, ARMS + (UPPER_CLOTHES, COAT, DRESS, LEFT_SHOE, RIGHT_SHOE))
        out_mask &= ~in_front
        out_mask &= inputs.agnostic_mask > 127
        out[~out_mask] = 0
        return WarpOutput(
            warped_garment=out,
            warped_mask=out_mask.astype(np.uint8) * 255,
            garment_mask=analysis.mask,
            landmarks=analysis.landmarks,
        )
