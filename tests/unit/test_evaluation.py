"""`vton eval`'s metrics and contact sheet, and the floor the embedded chain must clear on VITON-HD pairs."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from training.eval import contact_sheet, iou, l1, psnr, ssim
from training.eval.metrics import MAX_PSNR, ssim_map

DATA = Path(os.environ.get("VTON_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared")) / "data"
PAIRS = DATA / "pairs" / "vitonhd"
needs_data = pytest.mark.skipif(not PAIRS.is_dir(), reason="../shared/data is not on this machine")


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out with an explicit 11x11 Gaussian window, pixel by pixel over the valid region."""
    ax = np.arange(11) - 5
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    values = []
    for y in range(5, a.shape[0] - 5):
        for x in range(5, a.shape[1] - 5):
            pa, pb = a[y - 5 : y + 6, x - 5 : x + 6], b[y - 5 : y + 6, x - 5 : x + 6]
            ma, mb = (window * pa).sum(), (window * pb).sum()
            va, vb = (window * pa * pa).sum() - ma * ma, (window * pb * pb).sum() - mb * mb
            cov = (window * pa * pb).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_windowed_definition():
    rng = np.random.default_rng(1)
    a = cv2.GaussianBlur(rng.integers(0, 256, (40, 36)).astype(np.uint8), (5, 5), 1.0)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(_reference_ssim(a, b), abs=1e-9)


def test_ssim_of_flat_images_is_the_luminance_term():
    a, b = np.full((32, 32), 100, np.uint8), np.full((32, 32), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-9)


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 48, 3)).astype(np.uint8)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (5, 20, 60)]
    scores = [ssim(image, n) for n in noisy]
    assert ssim(image, image) == pytest.approx(1.0)
    assert scores[0] > scores[1] > scores[2]
    assert ssim(image, noisy[1]) == pytest.approx(ssim(noisy[1], image))


def test_colour_ssim_is_the_mean_of_the_channels():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(np.mean([ssim(a[..., c], b[..., c]) for c in range(3)]))


def test_ssim_refuses_images_of_different_sizes():
    with pytest.raises(ValueError, match="same size"):
        ssim(np.zeros((20, 20), np.uint8), np.zeros((20, 21), np.uint8))


def test_region_ssim_averages_the_map_inside_the_region_only():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (48, 40, 3)).astype(np.uint8)
    b = a.copy()
    b[:, 20:] = rng.integers(0, 256, (48, 20, 3))  # the right half differs
    left = np.zeros((48, 40), bool)
    left[:, :12] = True  # windows of these pixels stay in the identical half
    assert ssim(a, b, left) == pytest.approx(1.0)
    right = ~left
    expected = ssim_map(a, b)[5:-5, 5:-5][right[5:-5, 5:-5]].mean()
    assert ssim(a, b, right) == pytest.approx(expected)
    assert ssim(a, b, np.zeros((48, 40), bool)) is None


def test_psnr_and_l1_have_their_closed_forms():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a.copy()
    b[:10] = 110  # half the pixels off by 10: MSE 50, mean absolute error 5 / 255
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 50))
    assert l1(a, b) == pytest.approx(5 / 255)
    top = np.zeros((20, 20), bool)
    top[:10] = True
    assert psnr(a, b, top) == pytest.approx(10 * np.log10(255**2 / 100))
    assert l1(a, b, ~top) == 0.0
    assert psnr(a, a) == MAX_PSNR


def test_iou_of_masks():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :6] = True
    b[:, 4:] = True  # overlap 2 columns, union 10
    assert iou(a, b) == pytest.approx(0.2)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def test_contact_sheet_puts_every_image_in_a_labelled_column_at_one_height():
    red = np.zeros((200, 100, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((50, 50, 3), np.uint8)
    blue[..., 2] = 255
    gray = np.full((400, 300), 90, np.uint8)
    rows = [[red, blue, gray, red, blue], [blue, red, gray, blue]]  # the second sample is unpaired
    sheet = contact_sheet(rows, cell_height=100)
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    # Two rows of 100 px plus the header; the first column is as wide as its widest cell (the 100 px blue
    # square), the red 2:1 cell (50 px wide at that height) centred in it.
    assert sheet.shape[0] >= 2 * 100 + 24
    first_cell = sheet[40:130, 34:74]
    assert (first_cell[..., 0] > 200).mean() > 0.9 and (first_cell[..., 2] < 50).mean() > 0.9
    # The header holds the labels' dark text; the unpaired row leaves its fifth cell blank.
    assert (sheet[:30] < 100).any()
    fifth_column_second_row = sheet[-100:, -40:]
    assert (fifth_column_second_row == 255).all()


def test_contact_sheet_without_real_photos_has_four_columns():
    cell = np.full((64, 48, 3), 40, np.uint8)
    paired = contact_sheet([[cell] * 5], cell_height=64)
    unpaired = contact_sheet([[cell] * 4], cell_height=64)
    assert unpaired.shape[1] < paired.shape[1]


# --- the floor: the embedded chain beats returning the masked person unchanged -------------------------------


@needs_data
def test_embedded_chain_beats_the_masked_person_on_paired_ssim(blazepose):
    from services.parsing.backends.geometric import GeometricParser
    from services.parsing.labels import vitonhd_to_lip
    from tests.unit.embedded_chain import composite_try_on

    parser = GeometricParser(blazepose)
    chain, baseline = [], []
    for person_path in sorted((PAIRS / "image").glob("*.jpg")):
        name = person_path.stem
        person = np.array(Image.open(person_path).convert("RGB"))
        garment = np.array(Image.open(PAIRS / "cloth" / f"{name}.jpg").convert("RGB"))
        observation = blazepose.observe(person, with_face=True)
        reference = PAIRS / "image-parse-v3" / f"{name}.png"
        if reference.is_file():
            labels = vitonhd_to_lip(np.array(Image.open(reference)))
        else:
            labels = parser.parse_observation(person, observation).labels
        result, inputs = composite_try_on(person, labels, observation.keypoints, garment)
        masked = inputs.masked_person
        chain.append(ssim(result, person))
        baseline.append(ssim(masked, person))
        print(f"{name}: SSIM chain {chain[-1]:.4f}, masked person {baseline[-1]:.4f}")
    print(
        f"mean SSIM over {len(chain)} pairs: chain {np.mean(chain):.4f}, masked person {np.mean(baseline):.4f}"
    )
    assert len(chain) == 4
    assert np.mean(chain) > np.mean(baseline)
