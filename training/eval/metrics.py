"""Metrics and the contact sheet of `vton eval`: SSIM against the real photo, and one PNG of every sample.

SSIM is Wang et al.'s (2004) with the usual settings, the ones scikit-image's `structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)` and the try-on papers use: an
11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, the mean of the SSIM map over the
pixels whose window lies inside the image; a colour image scores the mean of its channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (WINDOW, WINDOW), SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = WINDOW // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 images of the same size, grayscale [H, W] or colour [H, W, C] (mean over channels)."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of the same size, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW} pixels, got {a.shape[:2]}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if a.ndim == 2:
        return _ssim_channel(a64, b64)
    return float(np.mean([_ssim_channel(a64[..., c], b64[..., c]) for c in range(a.shape[2])]))


@dataclass
class PairResult:
    """One evaluated sample: its name, the SSIM of the try-on against the real photo (None when unpaired)."""

    name: str
    ssim: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalSummary:
    """SSIM over all pairs (the mean of the per-pair values) and the per-pair results."""

    pairs: list[PairResult]

    @property
    def mean_ssim(self) -> float | None:
        values = [p.ssim for p in self.pairs if p.ssim is not None]
        return float(np.mean(values)) if values else None

    def as_dict(self) -> dict:
        return {
            "ssim": self.mean_ssim,
            "pairs": [{"name": p.name, "ssim": p.ssim, **p.extra} for p in self.pairs],
        }


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class Sample:
    """One evaluation sample: a person photo and a garment photo, and the real photo of the person wearing
    that garment when the sample is paired (VITON-HD's paired setting: then it is the person photo itself)."""

    name: str
    person: Path
    garment: Path
    real: Path | None = None


def vitonhd_pairs(root: Path) -> list[Sample]:
    """The paired samples of a folder laid out like VITON-HD's test split: `image/<id>.jpg` shows a person
    wearing the garment whose product photo is `cloth/<id>.jpg` (same name); sorted by name."""
    root = Path(root)
    if not (root / "image").is_dir() or not (root / "cloth").is_dir():
        raise FileNotFoundError(f"{root} has no image/ and cloth/ folders (VITON-HD's test layout)")
    cloths = {p.stem: p for p in (root / "cloth").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    samples = []
    for person in sorted((root / "image").iterdir()):
        if person.suffix.lower() in IMAGE_SUFFIXES and person.stem in cloths:
            samples.append(Sample(person.stem, person, cloths[person.stem], real=person))
    return samples


PAIRED_COLUMNS = ("person", "garment", "warped garment", "result", "real photo")
UNPAIRED_COLUMNS = PAIRED_COLUMNS[:4]


def _as_rgb(cell: np.ndarray) -> np.ndarray:
    if cell.ndim == 2:
        return cv2.cvtColor(cell, cv2.COLOR_GRAY2RGB)
    if cell.shape[2] == 4:
        return cell[:, :, :3]
    return cell


def contact_sheet(
    rows: list[list[np.ndarray]],
    labels: list[str] | None = None,
    cell_height: int = 384,
    gap: int = 4,
    header: int = 32,
) -> np.ndarray:
    """One RGB image: a row per sample, its images side by side at a common height, column labels on top.

    Rows may differ in length (an unpaired sample has no real photo); missing cells stay blank. The default
    labels are person | garment | warped garment | result | real photo (or the first four when no row has a
    fifth image).
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    columns = max(len(r) for r in rows)
    if labels is None:
        labels = list(PAIRED_COLUMNS if columns == 5 else UNPAIRED_COLUMNS)[:columns]
    # Every cell at the common height, every column as wide as its widest cell.
    scaled = [[_scale_to_height(_as_rgb(c), cell_height) for c in row] for row in rows]
    widths = [max((r[i].shape[1] for r in scaled if i < len(r)), default=cell_height) for i in range(columns)]
    sheet_w = sum(widths) + gap * (columns + 1)
    sheet_h = header + len(rows) * (cell_height + gap) + gap
    sheet = np.full((sheet_h, sheet_w, 3), 255, np.uint8)
    x = gap
    for i, width in enumerate(widths):
        text = labels[i] if i < len(labels) else ""
        cv2.putText(
            sheet, text, (x + 4, header - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA
        )
        for j, row in enumerate(scaled):
            if i < len(row):
                y = header + gap + j * (cell_height + gap)
                cell = row[i]
                offset = (width - cell.shape[1]) // 2
                sheet[y : y + cell_height, x + offset : x + offset + cell.shape[1]] = cell
        x += width + gap
    return sheet


def _scale_to_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interpolation = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
