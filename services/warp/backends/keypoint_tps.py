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

import cv2
import numpy as np

from services.warp import tps
from services.warp.body import ARM_RADIUS, ARMS, HEAD, Body, extended
from services.warp.category import classify_garment
from services.warp.garment import CATEGORIES, GarmentAnalysis, analyse_garment
from services.warp.lower import plan_lower
from services.warp.placement import Piece, draw_strip
from services.warp.types import CategoryGuess, WarpInputs, WarpOutput
from services.warp.upper import plan_upper
from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import ARM_CHAINS, Keypoint, Lip


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
    for ids in ARM_CHAINS:
        arm = body.limb(ids)
        if len(arm) < 2:
            return np.ones((h, w), bool)
        arm = extended(arm, 0.85)
        arm = arm + [arm[-1] + 0.5 * (arm[-1] - arm[-2])]
        for a, b in zip(arm, arm[1:], strict=False):
            cv2.line(reach, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, 2 * radius)
    return reach > 0


# Pixels on the garment mask's rim are its photo's background blended in (a light halo): trimmed by this share of
# the product photo's longer side before drawing.
RIM_TRIM = 0.004
# Specks of the photo's background that the mask joins to a sleeve's outline: an opening this share of the photo
# wide drops them.
SLEEVE_SPECK = 0.015
# A patch of the warped garment apart from the rest and smaller than this share of it is a loose piece (a hem's
# corner cut off by an arm, a waistband's tip above the top worn over it): dropped.
LOOSE_PIECE = 0.03


