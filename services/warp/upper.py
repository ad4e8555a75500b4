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
from vton.runtime.vocab import ARM_CHAINS, Keypoint, Lip

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


# The body's half width at the armpits against the shoulder width, where the label map does not say.
CHEST_PRIOR = 0.47
# The chest's row for a garment without sleeves, below the shoulders as a share of the torso.
CHEST_ROW = 0.3
# The chest measured on the label map is believed between these shares of the prior.
CHEST_RANGE = (0.5, 1.6)
# Below half the torso the prior widens towards the hips: their half width against the hip joints' distance.
HIP_PRIOR = 0.8
# Side points between the armpit and the hem, as shares of the way down.
SIDE_POINTS = (0.33, 0.66)
# Points on the seam from shoulder to armpit that the torso and a sleeve share.
SEAM_POINTS = (0.33, 0.67)
# A dress's hem ends at most this share of the shin below the ankles (on the shoes' tops).
DRESS_HEM_BELOW_ANKLE = 0.15
# A sleeve whose arm the pose has only to the elbow goes on straight by this share of the upper arm.
FOREARM_GUESS = 0.85


def plan_upper(analysis: GarmentAnalysis, body: Body, dress: bool) -> list[Piece]:
    """The torso by a spline through the garment's landmarks and the body's; a sleeve per arm as a strip."""
    body.require(Keypoint.R_SHOULDER, Keypoint.L_SHOULDER, what="shoulders")
    placement = _TopPlacement(analysis, body, dress)
    torso, targets = placement.torso_piece()
    return [torso, *placement.sleeve_pieces(torso, targets)]


