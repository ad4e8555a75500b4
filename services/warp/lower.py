"""Where trousers and skirts land."""

from __future__ import annotations

import numpy as np

from services.warp.body import (
    ARM_RADIUS,
    LEG_LABELS,
    TORSO_LABELS,
    Body,
    extended,
    point_along,
    polyline_length,
)
from services.warp.garment import GarmentAnalysis
from services.warp.placement import FLAT_FACTOR, Piece, Similarity, axis_x, garment_side_point, lerp, side_x
from vton.runtime.vocab import Keypoint, Lip


def plan_lower(analysis: GarmentAnalysis, body: Body) -> list[Piece]:
    g = analysis.landmarks
    body.require(Keypoint.R_HIP, Keypoint.L_HIP, what="hips")
    length = body.torso_length
    hip = body.mid_hip
    hip_spread = float(np.linalg.norm(body.point(Keypoint.L_HIP) - body.point(Keypoint.R_HIP)))
    down, across = body.down, body.across
    sw = body.shoulder_width if body.has(Keypoint.R_SHOULDER, Keypoint.L_SHOULDER) else 1.6 * hip_spread
    capsules = body.limb_capsules(
        [
            (Keypoint.R_SHOULDER, Keypoint.R_ELBOW, Keypoint.R_WRIST),
            (Keypoint.L_SHOULDER, Keypoint.L_ELBOW, Keypoint.L_WRIST),
        ],
        ARM_RADIUS * sw,
    )
    # The waistband: the top of the trousers or skirt the person wears, when it lies about where a waist is.
    waist_y = hip[1] - 0.15 * length
    top = body.column_top(hip[0], hip[1] - 0.45 * length, hip[1], (Lip.PANTS, Lip.SKIRT))
    if top is not None and top > hip[1] - 0.4 * length:
        waist_y = top
    waist_x = axis_x(body, hip, waist_y)
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
        "right": body.limb((Keypoint.R_HIP, Keypoint.R_KNEE, Keypoint.R_ANKLE)),
        "left": body.limb((Keypoint.L_HIP, Keypoint.L_KNEE, Keypoint.L_ANKLE)),
    }
    if "crotch" in g:
        crotch = T(g["crotch"])
        piece.add(g["crotch"], np.array([axis_x(body, hip, crotch[1]), crotch[1]]))
        for side, sign in (("right", -1), ("left", 1)):
            outer, inner = np.array(g[f"{side}_hem_outer"]), np.array(g[f"{side}_hem_inner"])
            g_mid = 0.5 * (outer + inner)
            leg = extended(legs[side], 1.0)
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
                knee_centre, knee_dir = T(lerp(g_waist_side, g_mid, knee_t)), down
            half = max(0.5 * scale * float(np.linalg.norm(outer - inner)) / FLAT_FACTOR, 0.25 * hip_spread)
            normal = np.array([-direction[1], direction[0]])
            if np.dot(normal, across) * sign < 0:
                normal = -normal
            piece.add(outer, centre + normal * half)
            piece.add(inner, centre - normal * half)
            # Knee level: the garment's leg at mid-length, around the body's leg.
            g_knee_y = lerp(g_waist_side, g_mid, knee_t)[1]
            g_out_knee = garment_side_point(analysis.parts["torso"], g_knee_y, sign)
            if g_out_knee is not None:
                k_normal = np.array([-knee_dir[1], knee_dir[0]])
                if np.dot(k_normal, across) * sign < 0:
                    k_normal = -k_normal
                k_half = lerp(0.5 * waist_half, half, 0.5)
                piece.add(g_out_knee, knee_centre + k_normal * k_half)
    else:
        # A skirt: its hem keeps its flare, at least as wide as the legs under it.
        for side, sign in (("right", -1), ("left", 1)):
            p = T(g[f"{side}_hem"])
            cx = axis_x(body, hip, p[1])
            g_half = 0.5 * abs(g["left_hem"][0] - g["right_hem"][0])
            x = side_x(body, p[1], cx, sign, LEG_LABELS, capsules, prior_half, scale * g_half)
            piece.add(g[f"{side}_hem"], np.array([x, p[1]]))
            mid = garment_side_point(
                analysis.parts["torso"], lerp(g[f"{side}_waist"][1], g[f"{side}_hem"][1], 0.5), sign
            )
            if mid is not None:
                q = T(mid)
                x = side_x(
                    body,
                    q[1],
                    axis_x(body, hip, q[1]),
                    sign,
                    TORSO_LABELS + LEG_LABELS,
                    capsules,
                    prior_half,
                    scale * abs(mid[0] - g["waist_centre"][0]),
                )
                piece.add(mid, np.array([x, q[1]]))
    return [piece]
