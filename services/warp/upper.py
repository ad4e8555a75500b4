"""Where a top or a dress lands: its torso by a thin-plate spline from the garment's landmarks to the body's
shoulders, armpits, sides and hem, its sleeves as strips along the arms."""

from __future__ import annotations

import numpy as np

from services.warp.body import ARM_RADIUS, ARMS, LEG_LABELS, TORSO_LABELS, Body, extended
from services.warp.garment import GarmentAnalysis
from services.warp.placement import (
    FLAT_FACTOR,
    Piece,
    Similarity,
    axis_x,
    garment_half_at,
    garment_side_point,
    lerp,
    side_x,
)
from services.warp.sleeves import hanging_arm, sleeve_sections
from vton.runtime.vocab import Keypoint, Lip

# The shoulder seam sits outside the shoulder joint (the keypoint) and above it, on the shoulder's surface;
# both as shares of the shoulder width.
SHOULDER_OUT = 0.06
SHOULDER_LIFT = 0.12
# A top whose hem lands at most this share of the torso's length above the old top's hem reaches down to it: a
# preview must not open a sliver of midriff for a garment that is meant to meet the trousers.
HEM_SNAP = 0.15
# Where the armpit may sit below the shoulders, as shares of the torso's length (neck to hips).
ARMPIT_RANGE = (0.15, 0.55)
# A sleeve's seam ends at most this far below the shoulders (same shares): a torso whose armpit the label map
# puts lower (a loose top, arms against the body) takes the sleeve's root over its side, not an elbow-deep seam.
SLEEVE_ROOT_MAX = 0.36


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
        x = int(round(axis_x(body, anchor, chest_y) + dx))
        if not 0 <= x < w or not 0 <= int(chest_y) < stop:
            continue
        column = np.isin(body.labels[int(chest_y) : stop, x], (Lip.UPPER_CLOTHES, Lip.COAT, Lip.DRESS))
        if not column[0]:
            continue
        gaps = np.flatnonzero(~column)
        bottoms.append(chest_y + (gaps[0] if len(gaps) else len(column)))
    if len(bottoms) < 3:
        return None
    return float((np.median(bottoms) - anchor[1]) / max(body.down[1], 0.5))


def plan_upper(analysis: GarmentAnalysis, body: Body, dress: bool) -> list[Piece]:
    g = analysis.landmarks
    body.require(Keypoint.R_SHOULDER, Keypoint.L_SHOULDER, what="shoulders")
    sw = body.shoulder_width
    down, across = body.down, body.across
    length = body.torso_length
    b_rs = body.point(Keypoint.R_SHOULDER) - across * SHOULDER_OUT * sw
    b_ls = body.point(Keypoint.L_SHOULDER) + across * SHOULDER_OUT * sw
    b_rs[1], b_ls[1] = _shoulder_top(body, b_rs, sw), _shoulder_top(body, b_ls, sw)
    anchor_b = 0.5 * (b_rs + b_ls)
    anchor_g = 0.5 * (np.array(g["right_shoulder"]) + np.array(g["left_shoulder"]))
    sleeved = "right_sleeve_end" in g or "left_sleeve_end" in g
    capsules = body.limb_capsules(
        [
            (Keypoint.R_SHOULDER, Keypoint.R_ELBOW, Keypoint.R_WRIST),
            (Keypoint.L_SHOULDER, Keypoint.L_ELBOW, Keypoint.L_WRIST),
        ],
        ARM_RADIUS * sw,
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
        x_axis = axis_x(body, anchor_b, armpit_y)
        extent = body.row_extent(armpit_y, x_axis, TORSO_LABELS, capsules)
        chest_half = prior_half
        if extent is not None and 0.5 * prior_half < 0.5 * (extent[1] - extent[0]) < 1.6 * prior_half:
            chest_half = 0.5 * (extent[1] - extent[0])
        scale = chest_half * FLAT_FACTOR / max(g_armpit_half, 1.0)
    drape = 1.0
    if "right_hem" in g and not dress:
        g_hem_y = 0.5 * (g["right_hem"][1] + g["left_hem"][1])
        natural = scale * (g_hem_y - anchor_g[1])
        old = _old_top_bottom(body, anchor_b, length, sw)
        if natural > 0 and old is not None and natural < old < natural + HEM_SNAP * length:
            drape = old / natural
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
        cx = axis_x(body, anchor_b, y)
        g_half = scale * garment_half_at(torso, g_point[1])
        # The prior widens from the chest towards the hips by the hips' own keypoint spread.
        prior = prior_half
        hip = body.mid_hip
        if hip is not None and y > anchor_b[1] + 0.5 * length:
            hip_half = 0.8 * float(np.linalg.norm(body.point(Keypoint.L_HIP) - body.point(Keypoint.R_HIP)))
            t = float(np.clip((y - anchor_b[1] - 0.5 * length) / (0.5 * length), 0, 1))
            prior = (1 - t) * prior_half + t * max(hip_half, prior_half)
        x = side_x(body, y, cx, side, labels, capsules, prior, g_half)
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
                gp = garment_side_point(torso, lerp(top_y, bottom_y, t), sign)
                if gp is not None:
                    piece.add(gp, side_target(gp, sign, TORSO_LABELS + LEG_LABELS))
        # The axis at the hem keeps the centre under the neck.
        hem_mid = lerp(g["right_hem"], g["left_hem"], 0.5)
        hem_target = lerp(targets["right_hem"], targets["left_hem"], 0.5)
        piece.add(hem_mid, hem_target)
    pieces = [piece]

    # Sleeves along the arms.
    for side, arm_ids in (
        ("right", (Keypoint.R_SHOULDER, Keypoint.R_ELBOW, Keypoint.R_WRIST)),
        ("left", (Keypoint.L_SHOULDER, Keypoint.L_ELBOW, Keypoint.L_WRIST)),
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
            piece.add(lerp(g_sh, g_ap, t), lerp(b_sh, b_ap, t))
        if len(arm) < 2:
            # No elbow in the pose: the arm is taken to hang from the shoulder along the body's side.
            arm = hanging_arm(body, arm_ids[0], -1 if side == "right" else 1)
        b_root = np.array([b_ap[0], min(b_ap[1], anchor_b[1] + SLEEVE_ROOT_MAX * length)])
        sleeve.sections = sleeve_sections(analysis, body, side, extended(arm, 0.85), b_sh, b_root, scale)
        pieces.append(sleeve)
    return pieces
