"""The embedded parser: a 20-class LIP label map from BlazePose's networks plus geometry and colour.

No parsing network ships with a registry package, so this backend builds the map from what does ship:
BlazePose's person segmentation (the silhouette), its 33 body landmarks (where each limb is) and the
468-point face mesh (where the face is). Inside the silhouette, colour decides the rest:

- silhouette: the network's 256x256 mask snapped to the photo's edges with a colour guided filter;
- face (13): the face mesh's convex hull (an ellipse on the pose's face points without a mesh); the neck and
  an open neckline are skin joined to it, as LIP has it;
- skin: a Gaussian colour model fitted to the face (to the hands when the face is out of the photo); skin near
  an arm bone is that arm (14 left, 15 right; hands included), near a leg bone that leg (16, 17). A chest or
  thighs that are mostly "skin" are a skin-coloured garment (beige, tan) instead;
- hair (2): what surrounds the face above the chin, plus hair-coloured pixels hanging below it that are
  closer to the hair than to the top;
- shoes (18, 19): non-skin pixels around the feet landmarks;
- garments: the remaining pixels are clustered (k-means in Lab). The chest's and the thighs' cluster
  histograms are the upper and the lower garment; the waist is the row (along the hip line's tilt) that best
  separates them. A lower garment whose hem runs across the legs is a skirt (12); one cut by the gap between
  the legs is pants (9); an outfit whose upper and lower parts share one colour distribution and end in a
  skirt is a dress (6).

Left and right are the person's own (LIP's convention, like OpenPose's). Everything is solved at 512 pixels
high and the label map is returned at the photo's size, its outline from the full-resolution silhouette.
Where it errs: garments of the skin's or the hair's colour, hair over a top of its colour, coats (labelled
upper clothes), hats (labelled hair).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import takewhile

import cv2
import numpy as np

from services.parsing.colour import (
    Gaussian,
    bhattacharyya,
    guided_upsample,
    histogram,
    kmeans,
    nearest_centre,
    to_lab,
)
from services.parsing.types import ParseEstimate
from vton.runtime.blazepose import Landmark, OnBlazePose
from vton.runtime.errors import NoPersonFound
from vton.runtime.vocab import Keypoint, Lip

WORK_HEIGHT = 512
GUIDE_RADIUS = 4  # at the working size
GUIDE_EPS = 2e-3
NECK_THRESHOLD = 0.7  # share of SKIN_THRESHOLD that skin below the chin must stay within to be the neck
SKIN_THRESHOLD = 14.0  # squared Mahalanobis distance in (0.35 L, a, b); about 99% of a 3-D Gaussian
HAIR_THRESHOLD = 12.0
LUMA_WEIGHT = 0.35  # lighting changes skin's lightness far more than its hue: weigh L down
GARMENT_CLUSTERS = 6
SAME_GARMENT_OVERLAP = 0.8  # Bhattacharyya overlap above which upper and lower are one colour distribution
NOTCH_SHARE = 0.15  # pants: the gap between the legs reaches this share of the garment below the crotch
# Reaches, as shares of the shoulder width: skin this close to an arm's or a leg's bone is that limb, to the
# wrist-hand segment a hand; an arm's distance counts at ARM_PREFERENCE (a hand on a thigh is a hand); a leg
# starts LEG_ABOVE_HIPS above the hips' line.
ARM_REACH, LEG_REACH, HAND_REACH = 0.32, 0.4, 0.25
ARM_PREFERENCE = 0.7
LEG_ABOVE_HIPS = 0.1
# Cloth beside an arm below the waist is weighed as sleeve or lower garment over a window this share wide.
SLEEVE_COLOUR_WINDOW = 0.2
# Skin whose distance to the top's colour model is below TOP_MARGIN times its distance to the skin model is the top.
TOP_MARGIN = 1.0
# The neck's zone: down to NECK_BELOW_SHOULDERS below the shoulders' line, NECK_HALF_WIDTH either side of the
# face's centre. Without a face, the head is what rises HEAD_ABOVE_SHOULDERS above that line within
# HEAD_HALF_WIDTH of the neck.
NECK_BELOW_SHOULDERS, NECK_HALF_WIDTH = 0.6, 0.6
HEAD_ABOVE_SHOULDERS, HEAD_HALF_WIDTH = 0.25, 0.5

# The skeleton's point names ("l" is the person's left) and where BlazePose's landmarks and OpenPose's COCO-18
# keypoints have them.
_LANDMARKS = {
    "nose": Landmark.NOSE, "l_eye": Landmark.L_EYE, "r_eye": Landmark.R_EYE, "l_ear": Landmark.L_EAR,
    "r_ear": Landmark.R_EAR, "mouth_l": Landmark.L_MOUTH, "mouth_r": Landmark.R_MOUTH,
    "l_shoulder": Landmark.L_SHOULDER, "r_shoulder": Landmark.R_SHOULDER, "l_elbow": Landmark.L_ELBOW,
    "r_elbow": Landmark.R_ELBOW, "l_wrist": Landmark.L_WRIST, "r_wrist": Landmark.R_WRIST,
    "l_pinky": Landmark.L_PINKY, "r_pinky": Landmark.R_PINKY, "l_index": Landmark.L_INDEX,
    "r_index": Landmark.R_INDEX, "l_thumb": Landmark.L_THUMB, "r_thumb": Landmark.R_THUMB,
    "l_hip": Landmark.L_HIP, "r_hip": Landmark.R_HIP, "l_knee": Landmark.L_KNEE, "r_knee": Landmark.R_KNEE,
    "l_ankle": Landmark.L_ANKLE, "r_ankle": Landmark.R_ANKLE, "l_heel": Landmark.L_HEEL,
    "r_heel": Landmark.R_HEEL, "l_toe": Landmark.L_TOE, "r_toe": Landmark.R_TOE,
}  # fmt: skip
_KEYPOINTS = {
    "nose": Keypoint.NOSE, "r_shoulder": Keypoint.R_SHOULDER, "r_elbow": Keypoint.R_ELBOW,
    "r_wrist": Keypoint.R_WRIST, "l_shoulder": Keypoint.L_SHOULDER, "l_elbow": Keypoint.L_ELBOW,
    "l_wrist": Keypoint.L_WRIST, "r_hip": Keypoint.R_HIP, "r_knee": Keypoint.R_KNEE,
    "r_ankle": Keypoint.R_ANKLE, "l_hip": Keypoint.L_HIP, "l_knee": Keypoint.L_KNEE,
    "l_ankle": Keypoint.L_ANKLE, "r_eye": Keypoint.R_EYE, "l_eye": Keypoint.L_EYE, "r_ear": Keypoint.R_EAR,
    "l_ear": Keypoint.L_EAR,
}  # fmt: skip
MIN_VISIBILITY = 0.2


@dataclass
class Skeleton:
    """Named body points in pixels with a confidence each; what the region rules need from any pose source."""

    points: dict[str, np.ndarray]  # name -> float32 [3]: x, y, confidence

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, size: tuple[int, int] | None = None) -> Skeleton:
        """BlazePose's [33, 4] landmarks; hands and feet come from the finger and foot landmarks.

        BlazePose places every landmark, also those the frame cuts off (with a low visibility). Given the
        photo's (width, height), such points count as present: a limb that leaves the frame still runs there.
        """
        landmarks = landmarks.astype(np.float32).copy()
        if size is not None:
            width, height = size
            x, y = landmarks[:, 0], landmarks[:, 1]
            outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
            landmarks[outside, 3] = np.maximum(landmarks[outside, 3], 0.5)
        pts = {name: landmarks[i, [0, 1, 3]] for name, i in _LANDMARKS.items()}
        for side in "lr":
            fingers = np.stack([pts[f"{side}_{f}"] for f in ("pinky", "index", "thumb")])
            pts[f"{side}_hand"] = np.array([*fingers[:, :2].mean(0), fingers[:, 2].min()], np.float32)
        return cls(pts)

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray) -> Skeleton:
        """OpenPose COCO-18 keypoints; hands and feet are extrapolated from the forearm and the shin."""
        pts = {name: keypoints[i].astype(np.float32).copy() for name, i in _KEYPOINTS.items()}
        for side in "lr":
            # OpenPose drops joints the frame cuts off; continue the leg down the torso's axis (a thigh is
            # about as long as the torso, a shin as the thigh) so the lower garment still has a bone.
            hip, shoulder = pts[f"{side}_hip"], pts[f"{side}_shoulder"]
            if hip[2] > 0 and shoulder[2] > 0:
                torso = hip[:2] - shoulder[:2]
                if pts[f"{side}_knee"][2] <= 0:
                    pts[f"{side}_knee"] = np.array([*(hip[:2] + 0.9 * torso), 0.5], np.float32)
                if pts[f"{side}_ankle"][2] <= 0:
                    pts[f"{side}_ankle"] = np.array([*(hip[:2] + 1.8 * torso), 0.5], np.float32)
            wrist, elbow = pts[f"{side}_wrist"], pts[f"{side}_elbow"]
            conf = min(wrist[2], elbow[2])
            pts[f"{side}_hand"] = np.array([*(wrist[:2] + 0.35 * (wrist[:2] - elbow[:2])), conf], np.float32)
            ankle, knee = pts[f"{side}_ankle"], pts[f"{side}_knee"]
            conf = min(ankle[2], knee[2])
            shin = ankle[:2] - knee[:2]
            pts[f"{side}_heel"] = np.array([*(ankle[:2] + 0.12 * shin), conf], np.float32)
            pts[f"{side}_toe"] = np.array([*(ankle[:2] + 0.22 * shin), conf], np.float32)
        return cls(pts)

    def scaled(self, factor: float) -> Skeleton:
        return Skeleton(
            {k: np.array([v[0] * factor, v[1] * factor, v[2]], np.float32) for k, v in self.points.items()}
        )

    def ok(self, *names: str) -> bool:
        return all(n in self.points and self.points[n][2] >= MIN_VISIBILITY for n in names)

    def xy(self, name: str) -> np.ndarray:
        return self.points[name][:2]

    def chain(self, *names: str) -> list[np.ndarray]:
        """The longest prefix of the named points that are all present (a limb stops at its first gap)."""
        return [self.xy(n) for n in takewhile(self.ok, names)]


def _distance_to(shape: tuple[int, int], polyline: list[np.ndarray]) -> np.ndarray:
    """Distance (px) of every pixel to a polyline; infinite when the polyline is empty."""
    if not polyline:
        return np.full(shape, np.inf, np.float32)
    canvas = np.full(shape, 255, np.uint8)
    pts = np.round(np.array(polyline)).astype(np.int32)
    # Points may lie outside the photo (a limb leaving the frame): clip the drawing, not the geometry.
    if len(pts) == 1:
        cv2.circle(canvas, tuple(int(v) for v in pts[0]), 1, 0, -1)
    else:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 0, 1)
    if canvas.min() == 255:
        return np.full(shape, np.inf, np.float32)
    return cv2.distanceTransform(canvas, cv2.DIST_L2, 3)


def _components_touching(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected components of `candidates` that contain a pixel of `seeds`."""
    count, comp = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(candidates, bool)
    hit = np.unique(comp[seeds & candidates])
    hit = hit[hit > 0]
    return np.isin(comp, hit)


