"""Thin-plate splines in numpy, and image warping with them through cv2.remap.

A thin-plate spline is the smoothest map (least bending energy) that takes n control points to n targets:
f(p) = a0 + a1 x + a2 y + sum_i w_i U(|p - c_i|), U(r) = r^2 log r^2. Fitting solves one (n+3)x(n+3) linear
system; a small regulariser on the kernel's diagonal relaxes exact interpolation so that noisy or nearly
coincident control points cannot fold the map.

Warping an image needs the inverse map (for every output pixel, where to read in the source), so `inverse_maps`
fits the spline from the target points back to the source points and evaluates it on a coarse grid of the output,
which is then upsampled: the spline is smooth, so a grid every few pixels loses nothing visible and costs a
fraction of a per-pixel evaluation. `warp` carries an image and its mask through such maps.
"""

from __future__ import annotations

import cv2
import numpy as np


def _kernel(r2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2, written on the squared distance; 0 at r = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r2 * np.log(r2)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


class ThinPlateSpline:
    """A 2-D thin-plate spline taking `source` points (n, 2) to `target` points (n, 2)."""

    def __init__(self, source: np.ndarray, target: np.ndarray, regularization: float = 1e-3):
        source = np.asarray(source, np.float64).reshape(-1, 2)
        target = np.asarray(target, np.float64).reshape(-1, 2)
        if len(source) != len(target):
            raise ValueError(f"{len(source)} source points but {len(target)} target points")
        if len(source) < 3:
            raise ValueError("a thin-plate spline needs at least 3 control points")
        # Work in coordinates of about unit size so that the regulariser means the same at any resolution.
        self._offset = source.mean(axis=0)
        self._scale = float(np.abs(source - self._offset).max()) or 1.0
        c = (source - self._offset) / self._scale
        n = len(c)
        k = _kernel(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)) + regularization * np.eye(n)
        p = np.hstack([np.ones((n, 1)), c])
        system = np.zeros((n + 3, n + 3))
        system[:n, :n], system[:n, n:], system[n:, :n] = k, p, p.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = target
        # lstsq rather than solve: three collinear control points make the affine part singular.
        self._params, *_ = np.linalg.lstsq(system, rhs, rcond=None)
        self._centres = c

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Map points (m, 2) -> (m, 2)."""
        pts = (np.asarray(points, np.float64).reshape(-1, 2) - self._offset) / self._scale
        u = _kernel(((pts[:, None, :] - self._centres[None, :, :]) ** 2).sum(-1))
        n = len(self._centres)
        w, a = self._params[:n], self._params[n:]
        return u @ w + a[0] + pts @ a[1:]


def inverse_maps(
    source: np.ndarray,
    target: np.ndarray,
    out_size: tuple[int, int],
    grid_step: int = 8,
    regularization: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (map_x, map_y), float32 [H, W], for the warp that takes `source` points to `target`.

    `out_size` is (H, W) of the output. The inverse spline (target -> source) is evaluated every `grid_step`
    pixels and upsampled bilinearly.
    """
    h, w = out_size
    inverse = ThinPlateSpline(target, source, regularization)
    gh, gw = (h + grid_step - 1) // grid_step + 1, (w + grid_step - 1) // grid_step + 1
    gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float64) * grid_step
    mapped = inverse(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gh, gw, 2).astype(np.float32)
    # The coarse grid spans (gw - 1) * grid_step >= w pixels: upsample it to that span, then crop.
    full_h, full_w = (gh - 1) * grid_step + 1, (gw - 1) * grid_step + 1
    map_x = cv2.resize(mapped[:, :, 0], (full_w, full_h), interpolation=cv2.INTER_LINEAR)[:h, :w]
    map_y = cv2.resize(mapped[:, :, 1], (full_w, full_h), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return np.ascontiguousarray(map_x), np.ascontiguousarray(map_y)


def pad_colors(image: np.ndarray, mask: np.ndarray, radius: int = 6) -> np.ndarray:
    """The image with the colours of `mask` spread a few pixels outwards over what lies outside it.

    Bilinear sampling at the mask's edge mixes in the neighbouring pixels; after padding those are the
    garment's own colours, never its photo's background.
    """
    inside = (mask > 0).astype(np.float32)
    sigma = max(1.0, radius / 2.0)
    weight = cv2.GaussianBlur(inside, (0, 0), sigma)
    spread = cv2.GaussianBlur(image.astype(np.float32) * inside[:, :, None], (0, 0), sigma)
    spread /= np.maximum(weight, 1e-6)[:, :, None]
    out = np.where(inside[:, :, None] > 0, image.astype(np.float32), spread)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def warp(
    image: np.ndarray, mask: np.ndarray, maps: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Warp an image and its mask through cv2.remap `maps` (e.g. `inverse_maps`, which takes source points onto
    target points): (image, mask) at the maps' size. The mask is 0/255; outside the warped mask the image is 0.
    """
    map_x, map_y = maps
    # The garment's outermost pixels blend into its photo's background (antialiasing, JPEG): take their colour
    # from further in, so that no trace of that background reaches the person.
    core = cv2.erode((mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    padded = pad_colors(image, core if core.any() else mask)
    warped = cv2.remap(padded, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    warped_mask = cv2.remap(
        mask.astype(np.uint8), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    warped_mask = np.where(warped_mask >= 128, 255, 0).astype(np.uint8)
    warped[warped_mask == 0] = 0
    return warped, warped_mask
