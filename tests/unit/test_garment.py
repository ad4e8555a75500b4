"""Garment analysis of product photos: the garment's mask and its landmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from services.warp.garment import analyse_garment, garment_landmarks, garment_mask
from vton.runtime.errors import InvalidInput, NoPersonFound

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not on this machine")


def _rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / (a | b).sum())


def _tshirt(h: int = 512, w: int = 384) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """A T-shirt outline (filled polygon) and where its landmarks are, in the wearer's naming."""
    pts = {
        "neck_r": (160, 60), "neck_l": (224, 60), "neckline": (192, 90),
        "shoulder_r": (110, 75), "shoulder_l": (274, 75),
        "sleeve_r_top": (50, 170), "sleeve_r_bottom": (80, 195),
        "sleeve_l_top": (334, 170), "sleeve_l_bottom": (304, 195),
        "armpit_r": (120, 170), "armpit_l": (264, 170), "hem_r": (120, 450), "hem_l": (264, 450),
    }  # fmt: skip
    poly = [
        pts["neck_r"], (192, 90), pts["neck_l"], pts["shoulder_l"], pts["sleeve_l_top"], pts["sleeve_l_bottom"],
        pts["armpit_l"], pts["hem_l"], pts["hem_r"], pts["armpit_r"], pts["sleeve_r_bottom"],
        pts["sleeve_r_top"], pts["shoulder_r"],
    ]  # fmt: skip
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.array(poly, np.int32)], 255)
    return mask, pts


def _near(point, expected, tolerance: float) -> bool:
    return float(np.hypot(point[0] - expected[0], point[1] - expected[1])) <= tolerance


# --- mask ----------------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    "photo",
    [
        *sorted((DATA / "annotated" / "vitonhd" / "cloth").glob("*.jpg")),
        DATA / "pairs" / "vitonhd" / "cloth" / "00006_00.jpg",
    ],
    ids=lambda p: p.stem,
)
def test_mask_matches_the_datasets_cloth_mask(photo: Path):
    reference = np.array(Image.open(photo.parent.parent / "cloth-mask" / photo.name).convert("L")) > 127
    mask = garment_mask(_rgb(photo))
    assert mask.shape == reference.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert _iou(mask, reference) > 0.95


def test_white_garment_on_white_background_is_separated_by_its_outline():
    # A white shirt one grey level off the clipped-white background, with the faint shadow of its edge.
    shape, _ = _tshirt()
    photo = np.full((*shape.shape, 3), 255, np.uint8)
    photo[shape > 0] = 252
    outline = cv2.morphologyEx(shape, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    photo[outline] = 238
    mask = garment_mask(photo)
    assert _iou(mask, shape) > 0.95


def test_grey_studio_background_with_falloff():
    # A darker vignette towards the corners must not read as garment.
    h, w = 512, 384
    yy, xx = np.mgrid[0:h, 0:w]
    falloff = 235 - 25 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2) * 4
    photo = np.repeat(falloff[..., None], 3, axis=2).astype(np.uint8)
    shape, _ = _tshirt()
    photo[shape > 0] = (40, 60, 160)
    assert _iou(garment_mask(photo), shape) > 0.97


def test_product_photo_pasted_on_a_larger_canvas():
    # The garment on its own off-white photo, pasted on a white canvas: the box is not the garment.
    shape, _ = _tshirt()
    canvas = np.full((700, 560, 3), 255, np.uint8)
    canvas[80:600, 70:470] = 243
    photo = canvas[80:592, 88:472]
    photo[shape > 0] = (150, 30, 40)
    expected = np.zeros(canvas.shape[:2], np.uint8)
    expected[80:592, 88:472] = shape
    assert _iou(garment_mask(canvas), expected) > 0.95