def refine_silhouette(image: np.ndarray, probability: np.ndarray, small_size: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: the person, the segmentation snapped to the photo's edges; stray blobs and holes cleaned."""
    w, h = small_size
    guide_full = image.astype(np.float32) * (1.0 / 255.0)
    guide_small = cv2.resize(guide_full, (w, h), interpolation=cv2.INTER_AREA)
    prob_small = cv2.resize(probability.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    refined = guided_upsample(guide_small, prob_small, guide_full, GUIDE_RADIUS, GUIDE_EPS)
    person = (refined > 0.5).astype(np.uint8)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=8)
    if count > 2:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = 1 + np.flatnonzero(areas >= 0.05 * areas.max())
        person = np.isin(comp, keep).astype(np.uint8)
    # Fill small holes (a button, a highlight), not the gaps between an arm and the body.
    holes = (1 - person).astype(np.uint8)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    small_hole = 0.0015 * person.size
    for i in range(1, count):
        x, y, bw, bh, area = stats[i]
        touches_border = x == 0 or y == 0 or x + bw == person.shape[1] or y + bh == person.shape[0]
        if area < small_hole and not touches_border:
            person[comp == i] = 1
    return person > 0


def _fill_unlabelled(labels: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Person pixels left at 0 take the label of the nearest labelled pixel; non-person pixels become 0."""
    labels = np.where(person, labels, 0).astype(np.uint8)
    holes = person & (labels == 0)
    if not holes.any() or not (labels > 0).any():
        return labels
    source = np.where(labels > 0, 0, 255).astype(np.uint8)
    _, nearest = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    # `nearest` numbers the zero pixels of `source` in row-major order, starting at 1.
    flat = labels[labels > 0]
    filled = labels.copy()
    filled[holes] = flat[nearest[holes] - 1]
    return filled


class _Regions:
    """The region rules at the working size; one instance per photo."""

    def __init__(self, image: np.ndarray, person: np.ndarray, sk: Skeleton, face: np.ndarray | None):
        self.image, self.person, self.sk = image, person, sk
        self.h, self.w = person.shape
        self.lab = to_lab(image)
        self.features = self.lab * np.array([LUMA_WEIGHT, 1.0, 1.0], np.float32)
        self.ys, self.xs = np.mgrid[0 : self.h, 0 : self.w].astype(np.float32)
        self.labels = np.zeros((self.h, self.w), np.uint8)
        self.unit = self._body_unit()
        self.face_poly = self._face_region(face)
        self.bones = self._bone_distances()
        self.shoulders_y = self._line_y("l_shoulder", "r_shoulder")
        self.hips_y = self._line_y("l_hip", "r_hip")
        self.skin_distance = np.full((self.h, self.w), np.inf, np.float32)

    # --- geometry ----------------------------------------------------------------------------------------------
    def _body_unit(self) -> float:
        """The shoulder width: every radius below is a share of it (so the rules do not depend on scale)."""
        sk = self.sk
        if sk.ok("l_shoulder", "r_shoulder"):
            width = float(np.linalg.norm(sk.xy("l_shoulder") - sk.xy("r_shoulder")))
            if sk.ok("l_hip", "r_hip"):
                torso = float(
                    np.linalg.norm(
                        (sk.xy("l_shoulder") + sk.xy("r_shoulder") - sk.xy("l_hip") - sk.xy("r_hip")) / 2
                    )
                )
                width = max(width, 0.55 * torso)  # a person turned sideways has narrow shoulders
            return max(width, 8.0)
        ys, xs = np.nonzero(self.person)
        return max(8.0, 0.25 * float(xs.max() - xs.min())) if len(xs) else self.w / 4

    def _face_region(self, face: np.ndarray | None) -> np.ndarray:
        region = np.zeros((self.h, self.w), np.uint8)
        if face is not None and len(face) >= 3:
            hull = cv2.convexHull(np.round(face[:, :2]).astype(np.int32))
            cv2.fillConvexPoly(region, hull, 1)
            return region > 0
        sk = self.sk
        # No mesh (face small, turned away, or cut by the frame): an ellipse on the pose's face points.
        names = [n for n in ("nose", "l_eye", "r_eye", "mouth_l", "mouth_r", "l_ear", "r_ear") if sk.ok(n)]
        inside = [n for n in names if 0 <= sk.xy(n)[0] < self.w and 0 <= sk.xy(n)[1] < self.h]
        if "nose" not in inside:
            return region > 0
        centre = np.mean([sk.xy(n) for n in names], axis=0)
        half = 0.3 * self.unit
        if sk.ok("l_ear", "r_ear"):
            half = max(half, 0.5 * float(np.linalg.norm(sk.xy("l_ear") - sk.xy("r_ear"))))
        axes = (max(2, round(half)), max(2, round(half * 1.35)))
        cv2.ellipse(region, (round(float(centre[0])), round(float(centre[1]))), axes, 0, 0, 360, 1, -1)
        return region > 0

    def _bone_distances(self) -> dict[str, np.ndarray]:
        sk, shape = self.sk, (self.h, self.w)
        d = {}
        for side, label in (("l", "l"), ("r", "r")):
            d[f"{label}_arm"] = _distance_to(
                shape, sk.chain(f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist", f"{side}_hand")
            )
            d[f"{label}_leg"] = _distance_to(
                shape, sk.chain(f"{side}_hip", f"{side}_knee", f"{side}_ankle", f"{side}_heel")
            )
            d[f"{label}_hand"] = _distance_to(shape, sk.chain(f"{side}_wrist", f"{side}_hand"))
            d[f"{label}_foot"] = _distance_to(shape, sk.chain(f"{side}_ankle", f"{side}_heel", f"{side}_toe"))
        torso = np.full(shape, 255, np.uint8)
        names = ("l_shoulder", "r_shoulder", "r_hip", "l_hip")
        if sk.ok(*names):
            cv2.fillConvexPoly(torso, np.round([sk.xy(n) for n in names]).astype(np.int32), 0)
        d["torso"] = (
            cv2.distanceTransform(torso, cv2.DIST_L2, 3)
            if torso.min() == 0
            else np.full(shape, np.inf, np.float32)
        )
        return d

    def _line_y(self, left: str, right: str) -> np.ndarray | None:
        """y of the line through two points, at every pixel's x ([H, W]); None without both points."""
        sk = self.sk
        if not sk.ok(left, right):
            return None
        (x0, y0), (x1, y1) = sk.xy(right), sk.xy(left)
        slope = (y1 - y0) / (x1 - x0) if abs(x1 - x0) > 1 else 0.0
        slope = float(np.clip(slope, -0.5, 0.5))
        return y0 + slope * (self.xs - x0)

    # --- colour models -----------------------------------------------------------------------------------------
    def _skin_model(self) -> Gaussian | None:
        sample = np.zeros((self.h, self.w), np.uint8)
        if self.face_poly.any():
            ys, xs = np.nonzero(self.face_poly)
            size = max(3, int(0.12 * (ys.max() - ys.min())))
            sample = cv2.erode(self.face_poly.astype(np.uint8), np.ones((size, size), np.uint8))
        if sample.sum() < 50:
            # The face is out of the photo: the hands are the other skin that is nearly always bare.
            sample = np.zeros((self.h, self.w), np.uint8)
            for side in "lr":
                if self.sk.ok(f"{side}_hand"):
                    x, y = self.sk.xy(f"{side}_hand")
                    cv2.circle(
                        sample, (round(float(x)), round(float(y))), max(2, round(0.08 * self.unit)), 1, -1
                    )
        sample = (sample > 0) & self.person
        return Gaussian.fit(self.features[sample], floor=6.0, trim=0.75)

    # --- the rules ---------------------------------------------------------------------------------------------
    def run(self) -> np.ndarray:
        """The label map: face, hair, limbs, neck, shoes, then the garments from what is left."""
        labels = self.labels
        skin, self.skin_distance = self._skin()
        face = self.face_poly & self.person
        labels[face] = Lip.FACE
        skin &= ~face
        hair = self._hair(skin, face)
        labels[hair] = Lip.HAIR
        skin &= ~hair
        skin = self._drop_skin_coloured_garments(skin)
        skin = self._drop_skin_like_the_top(skin)
        self._limbs(skin)
        if face.any():
            self._neck(skin, face)
        else:
            self._head_without_face(skin)
        cloth = self.person & (labels == 0) & ~skin
        self._shoes(cloth)
        self._garments(cloth & (labels == 0))
        return labels

    def _skin(self) -> tuple[np.ndarray, np.ndarray]:
        """(skin mask, distance to the skin model) over the person; no skin without a model."""
        skin_model = self._skin_model()
        if skin_model is None:
            return np.zeros_like(self.person), np.full((self.h, self.w), np.inf, np.float32)
        # A 3x3 mean of the distance: shading and fabric texture make single pixels flicker.
        distance = cv2.blur(skin_model.distance(self.features), (3, 3))
        skin = self.person & (distance < SKIN_THRESHOLD)
        skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        return skin, distance

    def _drop_skin_like_the_top(self, skin: np.ndarray) -> np.ndarray:
        """Skin below the shoulders that looks more like the top worn over the chest than like the face is that
        top: the sleeves and the front of a beige or tan hoodie pass the skin test, but they are of one colour
        with its chest. The hands and the neck stay skin."""
        chest = self._chest(0.25, 0.55) & self.person & ~skin
        top = Gaussian.fit(self.features[chest], floor=6.0, trim=0.8) if chest.sum() > 50 else None
        if top is None or self.shoulders_y is None:
            return skin
        top_distance = cv2.blur(top.distance(self.features), (3, 3))
        hands = np.minimum(self.bones["l_hand"], self.bones["r_hand"]) < HAND_REACH * self.unit
        like_top = skin & (top_distance < TOP_MARGIN * self.skin_distance) & (self.ys > self.shoulders_y)
        return skin & ~(like_top & ~hands)

    def _limbs(self, skin: np.ndarray) -> None:
        """Skin within reach of a bone is that limb, the nearest bone deciding which. Arms are favoured over legs
        (a hand resting on a thigh is still a hand), and a leg starts at the hips (a belly is no leg)."""
        bones, u = self.bones, self.unit
        names = ("l_arm", "r_arm", "l_leg", "r_leg")
        limb_labels = np.array([Lip.LEFT_ARM, Lip.RIGHT_ARM, Lip.LEFT_LEG, Lip.RIGHT_LEG], np.uint8)
        reach = np.array([ARM_REACH * u, ARM_REACH * u, LEG_REACH * u, LEG_REACH * u], np.float32)
        stack = np.stack([bones[n] * (ARM_PREFERENCE if "arm" in n else 1.0) for n in names])
        nearest = stack.argmin(axis=0)
        near_dist = np.take_along_axis(np.stack([bones[n] for n in names]), nearest[None], 0)[0]
        limb_skin = skin & (near_dist < reach[nearest])
        if self.hips_y is not None:
            limb_skin &= (nearest < 2) | (self.ys > self.hips_y - LEG_ABOVE_HIPS * u)
        self.labels[limb_skin] = limb_labels[nearest[limb_skin]]
        # Hands: skin around the wrist-to-hand segment is the hand even where it rests on a thigh.
        hands = np.stack([bones["l_hand"], bones["r_hand"]])
        near_hand = skin & (hands.min(axis=0) < HAND_REACH * u)
        self.labels[near_hand] = np.where(hands[0] <= hands[1], Lip.LEFT_ARM, Lip.RIGHT_ARM)[near_hand]

    def _neck(self, skin: np.ndarray, face: np.ndarray) -> None:
        """The neck and an open neckline: skin joined to the face, between the chin and the chest, within the
        shoulders (LIP counts them as face)."""
        if self.shoulders_y is None:
            return
        u = self.unit
        ys, xs = np.nonzero(face)
        centre_x, centre_y = xs.mean(), ys.mean()
        zone = (
            (self.ys > centre_y)
            & (self.ys < self.shoulders_y + NECK_BELOW_SHOULDERS * u)
            & (np.abs(self.xs - centre_x) < NECK_HALF_WIDTH * u)
        )
        seeds = cv2.dilate(face.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        neck = _components_touching(skin & zone & (self.labels == 0), seeds)
        # Below the chin the neck is the face's own skin in about the face's light: a pixel there that only
        # just passes the skin test is a light garment (a white shirt or T-shirt under an open jacket, its
        # collar), and it is that garment, or it would stay out of the agnostic mask and show through.
        # Only lighter than the face's lit skin (a beard darkens its median): a neck in the chin's shadow drifts
        # from the face's colour too.
        chin = float(ys.max())
        lighter = self.lab[..., 0] > float(np.percentile(self.lab[..., 0][face], 80))
        garment_like = (
            neck & (self.ys > chin) & lighter & (self.skin_distance >= NECK_THRESHOLD * SKIN_THRESHOLD)
        )
        self.labels[neck & ~garment_like] = Lip.FACE
        self.labels[garment_like] = Lip.UPPER_CLOTHES

    def _head_without_face(self, skin: np.ndarray) -> None:
        """The frame cuts the face (or it is turned away): what rises above the shoulders around the neck is
        still head, skin as face and the rest as hair, never garment."""
        if self.shoulders_y is None:
            return
        neck_x = (self.sk.xy("l_shoulder")[0] + self.sk.xy("r_shoulder")[0]) / 2
        head = (
            self.person
            & (self.labels == 0)
            & (self.ys < self.shoulders_y - HEAD_ABOVE_SHOULDERS * self.unit)
            & (np.abs(self.xs - neck_x) < HEAD_HALF_WIDTH * self.unit)
        )
        self.labels[head & skin] = Lip.FACE
        self.labels[head & ~skin] = Lip.HAIR

    def _chest(self, top: float, bottom: float) -> np.ndarray:
        """bool: the torso polygon between two shares of the shoulder-to-hip span (0 = shoulders)."""
        if self.shoulders_y is None or self.hips_y is None or not np.isfinite(self.bones["torso"]).all():
            return np.zeros((self.h, self.w), bool)
        span = self.hips_y - self.shoulders_y
        return (
            (self.bones["torso"] == 0)
            & (self.ys > self.shoulders_y + top * span)
            & (self.ys < self.shoulders_y + bottom * span)
        )

    def _drop_skin_coloured_garments(self, skin: np.ndarray) -> np.ndarray:
        """Skin-coloured garments (beige, tan, nude) pass the skin test; find them by where the "skin" lies.

        A chest that is mostly "skin" is a skin-coloured top: only the forearms and hands stay skin there.
        Thighs that are "skin" right up to the hip joints are skin-coloured trousers: the legs are cloth.
        """
        chest = self._chest(0.25, 0.55) & self.person
        if chest.sum() > 50 and (skin & chest).sum() > 0.6 * chest.sum():
            upper_arm = np.minimum(
                _distance_to((self.h, self.w), self.sk.chain("l_shoulder", "l_elbow")),
                _distance_to((self.h, self.w), self.sk.chain("r_shoulder", "r_elbow")),
            )
            forearm = np.minimum(
                _distance_to((self.h, self.w), self.sk.chain("l_elbow", "l_wrist", "l_hand")),
                _distance_to((self.h, self.w), self.sk.chain("r_elbow", "r_wrist", "r_hand")),
            )
            above_hips = self.ys < self.hips_y if self.hips_y is not None else np.ones_like(skin)
            skin = skin & ~(above_hips & (forearm >= upper_arm))
        if self.hips_y is not None:
            legs = np.minimum(self.bones["l_leg"], self.bones["r_leg"]) < 0.2 * self.unit
            knee_y = self._knee_row()
            band = (
                legs
                & self.person
                & (self.ys > self.hips_y)
                & (self.ys < self.hips_y + 0.25 * (knee_y - self.hips_y))
            )
            if band.sum() > 50 and (skin & band).sum() > 0.6 * band.sum():
                arm = np.minimum(self.bones["l_arm"], self.bones["r_arm"])
                leg = np.minimum(self.bones["l_leg"], self.bones["r_leg"])
                skin = skin & ~((self.ys > self.hips_y - 0.3 * self.unit) & (leg < arm))
        return skin

    def _hair(self, skin: np.ndarray, face: np.ndarray) -> np.ndarray:
        """Around the face above the chin: hair, whatever its colour (blond hair passes the skin test). Below
        the chin: pixels joined to that hair whose colour is closer to the hair than to skin and garment."""
        if not face.any():
            return np.zeros_like(face)
        ys, xs = np.nonzero(face)
        fx0, fx1, fy0, fy1 = xs.min(), xs.max(), ys.min(), ys.max()
        fw, fh = fx1 - fx0 + 1, fy1 - fy0 + 1
        chin = fy1 - 0.2 * fh
        around_head = (self.xs > fx0 - 0.8 * fw) & (self.xs < fx1 + 0.8 * fw) & (self.ys > fy0 - 1.2 * fh)
        core = self.person & ~face & around_head & (self.ys < chin)
        if self.shoulders_y is not None:
            core &= self.ys < self.shoulders_y - 0.1 * self.unit
        core = _components_touching(core, cv2.dilate(face.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
        if core.sum() < 30:
            return core
        hair_model = Gaussian.fit(self.lab[core], floor=9.0, trim=0.8)
        if hair_model is None:
            return core
        hair_d = hair_model.distance(self.lab)
        below = self.person & ~face & ~core & (self.ys >= chin) & (self.ys < fy1 + 2.5 * fh)
        below &= (self.xs > fx0 - 1.0 * fw) & (self.xs < fx1 + 1.0 * fw)
        below &= hair_d < HAIR_THRESHOLD
        # Skin below the chin stays skin when it looks less like the hair, and always in the neck's column
        # (light brown hair and skin can share one colour).
        neck_column = np.abs(self.xs - (fx0 + fx1) / 2) < 0.35 * fw
        below &= ~(skin & ((hair_d >= 0.5 * HAIR_THRESHOLD) | neck_column))
        # A garment of the hair's colour: hair then stays off the torso below the shoulders.
        chest = self._chest(0.2, 0.6) & self.person & ~skin
        garment = Gaussian.fit(self.lab[chest], floor=9.0, trim=0.8) if chest.sum() > 50 else None
        if garment is not None:
            # Closer to the hair than to the top, judged over a small window: dark hair on a dark top is
            # too noisy to decide pixel by pixel.
            size = max(3, round(0.06 * self.unit)) | 1
            margin = cv2.blur(garment.distance(self.lab) - hair_d, (size, size))
            below &= margin > 2.0
            if hair_model.distance(garment.mean) < 2 * HAIR_THRESHOLD:
                # Hair and top of similar colours: hair stays off the torso and the arms.
                arm = np.minimum(self.bones["l_arm"], self.bones["r_arm"])
                below &= (self.bones["torso"] > 0) & (arm > 0.3 * self.unit)
        return core | _components_touching(below | core, core)

    def _shoes(self, cloth: np.ndarray) -> None:
        sk, u = self.sk, self.unit
        for side, label in (("l", Lip.LEFT_SHOE), ("r", Lip.RIGHT_SHOE)):
            if not sk.ok(f"{side}_ankle"):
                continue
            ankle_y = sk.xy(f"{side}_ankle")[1]
            other = self.bones["r_foot" if side == "l" else "l_foot"]
            region = cloth & (self.bones[f"{side}_foot"] < 0.22 * u) & (self.bones[f"{side}_foot"] <= other)
            region &= self.ys > ankle_y - 0.05 * u
            self.labels[region] = label

    def _garments(self, cloth: np.ndarray) -> None:
        labels, u = self.labels, self.unit
        if not cloth.any():
            return
        centres = kmeans(self.lab[cloth], GARMENT_CLUSTERS)
        assign = np.full((self.h, self.w), -1, np.int32)
        assign[cloth] = nearest_centre(self.lab[cloth], centres)
        k = len(centres)

        arm = np.minimum(self.bones["l_arm"], self.bones["r_arm"])
        leg = np.minimum(self.bones["l_leg"], self.bones["r_leg"])
        sleeve = cloth & (arm < 0.45 * u) & (arm < self.bones["torso"]) & (arm < leg)

        # Colour samples: the chest (upper garment) and the thighs (lower garment).
        upper_sample = cloth & self._chest(0.2, 0.55)
        min_sample = 0.002 * self.h * self.w
        lower_sample = self._thighs(cloth, 0.3, 0.75)
        if lower_sample.sum() < min_sample:
            # The frame cuts the thighs: take what shows right below the hip joints.
            lower_sample = self._thighs(cloth, 0.0, 0.75)
        n_upper, n_lower = int(upper_sample.sum()), int(lower_sample.sum())

        if n_lower < min_sample or self.hips_y is None:
            # No thighs in the photo: one garment, the upper one.
            labels[cloth] = Lip.UPPER_CLOTHES
            return
        if n_upper < min_sample:
            labels[cloth & ~sleeve] = self._lower_label(cloth & ~sleeve)
            labels[cloth & sleeve] = Lip.UPPER_CLOTHES
            return

        hist_u = histogram(assign[upper_sample], k)
        hist_l = histogram(assign[lower_sample], k)
        same = bhattacharyya(hist_u, hist_l) > SAME_GARMENT_OVERLAP
        p_upper = (hist_u / (hist_u + hist_l))[np.maximum(assign, 0)]

        # The waist: the row, tilted like the hips, above which pixels look upper and below lower.
        body = cloth & ~sleeve
        tilt_row = np.clip(np.round(self.ys - (self.hips_y - self.hips_y.mean())), 0, self.h - 1).astype(
            np.int32
        )
        rows = tilt_row[body]
        cost_above = np.bincount(rows, weights=1.0 - p_upper[body], minlength=self.h)
        cost_below = np.bincount(rows, weights=p_upper[body], minlength=self.h)
        # cost(t) = lower-looking pixels in rows < t + upper-looking pixels in rows >= t
        total = np.concatenate([[0.0], np.cumsum(cost_above)]) + np.concatenate(
            [np.cumsum(cost_below[::-1])[::-1], [0.0]]
        )
        lo = int(
            np.clip(
                np.mean(self.shoulders_y) + 0.3 * (self.hips_y.mean() - np.mean(self.shoulders_y)),
                0,
                self.h - 1,
            )
        )
        hi = int(np.clip(self._knee_row(), lo + 1, self.h))
        waist = lo + int(np.argmin(total[lo:hi]))
        if same:
            # One colour from top to legs: colour cannot place the waist; it sits a little above the hips.
            waist = int(np.clip(self.hips_y.mean() - 0.15 * u, 0, self.h - 1))
        lower_part = body & (tilt_row >= waist)
        lower_label = self._lower_label(lower_part)
        if same and lower_label == Lip.SKIRT:
            labels[cloth] = Lip.DRESS
            return
        if not same:
            # Cloth beside a hanging arm below the waist is the sleeve only in the top's colours: in the lower
            # garment's it is the skirt or the trousers the hand rests against.
            # Judged over a window: a print's dark spots share the sleeve's black.
            size = max(3, round(SLEEVE_COLOUR_WINDOW * u)) | 1
            weight = cv2.blur(cloth.astype(np.float32), (size, size))
            looks_upper = cv2.blur(np.where(cloth, p_upper, 0).astype(np.float32), (size, size))
            looks_upper /= np.maximum(weight, 1e-6)
            lower_part |= cloth & sleeve & (tilt_row >= waist) & (looks_upper < 0.35)
        # (Same colour with two legs: separates of one colour, or a jumpsuit, which LIP rarely sees.)
        labels[cloth & ~lower_part] = Lip.UPPER_CLOTHES
        labels[lower_part] = lower_label

    def _thighs(self, cloth: np.ndarray, start: float, stop: float) -> np.ndarray:
        """Cloth pixels along both thighs, between two shares of the hip-to-knee bone."""
        sample = np.zeros_like(cloth)
        for side in "lr":
            thigh = self.sk.chain(f"{side}_hip", f"{side}_knee")
            if len(thigh) == 2:
                a, b = thigh
                seg = _distance_to((self.h, self.w), [a + start * (b - a), a + stop * (b - a)])
                sample |= cloth & (seg < 0.15 * self.unit)
        return sample

    def _knee_row(self) -> float:
        sk = self.sk
        knees = [sk.xy(n)[1] for n in ("l_knee", "r_knee") if sk.ok(n)]
        if knees:
            return float(np.mean(knees))
        return float(self.hips_y.mean() + 1.2 * self.unit)

    def _lower_label(self, garment: np.ndarray) -> int:
        """Pants or skirt, from the notch between the legs.

        Trousers end lower along the legs than between them: the gap between the legs cuts a notch up to the
        crotch. A skirt's hem runs across: it ends about as low between the legs as along them.
        """
        sk = self.sk
        legs = [sk.chain(f"{s}_hip", f"{s}_knee", f"{s}_ankle") for s in "lr"]
        # Slivers (a shadowed edge of a bare leg that failed the skin test) are not garment.
        size = max(3, round(0.06 * self.unit))
        garment = (
            cv2.morphologyEx(garment.astype(np.uint8), cv2.MORPH_OPEN, np.ones((size, size), np.uint8)) > 0
        )
        if any(len(leg) < 2 for leg in legs) or not garment.any():
            return Lip.PANTS
        hip_y = float(self.hips_y.mean())
        knee_y = self._knee_row()
        crotch = hip_y + 0.2 * (knee_y - hip_y)
        last = min(self.h - 1, int(np.nonzero(garment)[0].max()))
        rows = np.arange(max(0, int(crotch)), last + 1)
        if len(rows) < 3:
            return Lip.PANTS

        def leg_x(leg: list[np.ndarray]) -> np.ndarray:
            pts = np.array(leg)
            order = np.argsort(pts[:, 1])
            return np.interp(rows, pts[order, 1], pts[order, 0])

        def covered(xs: np.ndarray) -> np.ndarray:
            x = np.clip(np.round(xs).astype(np.int32), 1, self.w - 2)
            return garment[rows, x] | garment[rows, x - 1] | garment[rows, x + 1]

        left, right = leg_x(legs[0]), leg_x(legs[1])
        along_legs = covered(left) | covered(right)
        between = covered((left + right) / 2)
        if not along_legs.any():
            return Lip.PANTS
        leg_end = int(np.flatnonzero(along_legs).max())
        gaps = np.flatnonzero(~between[: leg_end + 1])
        mid_end = int(gaps[0]) if len(gaps) else leg_end + 1
        notch = (leg_end + 1 - mid_end) / (leg_end + 1)
        if notch > NOTCH_SHARE:
            return Lip.PANTS
        # No notch but the frame cuts the garment: no hem in sight, and trousers are the likelier garment.
        return Lip.PANTS if rows[leg_end] >= self.h - 2 else Lip.SKIRT


def parse_person(
    image: np.ndarray,
    probability: np.ndarray,
    skeleton: Skeleton,
    face: np.ndarray | None = None,
    work_height: int = WORK_HEIGHT,
) -> np.ndarray:
    """uint8 [H, W] LIP label map of a photo from a person probability map [H, W], the skeleton and (if known)
    the 468-point face mesh, all in the photo's pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, work_height / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    person_full = refine_silhouette(image, probability, size)
    if not person_full.any():
        raise NoPersonFound("no person found")
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    person = cv2.resize(person_full.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    face_small = None if face is None else face[:, :2] * scale
    labels = _Regions(small, person, skeleton.scaled(scale), face_small).run()
    labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return _fill_unlabelled(labels, person_full)


class GeometricParser(OnBlazePose):
    """Embedded parsing backend: BlazePose (pose, segmentation, face mesh) plus the region rules above."""

    label_set = "lip"

    def parse(self, image: np.ndarray) -> ParseEstimate:
        """LIP label map of the largest person; raises NoPersonFound when the photo shows nobody."""
        return self.parse_observation(image, self.pose.observe(image, with_face=True))

    def parse_observation(self, image: np.ndarray, observation) -> ParseEstimate:
        """The label map from a BlazePose observation of this photo already at hand (made with its face)."""
        skeleton = Skeleton.from_landmarks(observation.landmarks, (image.shape[1], image.shape[0]))
        labels = parse_person(image, observation.mask, skeleton, observation.face)
        return ParseEstimate(
            labels=labels, label_set=self.label_set, people_detected=observation.people_detected
        )