class _TopPlacement:
    """A top or a dress on one body: where its shoulders go, its scale and the similarity that places it."""

    def __init__(self, analysis: GarmentAnalysis, body: Body, dress: bool):
        self.analysis, self.body, self.dress = analysis, body, dress
        g = analysis.landmarks
        self.sw, self.length = body.shoulder_width, body.torso_length
        across = body.across
        self.b_rs = body.point(Keypoint.R_SHOULDER) - across * SHOULDER_OUT * self.sw
        self.b_ls = body.point(Keypoint.L_SHOULDER) + across * SHOULDER_OUT * self.sw
        self.b_rs[1], self.b_ls[1] = (
            _shoulder_top(body, self.b_rs, self.sw),
            _shoulder_top(body, self.b_ls, self.sw),
        )
        self.anchor_b = 0.5 * (self.b_rs + self.b_ls)
        self.anchor_g = 0.5 * (np.array(g["right_shoulder"]) + np.array(g["left_shoulder"]))
        self.sleeved = "right_sleeve_end" in g or "left_sleeve_end" in g
        self.capsules = body.limb_capsules(list(ARM_CHAINS), ARM_RADIUS * self.sw)
        self.prior_half = CHEST_PRIOR * self.sw
        self.scale = self._dress_scale() if dress else self._top_scale()
        self.T = Similarity(self.scale, self.anchor_g, self.anchor_b, across, body.down, self._drape())

    # --- scale and length -----------------------------------------------------------------------------------
    def _shoulder_scale(self) -> float:
        """Seam to seam on the garment onto seam to seam on the body (a flat-laid top's true width)."""
        g = self.analysis.landmarks
        g_width = abs(g["left_shoulder"][0] - g["right_shoulder"][0])
        return float(np.linalg.norm(self.b_ls - self.b_rs)) / max(g_width, 1.0)

    def _chest_scale(self) -> float:
        """The garment's width at the armpits (half a circumference, flat) onto the body's chest."""
        g = self.analysis.landmarks
        armpit_y = self.anchor_b[1] + CHEST_ROW * self.length
        extent = self.body.row_extent(
            armpit_y, axis_x(self.body, self.anchor_b, armpit_y), TORSO_LABELS, self.capsules
        )
        chest_half = self.prior_half
        low, high = CHEST_RANGE
        if (
            extent is not None
            and low * self.prior_half < 0.5 * (extent[1] - extent[0]) < high * self.prior_half
        ):
            chest_half = 0.5 * (extent[1] - extent[0])
        g_half = 0.5 * abs(g["left_armpit"][0] - g["right_armpit"][0])
        return chest_half * FLAT_FACTOR / max(g_half, 1.0)

    def _waist_scale(self) -> float | None:
        """A dress's waist (its narrowest row, flat) onto the body's (about the hip joints' spread)."""
        g = self.analysis.landmarks
        if "left_waist" not in g or not self.body.has(Keypoint.R_HIP, Keypoint.L_HIP):
            return None
        hips = float(np.linalg.norm(self.body.point(Keypoint.L_HIP) - self.body.point(Keypoint.R_HIP)))
        g_half = 0.5 * abs(g["left_waist"][0] - g["right_waist"][0])
        return HIP_PRIOR * hips * FLAT_FACTOR / max(g_half, 1.0)

    def _top_scale(self) -> float:
        return self._shoulder_scale() if self.sleeved else self._chest_scale()

    def _dress_scale(self) -> float:
        """The median of what the shoulders (with sleeves), the chest and the waist say: a puff sleeve, straps or
        a gathered waist each mislead one of them, and a dress's length shows the error."""
        scales = [self._chest_scale()]
        if self.sleeved:
            scales.append(self._shoulder_scale())
        waist = self._waist_scale()
        if waist is not None:
            scales.append(waist)
        return float(np.median(scales))

    def _drape(self) -> float:
        """How much the garment's length is stretched: a top whose hem ends just above the old top's reaches
        down to it (a preview must not open a sliver of midriff); a dress ends on the shoes at the longest."""
        g = self.analysis.landmarks
        if "right_hem" not in g:
            return 1.0
        g_hem_y = 0.5 * (g["right_hem"][1] + g["left_hem"][1])
        natural = self.scale * (g_hem_y - self.anchor_g[1])
        if natural <= 0:
            return 1.0
        if self.dress:
            floor = self._floor_below_anchor()
            return min(1.0, floor / natural) if floor is not None else 1.0
        old = _old_top_bottom(self.body, self.anchor_b, self.length, self.sw)
        if old is not None and natural < old < natural + HEM_SNAP * self.length:
            return old / natural
        return 1.0

    def _floor_below_anchor(self) -> float | None:
        """How far below the shoulders a dress may reach: the ankles and the shoes' tops, when the pose has them."""
        ankles = []
        for knee, ankle in ((Keypoint.R_KNEE, Keypoint.R_ANKLE), (Keypoint.L_KNEE, Keypoint.L_ANKLE)):
            if self.body.has(knee, ankle):
                shin = self.body.point(ankle) - self.body.point(knee)
                ankles.append(self.body.point(ankle) + DRESS_HEM_BELOW_ANKLE * shin)
        if not ankles:
            return None
        return float(np.mean([a[1] for a in ankles]) - self.anchor_b[1])

    # --- the torso --------------------------------------------------------------------------------------------
    def side_target(self, g_point, side: int, labels, y_range=None) -> np.ndarray:
        """The body's side at the height the similarity gives a garment point on its side."""
        p = self.T(g_point)
        y = float(p[1])
        if y_range is not None:
            y = float(np.clip(y, *y_range))
        cx = axis_x(self.body, self.anchor_b, y)
        g_half = self.scale * garment_half_at(self.analysis.parts["torso"], g_point[1])
        # The prior widens from the chest towards the hips by the hips' own keypoint spread.
        prior = self.prior_half
        hip = self.body.mid_hip
        if hip is not None and y > self.anchor_b[1] + 0.5 * self.length:
            hips = float(np.linalg.norm(self.body.point(Keypoint.L_HIP) - self.body.point(Keypoint.R_HIP)))
            t = float(np.clip((y - self.anchor_b[1] - 0.5 * self.length) / (0.5 * self.length), 0, 1))
            prior = (1 - t) * self.prior_half + t * max(HIP_PRIOR * hips, self.prior_half)
        x = side_x(self.body, y, cx, side, labels, self.capsules, prior, g_half)
        return np.array([x, y])

    def skirt_target(self, g_point, side: int) -> np.ndarray:
        """A dress's skirt hangs over the legs as it is cut: its side at its own (flat) width from the axis."""
        p = self.T(g_point)
        y = float(p[1])
        g_half = garment_half_at(self.analysis.parts["torso"], g_point[1])
        return np.array([axis_x(self.body, self.anchor_b, y) + side * g_half * self.scale / FLAT_FACTOR, y])

    def torso_piece(self) -> tuple[Piece, dict[str, np.ndarray]]:
        """The torso's spline: neckline and collar by the similarity, the shoulders on the body's (with sleeves),
        armpits, waist and hem on the body's sides, points down the sides between them."""
        g = self.analysis.landmarks
        piece = Piece("torso", [], [])
        targets: dict[str, np.ndarray] = {}
        for name in ("neckline", "right_collar", "left_collar"):
            if name in g:
                targets[name] = self.T(g[name])
        if self.sleeved:
            targets["right_shoulder"], targets["left_shoulder"] = self.b_rs, self.b_ls
        else:
            targets["right_shoulder"] = self.T(g["right_shoulder"])
            targets["left_shoulder"] = self.T(g["left_shoulder"])
        armpits = tuple(self.anchor_b[1] + share * self.length for share in ARMPIT_RANGE)
        for side, sign in (("right", -1), ("left", 1)):
            targets[f"{side}_armpit"] = self.side_target(g[f"{side}_armpit"], sign, TORSO_LABELS, armpits)
            if f"{side}_hem" in g:
                targets[f"{side}_hem"] = self._lower_side(g[f"{side}_hem"], sign)
            if self.dress and f"{side}_waist" in g:
                targets[f"{side}_waist"] = self.side_target(g[f"{side}_waist"], sign, TORSO_LABELS)
        for name, target in targets.items():
            piece.add(g[name], target)
        if "right_hem" in g:
            torso = self.analysis.parts["torso"]
            for side, sign in (("right", -1), ("left", 1)):
                top = g[f"{side}_waist"][1] if self.dress and f"{side}_waist" in g else g[f"{side}_armpit"][1]
                for t in SIDE_POINTS:
                    gp = garment_side_point(torso, lerp(top, g[f"{side}_hem"][1], t), sign)
                    if gp is not None:
                        piece.add(gp, self._lower_side(gp, sign))
            # The axis at the hem keeps the centre under the neck.
            piece.add(
                lerp(g["right_hem"], g["left_hem"], 0.5), lerp(targets["right_hem"], targets["left_hem"], 0.5)
            )
        return piece, targets

    def _lower_side(self, g_point, sign: int) -> np.ndarray:
        """A side point below the armpits: a dress's skirt as it is cut, a top's on the body's side."""
        if self.dress:
            return self.skirt_target(g_point, sign)
        return self.side_target(g_point, sign, TORSO_LABELS + LEG_LABELS)

    # --- sleeves ----------------------------------------------------------------------------------------------
    def sleeve_pieces(self, torso: Piece, targets: dict[str, np.ndarray]) -> list[Piece]:
        """A strip per sleeve along its arm (hanging from the shoulder where the pose has no elbow), its seam
        shared with the torso point for point so both sides of it land on the same line."""
        g = self.analysis.landmarks
        pieces = []
        for side, chain in (("right", ARM_CHAINS[0]), ("left", ARM_CHAINS[1])):
            if f"{side}_sleeve_end" not in g or f"{side}_sleeve" not in self.analysis.parts:
                continue
            g_sh, g_ap = np.array(g[f"{side}_shoulder"]), np.array(g[f"{side}_armpit"])
            b_sh, b_ap = targets[f"{side}_shoulder"], targets[f"{side}_armpit"]
            for t in SEAM_POINTS:
                torso.add(lerp(g_sh, g_ap, t), lerp(b_sh, b_ap, t))
            arm = self.body.limb(chain)
            if len(arm) < 2:
                arm = hanging_arm(self.body, chain[0], -1 if side == "right" else 1)
            b_root = np.array([b_ap[0], min(b_ap[1], self.anchor_b[1] + SLEEVE_ROOT_MAX * self.length)])
            sections = sleeve_sections(
                self.analysis, self.body, side, extended(arm, FOREARM_GUESS), b_sh, b_root, self.scale
            )
            pieces.append(Piece(f"{side}_sleeve", [], [], sections=sections))
        return pieces
