"""The paired metrics of `vton eval`: SSIM, PSNR and L1 of a try-on against the real photo, over the whole image
or inside a region (the garment and the limbs it covers), and the IoU of two masks.

SSIM is Wang et al.'s (2004) with the usual settings, the ones scikit-image's `structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)` and the try-on papers use: an
11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, the mean of the SSIM map over the
pixels whose window lies inside the image; a colour image scores the mean of its channels.
"""

from __future__ import annotations

import cv2
import numpy as np

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (WINDOW, WINDOW), SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what} needs images of the same size, got {a.shape} and {b.shape}")


def _valid(shape: tuple[int, ...]) -> np.ndarray:
    """bool [H, W]: the pixels whose SSIM window lies inside the image."""
    pad = WINDOW // 2
    valid = np.zeros(shape[:2], bool)
    valid[pad:-pad, pad:-pad] = True
    return valid


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float [H, W]: the SSIM of each pixel's window (a colour image: the mean of its channels' maps)."""
    _check_pair(a, b, "SSIM")
    if min(a.shape[:2]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW} pixels, got {a.shape[:2]}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if a.ndim == 2:
        return _ssim_map(a64, b64)
    return np.mean([_ssim_map(a64[..., c], b64[..., c]) for c in range(a.shape[2])], axis=0)


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """SSIM of two uint8 images of the same size, grayscale [H, W] or colour [H, W, C] (mean over channels):
    the mean of the map over the pixels whose window lies inside the image, and inside `region` (bool [H, W])
    when given (None when the region is empty)."""
    values = ssim_map(a, b)
    inside = _valid(a.shape) if region is None else _valid(a.shape) & region
    return float(values[inside].mean()) if inside.any() else None


# PSNR of identical images is infinite; JSON has no infinity, so the report caps it here.
MAX_PSNR = 100.0


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Peak signal-to-noise ratio in dB of two uint8 images (data range 255), over `region` when given."""
    _check_pair(a, b, "PSNR")
    error = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if region is not None:
        if not region.any():
            return None
        error = error[region]
    mse = float(error.mean())
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * np.log10(DATA_RANGE**2 / mse))


def l1(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean absolute difference of two uint8 images on a 0..1 scale, over `region` when given."""
    _check_pair(a, b, "L1")
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64)) / DATA_RANGE
    if region is not None:
        if not region.any():
            return None
        difference = difference[region]
    return float(difference.mean())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of the same size (1 when both are empty: they agree)."""
    _check_pair(a, b, "IoU")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
