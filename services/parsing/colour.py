"""Colour and edge tools the embedded parser builds on: a guided filter, Gaussian colour models, clustering.

Plain numpy/OpenCV, no learned weights: these split a person that the segmentation network found into the
regions a parse map needs (skin, hair, garments) by colour, and sharpen the network's coarse mask on the
photo's own edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_upsample(
    guide_small: np.ndarray, source_small: np.ndarray, guide_full: np.ndarray, radius: int, eps: float
) -> np.ndarray:
    """He et al.'s colour guided filter, solved at low resolution and applied at full (the "fast" variant).

    Within each window the output is a linear function of the guide's colour fitted to `source`, so a blurry
    mask snaps to the photo's edges. The per-window coefficients are smooth, so solving them on a smaller copy
    and upsampling them costs little accuracy. Guides are float32 RGB 0..1, the source float32 [h, w].
    """
    guide = guide_small.astype(np.float32)
    p = source_small.astype(np.float32)
    mean_i = _box(guide, radius)
    mean_p = _box(p, radius)
    cov_ip = _box(guide * p[:, :, None], radius) - mean_i * mean_p[:, :, None]
    # Covariance of the guide's three channels per window (symmetric: six entries).
    idx = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    var = {}
    for i, j in idx:
        var[i, j] = _box(guide[:, :, i] * guide[:, :, j], radius) - mean_i[:, :, i] * mean_i[:, :, j]
        if i == j:
            var[i, j] = var[i, j] + eps
    a11, a12, a13, a22, a23, a33 = (var[k] for k in idx)
    # Inverse of the symmetric 3x3 by cofactors, every pixel at once.
    c11 = a22 * a33 - a23 * a23
    c12 = a13 * a23 - a12 * a33
    c13 = a12 * a23 - a13 * a22
    c22 = a11 * a33 - a13 * a13
    c23 = a12 * a13 - a11 * a23
    c33 = a11 * a22 - a12 * a12
    det = a11 * c11 + a12 * c12 + a13 * c13
    x, y, z = cov_ip[:, :, 0], cov_ip[:, :, 1], cov_ip[:, :, 2]
    a = np.stack(
        [c11 * x + c12 * y + c13 * z, c12 * x + c22 * y + c23 * z, c13 * x + c23 * y + c33 * z], axis=2
    )
    a /= det[:, :, None]
    b = mean_p - (a * mean_i).sum(axis=2)
    size = (guide_full.shape[1], guide_full.shape[0])
    mean_a = cv2.resize(_box(a, radius), size, interpolation=cv2.INTER_LINEAR)
    mean_b = cv2.resize(_box(b, radius), size, interpolation=cv2.INTER_LINEAR)
    return (mean_a * guide_full).sum(axis=2) + mean_b


@dataclass
class Gaussian:
    """A colour distribution: mean and covariance, and the squared Mahalanobis distance of colours to it."""

    mean: np.ndarray
    inverse: np.ndarray

    @classmethod
    def fit(
        cls, samples: np.ndarray, floor: float = 4.0, trim: float = 0.8, rounds: int = 2
    ) -> Gaussian | None:
        """Fit to [N, D] samples, dropping the outer (1 - trim) of them for `rounds` rounds (eyes, lips, stray
        hair in a face sample). `floor` is a minimum variance per channel so a flat sample is not too strict."""
        samples = np.asarray(samples, np.float32)
        if len(samples) < 20:
            return None
        keep = samples
        model = None
        for _ in range(rounds + 1):
            mean = keep.mean(axis=0)
            cov = np.cov(keep, rowvar=False) + np.eye(samples.shape[1]) * floor
            model = cls(mean, np.linalg.inv(cov).astype(np.float32))
            d = model.distance(samples)
            keep = samples[d <= np.quantile(d, trim)]
            if len(keep) < 20:
                break
        return model

    def distance(self, colours: np.ndarray) -> np.ndarray:
        diff = np.asarray(colours, np.float32) - self.mean
        return np.einsum("...i,ij,...j->...", diff, self.inverse, diff)


def kmeans(colours: np.ndarray, k: int, sample: int = 6000, seed: int = 0) -> np.ndarray:
    """Cluster centres [k', D] of colours [N, D] (k' <= k when there are few colours); seeded, deterministic."""
    colours = np.asarray(colours, np.float32)
    if len(colours) == 0:
        return np.zeros((0, colours.shape[1]), np.float32)
    rng = np.random.default_rng(seed)
    if len(colours) > sample:
        colours = colours[rng.choice(len(colours), sample, replace=False)]
    k = max(1, min(k, len(colours) // 10 or 1))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(colours, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return centres


def nearest_centre(colours: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each colour [..., D] -> [...]."""
    d = ((colours[..., None, :] - centres) ** 2).sum(axis=-1)
    return d.argmin(axis=-1)


def histogram(assignments: np.ndarray, k: int, smoothing: float = 0.5) -> np.ndarray:
    """A normalised histogram over k clusters, smoothed so no cluster has zero probability."""
    counts = np.bincount(assignments.ravel(), minlength=k).astype(np.float64) + smoothing
    return counts / counts.sum()


def bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    """Overlap of two distributions: 1 for the same, 0 for disjoint."""
    return float(np.sqrt(p * q).sum())


def to_lab(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 CIE Lab with L in 0..100 and a, b around 0 (OpenCV's float convention)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