@pytest.mark.parametrize(
    "photo",
    [
        np.full((300, 200, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 256, (300, 200, 3)).astype(np.uint8),
    ],
    ids=["blank", "no background"],
)
def test_no_garment_is_a_clear_error(photo):
    with pytest.raises(NoPersonFound, match="no garment found"):
        garment_mask(photo)


def test_not_an_rgb_image_is_invalid_input():
    with pytest.raises(InvalidInput):
        garment_mask(np.zeros((100, 100), np.uint8))


# --- landmarks -----------------------------------------------------------------------------------------------


def test_landmarks_of_a_drawn_tshirt():
    shape, pts = _tshirt()
    marks = garment_landmarks(shape, "upper_body")
    assert _near(marks["neckline"], pts["neckline"], 8)
    assert _near(marks["right_armpit"], pts["armpit_r"], 12) and _near(
        marks["left_armpit"], pts["armpit_l"], 12
    )
    assert _near(marks["right_hem"], pts["hem_r"], 8) and _near(marks["left_hem"], pts["hem_l"], 8)
    assert _near(marks["right_collar"], pts["neck_r"], 12) and _near(marks["left_collar"], pts["neck_l"], 12)
    assert abs(marks["right_shoulder"][1] - 75) < 15 and abs(marks["left_shoulder"][1] - 75) < 15
    # The sleeve ends in the middle of the cuff, outside the torso; the wearer's right is on the image's left.
    r_cuff = np.mean([pts["sleeve_r_top"], pts["sleeve_r_bottom"]], axis=0)
    l_cuff = np.mean([pts["sleeve_l_top"], pts["sleeve_l_bottom"]], axis=0)
    assert _near(marks["right_sleeve_end"], r_cuff, 20) and _near(marks["left_sleeve_end"], l_cuff, 20)
    assert marks["right_sleeve_end"][0] < 90 and marks["left_sleeve_end"][0] > 294


def test_parts_split_the_garment_into_torso_and_sleeves():
    shape, pts = _tshirt()
    analysis = analyse_garment(np.zeros((*shape.shape, 3), np.uint8), "upper_body", mask=shape)
    assert set(analysis.parts) == {"torso", "right_sleeve", "left_sleeve"}
    union = np.zeros_like(shape, bool)
    for part in analysis.parts.values():
        assert not (union & (part > 0)).any()  # the parts do not overlap
        union |= part > 0
    assert (union == (shape > 0)).all()
    assert analysis.parts["right_sleeve"][185, 70] and analysis.parts["torso"][300, 192]


@needs_data
def test_long_sleeves_hanging_beside_the_torso():
    analysis = analyse_garment(_rgb(DATA / "pairs" / "vitonhd" / "cloth" / "00006_00.jpg"), "upper_body")
    m = analysis.landmarks
    assert m["right_shoulder"][0] < m["neckline"][0] < m["left_shoulder"][0]
    assert m["neckline"][1] < m["right_armpit"][1] < m["right_hem"][1]
    # The cuffs hang below the torso's hem, outside its sides.
    for side, sign in (("right", -1), ("left", 1)):
        assert m[f"{side}_sleeve_end"][1] > m[f"{side}_hem"][1]
        assert (m[f"{side}_sleeve_end"][0] - m[f"{side}_hem"][0]) * sign > 0


@needs_data
def test_sleeveless_top_has_no_sleeves():
    analysis = analyse_garment(_rgb(DATA / "annotated" / "vitonhd" / "cloth" / "09933_00.jpg"), "upper_body")
    assert "right_sleeve_end" not in analysis.landmarks and "left_sleeve_end" not in analysis.landmarks
    assert set(analysis.parts) == {"torso"}


@needs_data
def test_trousers_have_a_crotch_and_two_hems():
    m = analyse_garment(_rgb(DATA / "garments" / "lower" / "051827_1.jpg"), "lower_body").landmarks
    assert m["right_waist"][0] < m["crotch"][0] < m["left_waist"][0]
    assert m["right_waist"][1] < m["crotch"][1] < m["right_hem_inner"][1]
    assert (
        m["right_hem_outer"][0] < m["right_hem_inner"][0] <= m["left_hem_inner"][0] < m["left_hem_outer"][0]
    )


def test_skirt_has_hem_corners_and_no_crotch():
    mask = np.zeros((512, 384), np.uint8)
    cv2.fillPoly(mask, [np.array([(130, 60), (254, 60), (320, 440), (64, 440)], np.int32)], 255)
    m = garment_landmarks(mask, "lower_body")
    assert "crotch" not in m
    assert _near(m["right_waist"], (130, 60), 10) and _near(m["left_waist"], (254, 60), 10)
    assert _near(m["right_hem"], (64, 436), 12) and _near(m["left_hem"], (320, 436), 12)


@needs_data
def test_dress_has_a_waist_between_armpits_and_hem():
    m = analyse_garment(_rgb(DATA / "garments" / "dresses" / "053290_1.jpg"), "dresses").landmarks
    for side in ("right", "left"):
        assert m[f"{side}_armpit"][1] < m[f"{side}_waist"][1] < m[f"{side}_hem"][1]
    assert m["right_waist"][0] < m["left_waist"][0]


def test_unknown_category_is_invalid_input():
    shape, _ = _tshirt()
    with pytest.raises(InvalidInput, match="category"):
        garment_landmarks(shape, "hats")


def test_a_coloured_garments_drop_shadow_is_background():
    # A blue garment on white, casting a soft grey shadow below it: the shadow is the photo's, not the garment's.
    image = np.full((400, 300, 3), 240, np.uint8)
    shadow = np.zeros((400, 300), np.float32)
    shadow[70:310, 66:246] = 1.0
    shadow = cv2.GaussianBlur(shadow, (0, 0), 4)
    image = (image * (1 - 0.15 * shadow[..., None])).astype(np.uint8)
    image[60:300, 60:240] = (70, 110, 190)
    ys = np.nonzero(garment_mask(image).any(axis=1))[0]
    assert abs(int(ys.max()) - 299) <= 3


def test_long_sleeves_hanging_against_the_torso_are_found_on_both_sides(examples):
    # A denim jacket laid flat with both sleeves hanging down its sides, touching it nearly to the hem.
    photo = np.array(Image.open(examples / "clothes" / "jackets" / "1_front.jpg").convert("RGB"))
    marks = analyse_garment(photo, "upper_body").landmarks
    assert "right_sleeve_end" in marks and "left_sleeve_end" in marks
    width = marks["left_armpit"][0] - marks["right_armpit"][0]
    for side in ("right", "left"):
        # The shoulder seam sits above the armpit, not at the collar.
        assert abs(marks[f"{side}_shoulder"][0] - marks[f"{side}_armpit"][0]) < 0.15 * width
        # The sleeve ends low, beside the hem.
        assert marks[f"{side}_sleeve_end"][1] > marks[f"{side}_armpit"][1] + 0.5 * width


# --- masks the analysis once crashed on (VITON test cloth masks) ----------------------------------------------


def test_a_slit_up_the_hem_along_the_axis_still_gives_the_tshirts_landmarks():
    # Like VITON's 015816_1: the mask's gap runs up the middle from the hem, so no row near the hem crosses the
    # middle column (the torso's width read there was NaN and the neckline's search crashed on it).
    shape, pts = _tshirt()
    shape[280:, 186:199] = 0
    analysis = analyse_garment(np.zeros((*shape.shape, 3), np.uint8), "upper_body", mask=shape)
    marks = analysis.landmarks
    assert all(np.isfinite(p).all() for p in marks.values())
    assert _near(marks["neckline"], pts["neckline"], 8)
    # The sides cannot be walked up from the slit hem: the armpits sit on them at the garments' usual height.
    lowest = 0.5 * (pts["armpit_r"][1] + pts["hem_r"][1])
    for side, point in (("right", pts["armpit_r"]), ("left", pts["armpit_l"])):
        x, y = marks[f"{side}_armpit"]
        assert abs(x - point[0]) <= 4 and marks[f"{side}_shoulder"][1] < y < lowest
    assert {"right_sleeve", "left_sleeve"} <= set(analysis.parts)


def test_a_mask_that_is_only_the_garments_broken_outline_is_a_clear_error():
    # Like VITON's 015105_1 and 017062_1: a dark garment's cloth mask that kept its outline alone, open at the
    # neck and the hem, so the middle column meets no garment: no torso to read, said so, not a numpy error.
    shape, _ = _tshirt()
    outline = cv2.morphologyEx(shape, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    outline[:, 150:235] = 0
    with pytest.raises(NoPersonFound, match="no row of the garment mask crosses its middle column"):
        analyse_garment(np.zeros((*shape.shape, 3), np.uint8), "upper_body", mask=outline)
