"""Where trousers and skirts land.

Both are scaled by their waistband against the body's waist (read off the label map). Trousers are then drawn
as two strips, one per leg, of cross-sections from the waistband down to the hem along the leg's keypoints, so
they bend at the knee and cover each leg whatever the person wore before; the two strips share the waistband's
centre and the crotch, so the trousers stay one piece. A skirt hangs from the waist by a thin-plate spline
that keeps its flare, whatever the legs under it do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.warp.body import (
    ARM_RADIUS,
    LEG_LABELS,
    TORSO_LABELS,
    Body,
    arc_position,
    extended,
    point_along,
    polyline_length,
)
from services.warp.garment import GarmentAnalysis
from services.warp.placement import (
    FLAT_FACTOR,
    Piece,
    Section,
    Similarity,
    axis_x,
    garment_side_point,
    lerp,
    side_x,
)
from vton.runtime.vocab import ARM_CHAINS, LEG_CHAINS, Keypoint, Lip

# Where the waistband sits above the hip joints when the label map does not show it, and how far above them it
# is looked for, as shares of the torso's length (neck to hips).
WAIST_ABOVE_HIPS = 0.15
WAISTBAND_SEARCH = (0.45, 0.4)  # (from where the column is read, the highest a waistband is believed)
# The body's waist may be this much narrower or wider than the hip joints' prior before the label map is doubted.
WAIST_WIDTH_RANGE = (0.5, 1.8)
WAIST_PRIOR = 0.8  # the waist's half width against the hip joints' distance
WAIST_LABELS = (Lip.PANTS, Lip.SKIRT, Lip.DRESS, Lip.JUMPSUITS, Lip.LEFT_LEG, Lip.RIGHT_LEG)
# A leg's half width against the hip joints' distance, at the crotch and at the ankle: trousers are never drawn
# narrower than the leg, nor more than LEG_LOOSENESS times as wide (a flared leg's own width up to that).
THIGH_HALF, ANKLE_HALF = 0.5, 0.22
LEG_LOOSENESS = 2.2
# A trouser leg ends at most this share of the shin below the ankle: it breaks on the shoe, which hides its hem.
HEM_BELOW_ANKLE = 0.15
# The crotch lies this share of the thigh below the hip joints.
CROTCH_BELOW_HIPS = 0.15
# Trousers whose inseam is at least this many times their waistband's width are full length: their hem reaches
# the shoe whatever the waistband's scale says (a stretch fabric laid flat is narrower than it is worn).
FULL_LENGTH = 1.2
# A leg seen only to its knee goes on straight by this share of the thigh.
SHIN_SHARE = 1.0
# How many cross-sections a trouser leg has between the crotch and the hem (the knee's is added).
LEG_SECTIONS = 4
# A skirt's side points between waist and hem, as a share of the way down.
SKIRT_MID = 0.5


@dataclass(frozen=True)
class Waist:
    """The body's waistline: its centre (px), half width and the scale of the garment's waistband onto it."""

    centre: np.ndarray
    half: float
    scale: float


def plan_lower(analysis: GarmentAnalysis, body: Body) -> list[Piece]:
    """Trousers as two leg strips, a skirt by a spline; both from the waistband down."""
    body.require(Keypoint.R_HIP, Keypoint.L_HIP, what="hips")
    waist = _waist(analysis, body)
    if "crotch" in analysis.landmarks:
        return [_trouser_leg(analysis, body, waist, side) for side in ("right", "left")]
    return [_skirt(analysis, body, waist)]


def _hip_spread(body: Body) -> float:
    return float(np.linalg.norm(body.point(Keypoint.L_HIP) - body.point(Keypoint.R_HIP)))


def _arm_capsules(body: Body) -> np.ndarray:
    """The arms' capsules: a hand resting on the hip is not the waist's outline."""
    sw = (
        body.shoulder_width if body.has(Keypoint.R_SHOULDER, Keypoint.L_SHOULDER) else 1.6 * _hip_spread(body)
    )
    return body.limb_capsules(list(ARM_CHAINS), ARM_RADIUS * sw)


def _waist(analysis: GarmentAnalysis, body: Body) -> Waist:
    """The waistline: the top of the trousers or skirt the person wears where it lies about where a waist is,
    else a share of the torso above the hips; its width from the label map, else from the hip joints."""
    g = analysis.landmarks
    hip, length = body.mid_hip, body.torso_length
    assert hip is not None
    waist_y = hip[1] - WAIST_ABOVE_HIPS * length
    search_from, highest = WAISTBAND_SEARCH
    top = body.column_top(hip[0], hip[1] - search_from * length, hip[1], (Lip.PANTS, Lip.SKIRT))
    if top is not None and top > hip[1] - highest * length:
        waist_y = top
    waist_x = axis_x(body, hip, waist_y)
    prior_half = WAIST_PRIOR * _hip_spread(body)
    half = prior_half
    # Read on the lower garment and the legs: a jacket hanging over the waist is wider than it.
    extent = body.row_extent(waist_y + 0.02 * length, waist_x, WAIST_LABELS, _arm_capsules(body))
    low, high = WAIST_WIDTH_RANGE
    if extent is not None and low * prior_half < 0.5 * (extent[1] - extent[0]) < high * prior_half:
        half = 0.5 * (extent[1] - extent[0])
        waist_x = 0.5 * (extent[0] + extent[1])
    g_half = 0.5 * abs(g["left_waist"][0] - g["right_waist"][0])
    return Waist(np.array([waist_x, waist_y]), half, half * FLAT_FACTOR / max(g_half, 1.0))


def _leg_line(body: Body, chain: tuple[int, ...]) -> list[np.ndarray]:
    """The leg's centre line: the hip-knee-ankle polyline, begun a torso's length above the hip joint (where a
    high waistband may reach) and carried past the ankle by the shoe's share of the shin (or on from the knee)."""
    leg = extended(body.limb(chain), SHIN_SHARE)
    if len(leg) < 2:
        # No knee in the pose: straight down the torso's axis, a torso's length.
        leg = [leg[0], leg[0] + body.torso_length * body.down]
    start = leg[0] - body.down * body.torso_length
    end = leg[-1] + HEM_BELOW_ANKLE * (leg[-1] - leg[-2])
    return [start, *leg, end]


