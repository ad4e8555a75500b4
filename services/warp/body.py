"""Measurements of the person's body from the pose keypoints (OpenPose COCO-18) and the LIP label map.

The warp places the garment by these: the shoulder line and the torso's axis from the keypoints, the torso's
width at a given height from the label map (the old garment's outline is the best guess of the body under it),
and the limbs as polylines through the keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import takewhile

import cv2
import numpy as np

from vton.runtime.errors import InvalidInput, NoPersonFound
from vton.runtime.vocab import NUM_KEYPOINTS, Keypoint, Lip

ARMS = (Lip.LEFT_ARM, Lip.RIGHT_ARM)
HEAD = (Lip.HAT, Lip.HAIR, Lip.SUNGLASSES, Lip.FACE)
# What the torso's outline is made of at some height (label 10 is VITON-HD's neck, LIP's jumpsuit: both torso).
TORSO_LABELS = (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT, Lip.JUMPSUITS, Lip.SCARF, Lip.PANTS, Lip.SKIRT)
LEG_LABELS = (Lip.PANTS, Lip.SKIRT, Lip.DRESS, Lip.LEFT_LEG, Lip.RIGHT_LEG, Lip.SOCKS)
# Half the width of an arm as a share of the shoulder width, for the limb capsules.
ARM_RADIUS = 0.13


def _present(point: np.ndarray) -> bool:
    return bool(point[2] > 0.05 and not (point[0] <= 1 and point[1] <= 1))


@dataclass
class Body:
    """The person's keypoints and label map, with the derived frame of the torso."""

    keypoints: np.ndarray  # float32 [18, 3]
    labels: np.ndarray  # uint8 [H, W]

    def __post_init__(self) -> None:
        if self.keypoints.shape != (NUM_KEYPOINTS, 3):
            raise InvalidInput(f"keypoints must be [18, 3] (OpenPose COCO-18), got {self.keypoints.shape}")
        if self.labels.ndim != 2:
            raise InvalidInput(f"the label map must be [H, W], got shape {self.labels.shape}")
        self.keypoints = self.keypoints.astype(np.float64)

    # --- keypoints ---------------------------------------------------------------------------------------------
    def has(self, *indices: int) -> bool:
        return all(_present(self.keypoints[i]) for i in indices)

    def point(self, index: int) -> np.ndarray:
        return self.keypoints[index, :2].copy()

    def require(self, *indices: int, what: str) -> None:
        if not self.has(*indices):
            raise NoPersonFound(f"no person found: the pose does not show the {what}")

    @property
    def shoulder_width(self) -> float:
        return float(np.linalg.norm(self.point(Keypoint.L_SHOULDER) - self.point(Keypoint.R_SHOULDER)))

    @property
    def neck(self) -> np.ndarray:
        if self.has(Keypoint.NECK):
            return self.point(Keypoint.NECK)
        return 0.5 * (self.point(Keypoint.R_SHOULDER) + self.point(Keypoint.L_SHOULDER))

    @property
    def mid_hip(self) -> np.ndarray | None:
        if self.has(Keypoint.R_HIP, Keypoint.L_HIP):
            return 0.5 * (self.point(Keypoint.R_HIP) + self.point(Keypoint.L_HIP))
        return None

    @property
    def down(self) -> np.ndarray:
        """Unit vector down the torso's axis (neck to mid-hip; perpendicular to the shoulders without hips)."""
        hip = self.mid_hip
        if hip is not None and np.linalg.norm(hip - self.neck) > 1:
            v = hip - self.neck
        else:
            across = self.point(Keypoint.L_SHOULDER) - self.point(Keypoint.R_SHOULDER)
            v = np.array([-across[1], across[0]])
            if v[1] < 0:
                v = -v
        return v / np.linalg.norm(v)

    @property
    def across(self) -> np.ndarray:
        """Unit vector across the torso towards the image's right (the person's left when facing us)."""
        d = self.down
        return np.array([d[1], -d[0]])

    @property
    def torso_length(self) -> float:
        """Neck to mid-hip; without hips, the typical 1.5 shoulder widths."""
        hip = self.mid_hip
        return float(np.linalg.norm(hip - self.neck)) if hip is not None else 1.5 * self.shoulder_width

    def limb(self, indices: tuple[int, ...]) -> list[np.ndarray]:
        """The polyline through the limb's keypoints, stopping at the first missing one."""
        return [self.point(i) for i in takewhile(self.has, indices)]

    # --- label map ---------------------------------------------------------------------------------------------
    def limb_capsules(self, limbs: list[tuple[int, ...]], radius: float) -> np.ndarray:
        """Boolean mask of thick lines (radius in pixels) along the given limbs' polylines."""
        mask = np.zeros(self.labels.shape, np.uint8)
        thickness = max(1, int(round(2 * radius)))
        for indices in limbs:
            points = self.limb(indices)
            for a, b in zip(points, points[1:], strict=False):
                cv2.line(mask, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, thickness, cv2.LINE_8)
            for p in points[1:]:
                cv2.circle(mask, tuple(int(v) for v in p), int(radius), 1, -1)
        return mask > 0

    def row_extent(
        self, y: float, centre_x: float, labels: tuple[int, ...], exclude: np.ndarray | None = None
    ) -> tuple[float, float] | None:
        """(x0, x1) of the run of `labels` on row y through centre_x, or None when the row has none there.

        A small gap (a seam, a belt) does not end the run; `exclude` removes pixels (the arms' capsules).
        """
        h, w = self.labels.shape
        row_index = int(round(y))
        if not 0 <= row_index < h:
            return None
        row = np.isin(self.labels[row_index], labels)
        if exclude is not None:
            row &= ~exclude[row_index]
        # Close gaps narrower than 2% of the width.
        gap = max(2, w // 50)
        closed = cv2.morphologyEx(
            row.astype(np.uint8).reshape(1, -1), cv2.MORPH_CLOSE, np.ones((1, gap), np.uint8)
        )
        row = closed.ravel() > 0
        cx = int(np.clip(round(centre_x), 0, w - 1))
        if not row[cx]:
            return None
        gaps_left = np.flatnonzero(~row[:cx])
        gaps_right = np.flatnonzero(~row[cx:])
        left = int(gaps_left[-1]) + 1 if len(gaps_left) else 0
        right = cx + int(gaps_right[0]) - 1 if len(gaps_right) else w - 1
        return float(left), float(right)

    def column_top(self, x: float, y_from: float, y_to: float, labels: tuple[int, ...]) -> float | None:
        """First row in [y_from, y_to] of column x whose label is in `labels`."""
        h, w = self.labels.shape
        c = int(np.clip(round(x), 0, w - 1))
        a, b = int(np.clip(y_from, 0, h - 1)), int(np.clip(y_to, 0, h - 1))
        if b <= a:
            return None
        hits = np.flatnonzero(np.isin(self.labels[a : b + 1, c], labels))
        return float(a + hits[0]) if len(hits) else None


def point_along(polyline: list[np.ndarray], distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The point at arc length `distance` along a polyline (clamped to its ends) and the unit direction there."""
    if len(polyline) < 2:
        raise ValueError("a polyline needs two points")
    remaining = max(0.0, distance)
    for a, b in zip(polyline, polyline[1:], strict=False):
        seg = b - a
        length = float(np.linalg.norm(seg))
        if length < 1e-6:
            continue
        if remaining <= length:
            return a + seg * (remaining / length), seg / length
        remaining -= length
    a, b = polyline[-2], polyline[-1]
    seg = b - a
    return b.copy(), seg / max(float(np.linalg.norm(seg)), 1e-6)


def polyline_length(polyline: list[np.ndarray]) -> float:
    return float(sum(np.linalg.norm(b - a) for a, b in zip(polyline, polyline[1:], strict=False)))


def extended(limb: list[np.ndarray], ratio: float) -> list[np.ndarray]:
    """A limb seen only to its middle joint (the wrist or ankle out of the frame) goes on straight, `ratio` of
    its first segment further."""
    if len(limb) == 2:
        return [limb[0], limb[1], limb[1] + ratio * (limb[1] - limb[0])]
    return limb


def arc_position(polyline: list[np.ndarray], p: np.ndarray) -> float:
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
