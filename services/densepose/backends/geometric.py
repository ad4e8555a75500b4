"""The embedded DensePose backend: an IUV fitted from BlazePose's 33 landmarks and its person segmentation.

No DensePose network runs here. A body-part model is laid over the person instead:
- each limb (upper/lower arm, hand, upper/lower leg, foot) is a capsule between its joints, its radius measured
  on the person mask (the mask's distance transform along the bone is the limb's half width);
- the torso is the shoulders-hips quadrilateral, the head a capsule from the neck to the crown above the
  shoulder line;
- a pixel inside several parts takes the one nearest the camera (BlazePose's z), a pixel of the mask inside
  none takes the part it is relatively nearest to (distance / radius), so loose clothes and hair get a part;
- everything is cut to the person mask.

Part numbers are DensePose's (checked against DensePose renderings of VITON-HD photos): 1/2 torso back/front,
3/4 right/left hand, 5/6 left/right foot, 7/9 right upper leg back/front, 8/10 left upper leg back/front,
11/13 right lower leg back/front, 12/14 left lower leg back/front, 15/17 left upper arm inner/outer, 16/18 right
upper arm inner/outer, 19/21 left lower arm inner/outer, 20/22 right lower arm inner/outer, 23/24 head
right/left. DensePose's arm charts are the limb's two halves seen from the front (the half toward the body and
the outer half), so they do not depend on which way the person faces; torso and legs do.

U runs along each part, 0 at the proximal joint and 1 at the distal end; V runs across it: 0..1 from the
person's right edge to the left edge for single-chart parts, 0 on the axis to 1 at the edge for the halves of a
split part (arms, head). These are the model's own chart coordinates, not SMPL's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.densepose.types import DensePoseEstimate
from vton.runtime.blazepose import Landmark, OnBlazePose, faces_camera

# DensePose part indices
TORSO_BACK, TORSO_FRONT = 1, 2
R_HAND, L_HAND, L_FOOT_PART, R_FOOT_PART = 3, 4, 5, 6
HEAD_RIGHT, HEAD_LEFT = 23, 24
# Per side: the arms' (inner, outer) halves, the legs' (front, back) charts.
UPPER_ARM = {"right": (16, 18), "left": (15, 17)}
LOWER_ARM = {"right": (20, 22), "left": (19, 21)}
UPPER_LEG = {"right": (9, 7), "left": (10, 8)}
LOWER_LEG = {"right": (13, 11), "left": (14, 12)}

MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Capsule:
    """A limb: segment a -> b (proximal -> distal) with a radius; flat ends do not bulge past their joint."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    z_a: float
    z_b: float
    labels: tuple[int, int] | int  # (inner, outer) for split parts, else one label
    inner_towards: np.ndarray | None = None  # a point on the inner side (the body's axis) for split parts
    flat_proximal: bool = False
    flat_distal: bool = False


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else np.array([0.0, -1.0])


