"""The embedded warp backend: thin-plate splines from the garment's landmarks to the body's keypoints.

No network: the garment's landmarks (services.warp.garment) are paired with points on the body, measured from
the pose keypoints and the label map (services.warp.body), and a thin-plate spline per garment part carries the
product photo onto the person. The garment is placed by a similarity (scale and rotation) from its shoulders
to the body's, so its proportions stay where the body says nothing (neckline depth, length, sleeve length);
the body then sets what it constrains: the torso's width at the armpits, waist and hem from the label map,
the sleeves along the arms' polylines, the legs along the legs'. Sleeves are warped on their own and drawn over
the torso, so an arm bent across the body carries its sleeve in front.
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
from services.warp.garment import CATEGORIES, GarmentAnalysis, analyse_garment
from services.warp.types import WarpInputs, WarpOutput
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


@dataclass
class Piece:
    """One garment part and the control points that carry it onto the person."""

    part: str  # key of GarmentAnalysis.parts
    source: list[tuple[float, float]]
    target: list[tuple[float, float]]
    # Where on the person the part may land (its outline's targets in order); None: the targets' convex hull.
    outline: list[tuple[float, float]] | None = None

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


def _cross_section(
    part: np.ndarray, root: np.ndarray, end: np.ndarray, t: float, outward: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The sleeve's two edges across its axis at fraction t from root to end: (outer, inner) points.

    Outer is the edge on the `outward` side (the shoulder's side of the sleeve).
    """
    axis = end - root
    length = float(np.linalg.norm(axis))
    if length < 1:
        return None
    direction = axis / length
    normal = np.array([-direction[1], direction[0]])
    if np.dot(normal, outward) < 0:
        normal = -normal
    centre = root + t * axis
    h, w = part.shape
    steps = np.arange(-length, length + 1)
    pts = np.round(centre[None, :] + steps[:, None] * normal[None, :]).astype(int)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    hit = np.zeros(len(steps), bool)
    hit[inside] = part[pts[inside, 1], pts[inside, 0]] > 0
    zero = len(steps) // 2
    if not hit[zero]:
        near = np.flatnonzero(hit)
        if not len(near):
            return None
        zero = int(near[np.argmin(abs(near - zero))])
    gaps_before, gaps_after = np.flatnonzero(~hit[:zero]), np.flatnonzero(~hit[zero:])
    lo = int(gaps_before[-1]) + 1 if len(gaps_before) else 0
    hi = zero + int(gaps_after[0]) - 1 if len(gaps_after) else len(steps) - 1
    return centre + steps[hi] * normal, centre + steps[lo] * normal


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
        g_out, g_in = np.array(g[f"{side}_cuff_outer"]), np.array(g[f"{side}_cuff_inner"])
        b_sh, b_ap = targets[f"{side}_shoulder"], targets[f"{side}_armpit"]
        # The seam from shoulder to armpit is shared with the torso, point for point, so that both sides of
        # it land on the same line.
        for t in (0.0, 0.33, 0.67, 1.0):
            sleeve.add(_lerp(g_sh, g_ap, t), _lerp(b_sh, b_ap, t))
            if 0 < t < 1:
                piece.add(_lerp(g_sh, g_ap, t), _lerp(b_sh, b_ap, t))
        if len(arm) < 2:
            # No elbow in the pose: the sleeve keeps its shape from the product photo.
            for p in (g_out, g_in, g[f"{side}_sleeve_end"]):
                sleeve.add(p, T(p))
            pieces.append(sleeve)
            continue
        arm = _extended(arm, 0.85)
        # The sleeve hangs along the arm: its outer edge from the shoulder seam's top down the arm's outer
        # side, its inner edge from the armpit down the inner side, both to the cuff, which lies across the
        # arm as far down as the sleeve's outer edge is long (scaled). Widths are the arm's: a flat sleeve's
        # width near the armhole says how the seam wraps the shoulder, not how wide the sleeve looks.
        g_out_end, g_in_end = np.array(g[f"{side}_cuff_outer"]), np.array(g[f"{side}_cuff_inner"])
        reach = polyline_length(arm) + 0.05 * sw
        s_out, s_in = _arc_position(arm, b_sh), _arc_position(arm, b_ap)
        cuff_arc = min(reach, s_out + scale * float(np.linalg.norm(g_out_end - g_sh)))
        inner_end = max(cuff_arc, s_in + 0.05 * sw)
        root_half = 1.25 * ARM_RADIUS * sw
        cuff_width = scale * float(np.linalg.norm(g_out_end - g_in_end)) / SLEEVE_FLAT_FACTOR
        cuff_half = max(0.5 * cuff_width, 0.9 * ARM_RADIUS * sw)
        outer_edge, inner_edge = [tuple(b_sh)], [tuple(b_ap)]
        g_root, g_end = 0.5 * (g_sh + g_ap), np.array(g[f"{side}_sleeve_end"])
        sleeve_mask = analysis.parts[f"{side}_sleeve"]
        for t in (0.33, 0.66, 1.0):
            half = float(_lerp(root_half, cuff_half, t))
            c_out, d_out = point_along(arm, s_out + t * (cuff_arc - s_out))
            c_in, d_in = point_along(arm, s_in + t * (inner_end - s_in))
            # The garment's points: the sleeve's outline across its axis (the cuff's corners at the end).
            section = None if t == 1.0 else _cross_section(sleeve_mask, g_root, g_end, t, g_sh - g_ap)
            g_outer, g_inner = (
                section if section is not None else (_lerp(g_sh, g_out_end, t), _lerp(g_ap, g_in_end, t))
            )
            edges = (
                (c_out, d_out, g_outer, 1, outer_edge),
                (c_in, d_in, g_inner, -1, inner_edge),
            )
            for centre, direction, g_point, sign, edge in edges:
                normal = np.array([-direction[1], direction[0]])
                # The outer edge lies on the shoulder's side of the arm line.
                if np.dot(normal, b_sh - b_ap) < 0:
                    normal = -normal
                target = centre + sign * normal * half
                sleeve.add(g_point, target)
                edge.append(tuple(target))
        # The sleeve lands only inside its own outline: seam, outer edge, cuff, inner edge. Beyond it the
        # spline extrapolates and may fold other parts of the sleeve onto the torso.
        sleeve.outline = outer_edge + inner_edge[::-1]
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


class KeypointTPSWarp:
    """Warp without weights: garment landmarks -> body keypoints and parse regions, by thin-plate splines."""

    def __init__(self, grid_step: int = 8, regularization: float = 1e-3):
        self.grid_step = grid_step
        self.regularization = regularization

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
        for piece in pieces:  # the torso first; sleeves are drawn over it
            part = analysis.parts[piece.part]
            if piece.part != "torso":
                # Sleeves reach a few pixels into the torso, under which they close the seam.
                grown = cv2.dilate(part, np.ones((7, 7), np.uint8))
                part = np.where(analysis.mask > 0, grown, 0).astype(np.uint8)
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
                # An arm lying over the torso stays in front of the garment's body (not of its sleeves).
                landed &= ~arms
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