def _crotch_y(body: Body) -> float:
    """The body's crotch height: a share of the thigh below the hip joints."""
    hip = body.mid_hip
    assert hip is not None
    knees = [body.point(k) for k in (Keypoint.R_KNEE, Keypoint.L_KNEE) if body.has(k)]
    thigh = float(np.mean([k[1] for k in knees])) - hip[1] if knees else body.torso_length
    return float(hip[1] + CROTCH_BELOW_HIPS * thigh)


def _normal_at(line: list[np.ndarray], arc: float, outward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The point at `arc` along the line and the unit normal there pointing to `outward`'s side; across a bend
    (the knee) the normal is the bisector of the two segments'."""
    reach = 0.05 * polyline_length(line)
    before, _ = point_along(line, max(0.0, arc - reach))
    after, _ = point_along(line, arc + reach)
    centre, direction = point_along(line, arc)
    chord = after - before
    if np.linalg.norm(chord) > 1e-6:
        direction = chord / np.linalg.norm(chord)
    normal = np.array([-direction[1], direction[0]])
    return centre, normal if np.dot(normal, outward) >= 0 else -normal


def _leg_rows(g_top: float, g_crotch: float, g_hem: float, g_knee: float | None) -> list[float]:
    """Garment rows of a trouser leg's sections: the waistband, the crotch, evenly down to the hem, and the
    knee's row where the leg reaches it."""
    rows = [g_top, *np.linspace(g_crotch, g_hem, LEG_SECTIONS + 1)]
    if g_knee is not None and g_crotch < g_knee < g_hem:
        rows.append(g_knee)
    return sorted(set(float(r) for r in rows))


def _garment_leg_run(part: np.ndarray, y: float, crotch_x: float, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(outer, inner) ends of one trouser leg on row y of the product photo: the garment on that leg's side of
    the crotch."""
    row = np.flatnonzero(part[int(np.clip(y, 0, part.shape[0] - 1))] > 0)
    half = row[row < crotch_x] if side == "right" else row[row > crotch_x]
    if not len(half):
        half = np.array([crotch_x])
    outer, inner = (half.min(), half.max()) if side == "right" else (half.max(), half.min())
    return np.array([float(outer), y]), np.array([float(inner), y])


def _trouser_leg(analysis: GarmentAnalysis, body: Body, waist: Waist, side: str) -> Piece:
    """One trouser leg as a strip from the waistband (outer corner to its centre) through the crotch to the hem,
    along the leg's line. The crotch lands on the body's crotch; lengths are full-length trousers' inseam
    against the body's (to the shoe), or for shorter ones the waistband's scale; each section's width is the
    garment's, within the leg's own bounds."""
    g = analysis.landmarks
    part = analysis.parts["torso"]
    sign = -1.0 if side == "right" else 1.0
    outward = sign * body.across
    chain = LEG_CHAINS[0] if side == "right" else LEG_CHAINS[1]
    line = _leg_line(body, chain)
    total = polyline_length(line)
    g_top = float(g["waist_centre"][1])
    g_crotch = np.array(g["crotch"], np.float64)
    g_hem = 0.5 * (g[f"{side}_hem_outer"][1] + g[f"{side}_hem_inner"][1])
    crotch_y = _crotch_y(body)
    crotch_arc = arc_position(line, np.array([line[1][0], crotch_y]))
    g_inseam = max(g_hem - g_crotch[1], 1.0)
    g_waist_width = abs(g["left_waist"][0] - g["right_waist"][0])
    per_row = waist.scale  # body pixels along the leg per garment row
    if g_inseam >= FULL_LENGTH * g_waist_width:
        per_row = (total - crotch_arc) / g_inseam

    def arc_of(y: float) -> float:
        return float(np.clip(crotch_arc + (y - g_crotch[1]) * per_row, 0.0, total))

    knee = body.point(chain[1]) if body.has(chain[1]) else None
    g_knee = g_crotch[1] + (arc_position(line, knee) - crotch_arc) / per_row if knee is not None else None
    hip_spread = _hip_spread(body)
    # The waistband: across the torso at the height its rise puts it, as wide as the torso is there.
    top, _ = point_along(line, arc_of(g_top))
    top_centre = np.array([axis_x(body, waist.centre, top[1]), top[1]])
    top_half = _torso_half(body, top[1], top_centre[0], waist.half)
    sections: list[Section] = [
        (
            np.array(g[f"{side}_waist"], np.float64),
            np.array(g["waist_centre"], np.float64),
            top_centre + outward * top_half,
            top_centre,
        )
    ]
    rows = _leg_rows(g_top, float(g_crotch[1]), g_hem, g_knee)
    # The crotch's section: the crotch on the body's axis, the leg as wide on its outer side.
    centre, normal = _normal_at(line, crotch_arc, outward)
    g_outer = np.array(garment_side_point(part, rows[1], int(sign)) or g[f"{side}_waist"], np.float64)
    b_inner = np.array([axis_x(body, waist.centre, centre[1]), centre[1]])
    half = max(float(np.linalg.norm(centre - b_inner)), THIGH_HALF * hip_spread)
    sections.append((g_outer, g_crotch, centre + normal * half, b_inner))
    for y in rows[2:]:
        centre, normal = _normal_at(line, arc_of(y), outward)
        g_outer, g_inner = _garment_leg_run(part, y, float(g_crotch[0]), side)
        share = float(np.clip((arc_of(y) - crotch_arc) / max(total - crotch_arc, 1.0), 0.0, 1.0))
        leg_half = float(lerp(THIGH_HALF, ANKLE_HALF, share)) * hip_spread
        half = 0.5 * float(np.linalg.norm(g_outer - g_inner)) * waist.scale / FLAT_FACTOR
        half = float(np.clip(half, leg_half, LEG_LOOSENESS * leg_half))
        sections.append((g_outer, g_inner, centre + normal * half, centre - normal * half))
    return Piece("torso", [], [], sections=sections)


def _torso_half(body: Body, y: float, centre_x: float, prior: float) -> float:
    """Half the torso's width on row y from the label map (the arms left out), the prior where it disagrees."""
    extent = body.row_extent(y, centre_x, TORSO_LABELS + LEG_LABELS, _arm_capsules(body))
    low, high = WAIST_WIDTH_RANGE
    if extent is not None and low * prior < 0.5 * (extent[1] - extent[0]) < high * prior:
        return 0.5 * (extent[1] - extent[0])
    return prior


def _skirt(analysis: GarmentAnalysis, body: Body, waist: Waist) -> Piece:
    """A skirt by a spline: its waistband on the waistline, its hem where its length puts it, keeping its flare
    and at least as wide as the legs under it."""
    g = analysis.landmarks
    part = analysis.parts["torso"]
    hip = body.mid_hip
    assert hip is not None
    capsules = _arm_capsules(body)
    prior_half = WAIST_PRIOR * _hip_spread(body)
    T = Similarity(waist.scale, g["waist_centre"], waist.centre, body.across, body.down)
    piece = Piece("torso", [], [])
    piece.add(g["right_waist"], waist.centre - body.across * waist.half)
    piece.add(g["left_waist"], waist.centre + body.across * waist.half)
    piece.add(g["waist_centre"], waist.centre)
    g_hem_half = 0.5 * abs(g["left_hem"][0] - g["right_hem"][0])
    for side, sign in (("right", -1), ("left", 1)):
        p = T(g[f"{side}_hem"])
        x = side_x(
            body,
            p[1],
            axis_x(body, hip, p[1]),
            sign,
            LEG_LABELS,
            capsules,
            prior_half,
            waist.scale * g_hem_half,
        )
        piece.add(g[f"{side}_hem"], np.array([x, p[1]]))
        mid = garment_side_point(part, lerp(g[f"{side}_waist"][1], g[f"{side}_hem"][1], SKIRT_MID), sign)
        if mid is not None:
            q = T(mid)
            g_half = waist.scale * abs(mid[0] - g["waist_centre"][0])
            labels = TORSO_LABELS + LEG_LABELS
            x = side_x(body, q[1], axis_x(body, hip, q[1]), sign, labels, capsules, prior_half, g_half)
            piece.add(mid, np.array([x, q[1]]))
    return piece
