"""Sleeves on the arms: a sleeve's cross-sections from its seam to its cuff, in the product photo and on the body.

A long sleeve's few control points would let a spline tear it at the elbow, so a sleeve is drawn as a strip
(services.warp.placement.draw_strip) whose sections follow the arm's polyline, split at the elbow.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.warp.body import ARM_RADIUS, ARMS, Body, arc_position, point_along, polyline_length
from services.warp.garment import GarmentAnalysis
from services.warp.placement import Section, lerp
from vton.runtime.vocab import Lip

# A sleeve is a tube: laid flat it is about 1.4 times as wide as the arm in it seen from the front.
SLEEVE_FLAT_FACTOR = 1.4
# A person's upper arm and forearm against the torso's length (neck to hips), for an arm the pose misses.
UPPER_ARM_SHARE, FOREARM_SHARE = 0.62, 0.55
# Where a long sleeve's elbow lies along its outer edge, shoulder seam to cuff, as a share (and its bounds).
SLEEVE_ELBOW_RANGE = (0.3, 0.7)
# A sleeve's cross-sections reach this much beyond the garment's edges (and the body's), so that the sleeve's
# bulges outside the straight strip still land; the garment's own mask cuts what lies outside it.
SECTION_MARGIN = 0.08
# Where the cuff's section lies along the sleeve's axis (root 0, end 1).
CUFF_INSET = 0.97


def hanging_arm(body: Body, shoulder: int, side: int) -> list[np.ndarray]:
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
    hit[inside] = np.isin(
        body.labels[pts[inside, 1], pts[inside, 0]], ARMS + (Lip.UPPER_CLOTHES, Lip.COAT, Lip.GLOVE)
    )
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


# The shoulder and armpit's arcs reach this share of the shoulder width past the arm's end; a long sleeve's elbow
# section is made when the cuff lies more than ELBOW_MARGIN of it beyond the elbow.
ARM_END_MARGIN = 0.05
ELBOW_MARGIN = 0.1
# A sleeve's half width at its root and its cuff's least half width, against ARM_RADIUS times the shoulder width.
ROOT_HALF, CUFF_HALF_MIN = 1.3, 0.95


class _SleeveFrame:
    """One sleeve in its product photo and along the arm: where its sections lie in both.

    Garment fractions run from the shoulder seam (0) to the cuff (1); the body's arcs along the arm follow from
    them, the outer edge from the shoulder and the inner from the armpit. A long sleeve is split at its elbow:
    the elbow's section lies across the person's elbow, the upper half follows the upper arm and the lower half
    the forearm.
    """

    def __init__(self, analysis: GarmentAnalysis, body: Body, side: str, arm, b_sh, b_ap, scale: float):
        g = analysis.landmarks
        self.arm, self.scale = arm, scale
        self.sw = body.shoulder_width
        self.b_sh, self.b_ap = np.asarray(b_sh, np.float64), np.asarray(b_ap, np.float64)
        self.g_sh, self.g_ap = np.array(g[f"{side}_shoulder"]), np.array(g[f"{side}_armpit"])
        self.g_out_end, self.g_in_end = np.array(g[f"{side}_cuff_outer"]), np.array(g[f"{side}_cuff_inner"])
        self.mask = analysis.parts[f"{side}_sleeve"]
        self.g_root, self.g_end = 0.5 * (self.g_sh + self.g_ap), 0.5 * (self.g_out_end + self.g_in_end)
        g_axis = (self.g_end - self.g_root) / max(float(np.linalg.norm(self.g_end - self.g_root)), 1e-6)
        self.g_normal = np.array([-g_axis[1], g_axis[0]])
        if np.dot(self.g_normal, self.g_sh - self.g_ap) < 0:
            self.g_normal = -self.g_normal
        g_length = float(np.linalg.norm(self.g_out_end - self.g_sh))
        reach = polyline_length(arm) + ARM_END_MARGIN * self.sw
        self.s_out, self.s_in = arc_position(arm, self.b_sh), arc_position(arm, self.b_ap)
        self.cuff_arc = min(reach, self.s_out + scale * g_length)
        self.inner_end = max(self.cuff_arc, self.s_in + ARM_END_MARGIN * self.sw)
        self.elbow_arc = float(np.linalg.norm(arm[1] - arm[0]))
        self.g_elbow = None
        if self.cuff_arc > self.elbow_arc + ELBOW_MARGIN * self.sw and self.elbow_arc > self.s_out:
            g_elbow = (self.elbow_arc - self.s_out) / max(scale * g_length, 1.0)
            self.g_elbow = float(np.clip(g_elbow, *SLEEVE_ELBOW_RANGE))
        self.root_half = ROOT_HALF * ARM_RADIUS * self.sw
        cuff_width = scale * float(np.linalg.norm(self.g_out_end - self.g_in_end)) / SLEEVE_FLAT_FACTOR
        self.cuff_half = max(0.5 * cuff_width, CUFF_HALF_MIN * ARM_RADIUS * self.sw)
        # One handedness for the whole arm, chosen so that the first section's outer side is the shoulder's:
        # the normal then turns with the arm and never flips from one section to the next.
        _, d0 = point_along(arm, self.s_out)
        self.hand = 1.0 if np.dot(np.array([-d0[1], d0[0]]), self.b_sh - self.b_ap) >= 0 else -1.0

    def fractions(self) -> list[float]:
        if self.g_elbow is None:
            return [0.0, 0.5, 1.0]
        return [0.0, 0.5 * self.g_elbow, self.g_elbow, 0.5 * (self.g_elbow + 1.0), 1.0]

    def body_arcs(self, f: float) -> tuple[float, float]:
        """Arcs along the arm of the outer and the inner edge at garment fraction f."""
        if self.g_elbow is None:
            return self.s_out + f * (self.cuff_arc - self.s_out), self.s_in + f * (self.inner_end - self.s_in)
        elbow_in = max(self.elbow_arc, self.s_in)
        if f <= self.g_elbow:
            u = f / self.g_elbow
            return lerp(self.s_out, self.elbow_arc, u), lerp(self.s_in, elbow_in, u)
        u = (f - self.g_elbow) / (1.0 - self.g_elbow)
        return lerp(self.elbow_arc, self.cuff_arc, u), lerp(elbow_in, self.inner_end, u)

    def normal_at(self, arc: float) -> tuple[np.ndarray, np.ndarray]:
        """The arm's point at `arc` and its normal to the outer side; across the elbow the bisector's."""
        arm = self.arm
        centre, direction = point_along(arm, arc)
        if self.g_elbow is not None and abs(arc - self.elbow_arc) < 1e-3 and len(arm) > 2:
            up = (arm[1] - arm[0]) / max(float(np.linalg.norm(arm[1] - arm[0])), 1e-6)
            fore = (arm[2] - arm[1]) / max(float(np.linalg.norm(arm[2] - arm[1])), 1e-6)
            direction = up + fore
            direction /= max(float(np.linalg.norm(direction)), 1e-6)
        return centre, self.hand * np.array([-direction[1], direction[0]])

    def garment_section(self, f: float) -> tuple[np.ndarray, np.ndarray]:
        """(outer, inner) across the sleeve at fraction f of the product photo.

        Across the sleeve's axis (root to cuff), as wide as the straight section from the seam's ends to the
        cuff's corners, cut to the sleeve's own run: a sleeve laid flat hanging down has its seam along it, and
        sections turning with the seam would run along the sleeve instead of across. The cuff's section lies a
        little inside the sleeve's end, where its run spans the whole sleeve.
        """
        g_outer, g_inner = lerp(self.g_sh, self.g_out_end, f), lerp(self.g_ap, self.g_in_end, f)
        centre = self.g_root + min(f, CUFF_INSET) * (self.g_end - self.g_root)
        half = 0.5 * float(np.linalg.norm(g_outer - g_inner))
        return _sleeve_run(self.mask, centre + self.g_normal * half, centre - self.g_normal * half)

    def body_section(self, body: Body, f: float) -> tuple[np.ndarray, np.ndarray]:
        """(outer, inner) across the arm at fraction f: as wide as what the person wears there, within the
        sleeve's own width from its root to its cuff."""
        a_out, a_in = self.body_arcs(f)
        prior = float(lerp(self.root_half, self.cuff_half, f))
        c_out, n_out = self.normal_at(a_out)
        c_in, n_in = self.normal_at(a_in)
        half = _arm_half_width(body, 0.5 * (c_out + c_in), n_out, prior)
        return c_out + n_out * half, c_in - n_in * half


def sleeve_sections(
    analysis: GarmentAnalysis,
    body: Body,
    side: str,
    arm: list[np.ndarray],
    b_sh: np.ndarray,
    b_ap: np.ndarray,
    scale: float,
) -> list[Section]:
    """The sleeve's cross-sections, product photo and body, from the seam (shoulder to armpit) to the cuff,
    each widened by SECTION_MARGIN so the sleeve's bulges beyond the straight strip still land. Split at the
    elbow, the two halves share the elbow's section, so the sleeve stays one piece however the arm bends."""
    frame = _SleeveFrame(analysis, body, side, arm, b_sh, b_ap, scale)
    sections = [(frame.g_sh, frame.g_ap, frame.b_sh, frame.b_ap)]
    for f in frame.fractions()[1:]:
        sections.append((*frame.garment_section(f), *frame.body_section(body, f)))
    widened = []
    for g_o, g_i, b_o, b_i in sections:
        g_d, b_d = SECTION_MARGIN * (g_o - g_i), SECTION_MARGIN * (b_o - b_i)
        widened.append((g_o + g_d, g_i - g_d, b_o + b_d, b_i - b_d))
    return widened