class KeypointTPSWarp:
    """Warp without weights: garment landmarks -> body keypoints and parse regions, by thin-plate splines."""

    def __init__(self, grid_step: int = 8, regularization: float = 1e-3):
        self.grid_step = grid_step
        self.regularization = regularization

    def classify(self, garment: np.ndarray) -> CategoryGuess:
        return classify_garment(garment)  # the garment's silhouette (services/warp/category.py)

    def warp(self, inputs: WarpInputs) -> WarpOutput:
        _check(inputs)
        analysis = analyse_garment(inputs.garment, inputs.category, inputs.garment_mask)
        body = Body(np.asarray(inputs.keypoints, np.float32), inputs.labels)
        if inputs.category == "lower_body":
            pieces = plan_lower(analysis, body)
        else:
            pieces = plan_upper(analysis, body, dress=inputs.category == "dresses")
        out, out_mask = self._draw(inputs, analysis, body, pieces)
        out_mask &= ~_in_front(inputs.labels, inputs.category)
        out_mask &= inputs.agnostic_mask > 127
        out_mask = _without_loose_pieces(out_mask)
        out[~out_mask] = 0
        return WarpOutput(
            warped_garment=out,
            warped_mask=out_mask.astype(np.uint8) * 255,
            garment_mask=analysis.mask,
            landmarks=analysis.landmarks,
        )

    def _draw(
        self, inputs: WarpInputs, analysis: GarmentAnalysis, body: Body, pieces: list[Piece]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every piece carried onto the person, the torso first and sleeves over it."""
        h, w = inputs.person.shape[:2]
        sw = body.shoulder_width if body.has(Keypoint.R_SHOULDER, Keypoint.L_SHOULDER) else 0.25 * w
        # The garment's colours spread over its photo's background (tps.warp does the same for the pieces it
        # draws): its outermost pixels blend into that background.
        core = cv2.erode(analysis.mask, np.ones((3, 3), np.uint8), iterations=2)
        padded = tps.pad_colors(inputs.garment, core if core.any() else analysis.mask)
        drawn = [self._carried(inputs, analysis, piece, padded, sw) for piece in pieces]
        sleeves = np.zeros((h, w), bool)
        for piece, (_, landed) in zip(pieces, drawn, strict=True):
            if piece.part != "torso":
                sleeves |= landed
        out = np.zeros((h, w, 3), np.uint8)
        out_mask = np.zeros((h, w), bool)
        for piece, (warped, landed) in zip(pieces, drawn, strict=True):
            if piece.part == "torso" and inputs.category != "lower_body":
                landed = landed & ~_arm_in_front(inputs.labels, body, sw, sleeves)
            out[landed] = warped[landed]
            out_mask |= landed
        return out, out_mask

    def _carried(
        self, inputs: WarpInputs, analysis: GarmentAnalysis, piece: Piece, padded: np.ndarray, sw: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(image, where it lands) of one piece on the person: a strip, or a spline cut to where it may land."""
        h, w = inputs.person.shape[:2]
        part = _drawn_part(analysis, piece.part)
        if piece.sections is not None:
            return draw_strip(padded, part, piece.sections, (h, w))
        maps = tps.inverse_maps(
            np.array(piece.source), np.array(piece.target), (h, w), self.grid_step, self.regularization
        )
        warped, mask = tps.warp(inputs.garment, part, maps)
        if piece.outline is not None:
            allowed = _polygon_region(piece.outline, (h, w), 0.04 * sw)
        else:
            allowed = _hull_region(piece.target, (h, w), 0.12 * sw)
        return warped, (mask > 0) & allowed


def _arm_in_front(labels: np.ndarray, body: Body, sw: float, sleeves: np.ndarray) -> np.ndarray:
    """Where an arm lies over the torso and stays in front of the garment's body.

    Without sleeves, every arm pixel. Under sleeves, only where an arm can be by the pose ("arm" far from the
    keypoints is a skin-coloured garment the parser took for skin) and not next to a sleeve: an arm inside a
    sleeve is covered by it, and a sleeve narrower than the arm must not open a gap of skin beside it.
    """
    arms = np.isin(labels, ARMS)
    if not sleeves.any():
        return arms
    k = max(3, int(2 * ARM_RADIUS * sw) | 1)
    beside_sleeves = cv2.dilate(
        sleeves.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    return arms & _arm_reach(body, sw) & (beside_sleeves == 0)


def _check(inputs: WarpInputs) -> None:
    if inputs.category not in CATEGORIES:
        raise InvalidInput(f"unknown category {inputs.category!r}; expected one of {', '.join(CATEGORIES)}")
    h, w = inputs.person.shape[:2]
    for name in ("masked_person", "agnostic_mask", "labels"):
        arr = getattr(inputs, name)
        if arr.shape[:2] != (h, w):
            raise InvalidInput(f"{name} is {arr.shape[1]}x{arr.shape[0]} but the person is {w}x{h}")


def _drawn_part(analysis: GarmentAnalysis, name: str) -> np.ndarray:
    """A garment part's mask as it is drawn: its rim trimmed; a sleeve without the background's specks and grown
    a few pixels into the torso, under which it closes the seam."""
    part = analysis.parts[name]
    trim = max(3, round(RIM_TRIM * max(part.shape)) | 1)
    part = cv2.erode(part, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (trim, trim)))
    if name == "torso":
        return part
    k = max(3, int(SLEEVE_SPECK * max(part.shape)) | 1)
    part = cv2.morphologyEx(part, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    grown = cv2.dilate(part, np.ones((7, 7), np.uint8))
    return np.where(analysis.mask > 0, grown, 0).astype(np.uint8)


def _in_front(labels: np.ndarray, category: str) -> np.ndarray:
    """What is always in front of the garment: the head and hair; for trousers and skirts also the arms, hands,
    the top worn over them and the shoes."""
    front = HEAD + (Lip.GLOVE,)
    if category == "lower_body":
        front += ARMS + (Lip.UPPER_CLOTHES, Lip.COAT, Lip.DRESS, Lip.LEFT_SHOE, Lip.RIGHT_SHOE)
    return np.isin(labels, front)


def _without_loose_pieces(mask: np.ndarray) -> np.ndarray:
    """The warped garment without patches apart from the rest that are too small to be one of its parts."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= LOOSE_PIECE * areas.sum())
    return np.isin(components, keep)