def _perpendicular(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def _mask_half_width(dist: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    """The mask's half width along the middle of a bone (median distance-transform value), None if off-image."""
    height, width = dist.shape
    ts = np.linspace(0.3, 0.7, 9)
    points = a[None] + ts[:, None] * (b - a)[None]
    xs, ys = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    values = dist[ys[inside], xs[inside]]
    values = values[values > 0]
    return float(np.median(values)) if len(values) >= 3 else None


def _limb_radius(dist: np.ndarray, a: np.ndarray, b: np.ndarray, low: float, high: float) -> float:
    """Half width from the mask, kept within [low, high] x bone length (a clothed or merged blob reads wide)."""
    length = float(np.linalg.norm(b - a))
    measured = _mask_half_width(dist, a, b)
    guess = (low + high) / 2 * length if measured is None else measured
    return float(np.clip(guess, low * length, high * length)) + 1.0


class BodyPartModel:
    """The fitted primitives of one person: limb capsules, torso quadrilateral, head capsule."""

    def __init__(self, landmarks: np.ndarray, mask: np.ndarray):
        self.lm = landmarks[:, :2].astype(np.float64)
        self.z = landmarks[:, 2].astype(np.float64)
        self.person = (mask > MASK_THRESHOLD).astype(np.uint8)
        self.dist = cv2.distanceTransform(self.person, cv2.DIST_L2, 5)
        lm = self.lm
        self.shoulder_mid = (lm[Landmark.L_SHOULDER] + lm[Landmark.R_SHOULDER]) / 2
        self.hip_mid = (lm[Landmark.L_HIP] + lm[Landmark.R_HIP]) / 2
        # The person's right -> left direction, from the shoulders and hips together.
        self.right_to_left = _unit(
            (lm[Landmark.L_SHOULDER] - lm[Landmark.R_SHOULDER]) + (lm[Landmark.L_HIP] - lm[Landmark.R_HIP])
        )
        self.up = _unit(self.shoulder_mid - self.hip_mid)
        self.facing_camera = faces_camera(landmarks, Landmark.L_SHOULDER, Landmark.R_SHOULDER)
        shoulder_width = float(
            np.linalg.norm(landmarks[Landmark.L_SHOULDER, :2] - landmarks[Landmark.R_SHOULDER, :2])
        )
        hip_width = float(np.linalg.norm(landmarks[Landmark.L_HIP, :2] - landmarks[Landmark.R_HIP, :2]))
        self.torso_margin = 0.2 * max(shoulder_width, hip_width, 1.0)
        self.torso_half_width = max(shoulder_width, hip_width) / 2 + self.torso_margin
        self.capsules = self._limbs()
        self._head()

    # --- primitives --------------------------------------------------------------------------------------------
    def _limbs(self) -> list[Capsule]:
        lm, z, dist = self.lm, self.z, self.dist
        front = self.facing_camera
        body_axis = (self.shoulder_mid + self.hip_mid) / 2
        capsules = []
        for side in ("right", "left"):
            r = side == "right"
            sh, el, wr = (
                (Landmark.R_SHOULDER, Landmark.R_ELBOW, Landmark.R_WRIST)
                if r
                else (Landmark.L_SHOULDER, Landmark.L_ELBOW, Landmark.L_WRIST)
            )
            hip, kn, an = (
                (Landmark.R_HIP, Landmark.R_KNEE, Landmark.R_ANKLE)
                if r
                else (Landmark.L_HIP, Landmark.L_KNEE, Landmark.L_ANKLE)
            )
            pinky, index = (Landmark.R_PINKY, Landmark.R_INDEX) if r else (Landmark.L_PINKY, Landmark.L_INDEX)
            heel, toe = (Landmark.R_HEEL, Landmark.R_TOE) if r else (Landmark.L_HEEL, Landmark.L_TOE)
            upper_arm, lower_arm = UPPER_ARM[side], LOWER_ARM[side]
            upper_leg = UPPER_LEG[side][0 if front else 1]
            lower_leg = LOWER_LEG[side][0 if front else 1]
            hand = R_HAND if r else L_HAND
            foot = R_FOOT_PART if r else L_FOOT_PART

            arm_r = _limb_radius(dist, lm[sh], lm[el], 0.12, 0.3)
            forearm_r = _limb_radius(dist, lm[el], lm[wr], 0.1, 0.25)
            knuckles = (lm[pinky] + lm[index]) / 2
            hand_tip = lm[wr] + 1.9 * (knuckles - lm[wr])
            hand_r = max(
                0.6 * float(np.linalg.norm(lm[index] - lm[pinky])),
                0.3 * float(np.linalg.norm(knuckles - lm[wr])),
            )
            hand_r = max(hand_r, 0.6 * forearm_r) + 1.0
            thigh_r = _limb_radius(dist, lm[hip], lm[kn], 0.14, 0.35)
            shin_r = _limb_radius(dist, lm[kn], lm[an], 0.1, 0.3)
            foot_r = max(0.35 * float(np.linalg.norm(lm[toe] - lm[heel])), 0.6 * shin_r) + 1.0
            capsules += [
                Capsule(lm[sh], lm[el], arm_r, z[sh], z[el], upper_arm, body_axis, flat_distal=True),
                Capsule(lm[el], lm[wr], forearm_r, z[el], z[wr], lower_arm, body_axis, flat_distal=True),
                Capsule(lm[wr], hand_tip, hand_r, z[wr], z[index], hand, flat_proximal=True),
                Capsule(
                    lm[hip], lm[kn], thigh_r, z[hip], z[kn], upper_leg, flat_proximal=True, flat_distal=True
                ),
                Capsule(lm[kn], lm[an], shin_r, z[kn], z[an], lower_leg, flat_distal=True),
                Capsule(lm[an], lm[toe], foot_r, z[an], z[toe], foot),
            ]
        return capsules

    def _head(self) -> None:
        lm = self.lm
        ears = (lm[Landmark.L_EAR] + lm[Landmark.R_EAR]) / 2
        eyes = (lm[Landmark.L_EYE] + lm[Landmark.R_EYE]) / 2
        ear_span = float(np.linalg.norm(lm[Landmark.L_EAR] - lm[Landmark.R_EAR]))
        neck_to_ears = float(np.linalg.norm(ears - self.shoulder_mid))
        # The skull's radius: half the ear span seen from the front, else from the neck's length (profile views).
        self.head_r = max(0.62 * ear_span, 0.45 * neck_to_ears, 1.0)
        self.head_centre = (ears + eyes) / 2
        self.head_axis = _unit(self.head_centre - self.shoulder_mid)
        self.head_base = self.shoulder_mid
        self.head_top = self.head_centre + self.head_axis * self.head_r * 1.15
        # The face's midline goes through the nose when the nose is seen, else through the skull's centre.
        self.head_mid = lm[Landmark.NOSE] if self.facing_camera else self.head_centre
        self.head_z = float(self.z[Landmark.NOSE])
        self.neck_normal = _unit(_perpendicular(lm[Landmark.L_SHOULDER] - lm[Landmark.R_SHOULDER]))
        if float(np.dot(self.neck_normal, self.head_axis)) < 0:
            self.neck_normal = -self.neck_normal

    def torso_polygon(self) -> np.ndarray:
        lm = self.lm
        return np.array(
            [lm[Landmark.R_SHOULDER], lm[Landmark.L_SHOULDER], lm[Landmark.L_HIP], lm[Landmark.R_HIP]]
        )

    # --- rasterising -------------------------------------------------------------------------------------------
    def iuv(self) -> np.ndarray:
        """float32 [3, H, W]: the part index (0 background), U, V for every pixel of the person mask.

        The primitives are painted far to near (the torso first, as everything lies in front of it, then head
        and limbs by BlazePose's depth), so a limb crossing the body covers it. Mask pixels no primitive covers
        (hair, loose clothes) take the primitive of the nearest painted pixel. U and V are then computed once
        per pixel from the primitive that owns it.
        """
        height, width = self.person.shape
        out = np.zeros((3, height, width), dtype=np.float32)
        if not self.person.any():
            return out
        owner = np.zeros((height, width), dtype=np.int32)  # primitive index + 1; 0 = none
        primitives: list[Capsule | str] = ["torso", "head", *self.capsules]
        self._paint_torso(owner, 1)
        order = sorted(
            range(1, len(primitives)),
            key=lambda i: -(self.head_z if i == 1 else (primitives[i].z_a + primitives[i].z_b) / 2),
        )
        for i in order:
            if i == 1:
                self._paint_head(owner, 2)
            else:
                self._paint_capsule(owner, primitives[i], i + 1)
        owner = self._fill_from_nearest(owner, max_distance=self.head_r)
        owner[self.person == 0] = 0

        ys, xs = np.nonzero(owner)
        ids = owner[ys, xs] - 1
        p = np.stack([xs, ys], axis=1).astype(np.float32) + 0.5
        label = np.zeros(len(p), dtype=np.float32)
        u = np.zeros(len(p), dtype=np.float32)
        v = np.zeros(len(p), dtype=np.float32)
        for i, primitive in enumerate(primitives):
            sel = ids == i
            if not sel.any():
                continue
            if primitive == "torso":
                label[sel], u[sel], v[sel] = self._torso_uv(p[sel])
            elif primitive == "head":
                label[sel], u[sel], v[sel] = self._head_uv(p[sel])
            else:
                label[sel], u[sel], v[sel] = self._capsule_uv(p[sel], primitive)
        out[0, ys, xs] = label
        out[1, ys, xs] = np.clip(u, 0.0, 1.0)
        out[2, ys, xs] = np.clip(v, 0.0, 1.0)
        return out

    @staticmethod
    def _fill_from_nearest(owner: np.ndarray, max_distance: float) -> np.ndarray:
        """Unpainted pixels up to max_distance from a painted one take its owner (farther: long hair, bags).

        DensePose leaves what is not body surface out, so mask pixels far from every part stay background.
        """
        unpainted = (owner == 0).astype(np.uint8)
        if not unpainted.any() or unpainted.all():
            return owner
        # Labels of DIST_LABEL_PIXEL number the zero pixels of the source 1.. in raster order.
        distance, nearest = cv2.distanceTransformWithLabels(
            unpainted, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        seeds = owner[owner > 0]
        filled = seeds[nearest - 1].reshape(owner.shape).astype(np.int32)
        filled[distance > max_distance] = 0
        return filled

    def _paint_torso(self, owner: np.ndarray, value: int) -> None:
        polygon = np.round(self.torso_polygon()).astype(np.int32)
        cv2.fillPoly(owner, [polygon], value)
        # The body reaches past the joint centres: grow the quadrilateral by the margin (round joins).
        cv2.polylines(owner, [polygon], True, value, thickness=max(1, int(round(2 * self.torso_margin))))

    def _paint_head(self, owner: np.ndarray, value: int) -> None:
        height, width = owner.shape
        head = np.zeros((height, width), dtype=np.uint8)
        base, top = self.head_base, self.head_top
        _paint_segment(head, base, top, self.head_r, 1, round_a=True, round_b=True)
        # Only above the shoulder line: below it the pixel belongs to the torso or the arms.
        ys, xs = np.nonzero(head)
        above = (xs + 0.5 - self.shoulder_mid[0]) * self.neck_normal[0] + (
            ys + 0.5 - self.shoulder_mid[1]
        ) * self.neck_normal[1] > 0
        owner[ys[above], xs[above]] = value

    @staticmethod
    def _paint_capsule(owner: np.ndarray, c: Capsule, value: int) -> None:
        _paint_segment(
            owner, c.a, c.b, c.radius, value, round_a=not c.flat_proximal, round_b=not c.flat_distal
        )

    # --- chart coordinates -------------------------------------------------------------------------------------
    def _capsule_uv(self, p: np.ndarray, c: Capsule):
        a = c.a.astype(np.float32)
        axis = (c.b - c.a).astype(np.float32)
        length2 = max(float(np.dot(axis, axis)), 1e-6)
        t = np.clip(((p - a) @ axis) / length2, 0.0, 1.0)
        across = _perpendicular(_unit(axis.astype(np.float64))).astype(np.float32)
        if isinstance(c.labels, tuple):
            # Orient "across" toward the body's axis: positive = the inner half.
            if c.inner_towards is not None and float(np.dot(c.inner_towards - c.a, across)) < 0:
                across = -across
            s = (p - a) @ across
            label = np.where(s >= 0, c.labels[0], c.labels[1]).astype(np.float32)
            v = np.abs(s) / c.radius
        else:
            if float(np.dot(across, self.right_to_left)) < 0:
                across = -across
            s = (p - a) @ across
            label = np.full(len(p), c.labels, dtype=np.float32)
            v = 0.5 + s / (2 * c.radius)
        return label, t, v

    def _torso_uv(self, p: np.ndarray):
        label = np.full(len(p), TORSO_FRONT if self.facing_camera else TORSO_BACK, dtype=np.float32)
        spine = (self.hip_mid - self.shoulder_mid).astype(np.float32)
        spine_len2 = max(float(np.dot(spine, spine)), 1e-6)
        u = ((p - self.shoulder_mid.astype(np.float32)) @ spine) / spine_len2
        centre = ((self.shoulder_mid + self.hip_mid) / 2).astype(np.float32)
        v = 0.5 + ((p - centre) @ self.right_to_left.astype(np.float32)) / (2 * self.torso_half_width)
        return label, u, v

    def _head_uv(self, p: np.ndarray):
        base = self.head_base.astype(np.float32)
        axis = (self.head_top - self.head_base).astype(np.float32)
        length2 = max(float(np.dot(axis, axis)), 1e-6)
        t = np.clip(((p - base) @ axis) / length2, 0.0, 1.0)
        s = (p - self.head_mid.astype(np.float32)) @ self.right_to_left.astype(np.float32)
        # The person's right half is 23, the left half 24.
        label = np.where(s < 0, HEAD_RIGHT, HEAD_LEFT).astype(np.float32)
        return label, t, np.abs(s) / self.head_r


def _paint_segment(
    canvas: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float, value: int, round_a: bool, round_b: bool
) -> None:
    """A thick segment a-b (half width `radius`); a round end is a disc, a flat end stops at its point."""
    across = _perpendicular(_unit(b - a)) * radius
    quad = np.array([a + across, b + across, b - across, a - across])
    cv2.fillConvexPoly(canvas, np.round(quad).astype(np.int32), value)
    r = max(1, int(round(radius)))
    if round_a:
        cv2.circle(canvas, (int(round(a[0])), int(round(a[1]))), r, value, thickness=-1)
    if round_b:
        cv2.circle(canvas, (int(round(b[0])), int(round(b[1]))), r, value, thickness=-1)


def fit_iuv(landmarks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float32 [3, H, W] IUV from BlazePose landmarks [33, 4] (px) and the person probability mask [H, W]."""
    return BodyPartModel(landmarks, mask).iuv()


class GeometricDensePose(OnBlazePose):
    """DensePose-format IUV from the pose and the person mask: fast, weight-free geometry over BlazePose."""

    def estimate(self, image: np.ndarray) -> DensePoseEstimate:
        """The largest person's IUV; raises NoPersonFound when the photo holds nobody."""
        observation = self.pose.observe(image)
        return DensePoseEstimate(
            fit_iuv(observation.landmarks, observation.mask), observation.people_detected
        )
