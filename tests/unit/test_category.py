"""The garment's category from its product photo (services/warp/category.py), on real photos and drawn outlines,
and `vton bench --category`, which measures it (its thresholds are what its documented fit gives)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.warp.backends.keypoint_tps import KeypointTPSWarp
from services.warp.backends.ladi_vton import LadiVtonWarpBackend
from services.warp.category import THRESHOLDS, classify_garment, classify_mask, guess_from, silhouette
from services.warp.testing import save_random
from vton.runtime import images
from vton.runtime.errors import InvalidInput, NoPersonFound
from vton.runtime.vocab import Category
from vton_cli.bench_category import Measured, fit, labelled_folders, measure, run, write

UPPER, LOWER, DRESS = Category.UPPER_BODY, Category.LOWER_BODY, Category.DRESSES

# Every labelled garment photo and its category. Both sources write the category in the folder's name (shared:
# upper/lower/dresses; openvto: shirts and jackets are tops, pants lower body); what the photo shows, checked by
# eye, is in the comment where the name alone does not say it.
OPENVTO = {
    "jackets/1_back.jpg": UPPER, "jackets/1_front.jpg": UPPER,  # denim jacket
    "jackets/2_back.jpg": UPPER, "jackets/2_front.jpg": UPPER,  # studded black denim jacket
    "jackets/3_back.jpg": UPPER, "jackets/3_front.jpg": UPPER,  # half-zip sweatshirt
    "jackets/4_back.jpg": UPPER, "jackets/4_front.jpg": UPPER,  # leather bomber
    "pants/1_back.jpg": LOWER, "pants/1_front.jpg": LOWER,  # jeans
    "pants/2_back.jpg": LOWER, "pants/2_front.jpg": LOWER,  # leggings
    "pants/3_back.jpg": LOWER, "pants/3_front.jpg": LOWER,  # black jeans with a chain
    "pants/4_back.jpg": LOWER, "pants/4_front.jpg": LOWER,  # denim dungarees: legs below a bib
    "shirts/1_back.jpg": UPPER, "shirts/1_front.jpg": UPPER,  # long-sleeved shirt
    "shirts/2_back.jpg": UPPER, "shirts/2_front.jpg": UPPER,  # short-sleeved bandana shirt
    "shirts/3_back.jpg": UPPER, "shirts/3_front.jpg": UPPER,  # white T-shirt
    "shirts/4_back.jpg": UPPER, "shirts/4_front.jpg": UPPER,  # distressed black T-shirt
}  # fmt: skip
SHARED = {
    "dresses/051998_1.jpg": DRESS,  # long-sleeved maxi dress
    "dresses/052234_1.jpg": DRESS,  # puff-sleeved midi dress
    "dresses/053290_1.jpg": DRESS,  # short-sleeved knee-length dress
    "dresses/053319_1.jpg": DRESS,  # sleeveless dress, square neckline
    "dresses/21744571_51588794_1000.jpg": DRESS,  # halter-neck dress
    "dresses/22153949_52376342_1000.jpg": DRESS,  # one-shoulder draped mini dress
    "dresses/23962182_54027982_1000.jpg": DRESS,  # knitted polo mini dress
    "dresses/24047235_54199143_1000.jpg": DRESS,  # short-sleeved polo dress
    "lower/051412_1.jpg": LOWER, "lower/051473_1.jpg": LOWER, "lower/051515_1.jpg": LOWER,  # trousers
    "lower/051517_1.jpg": LOWER,  # flared trousers
    "lower/051827_1.jpg": LOWER,  # ripped jeans
    "upper/00126_00.jpg": UPPER,  # T-shirt
    "upper/00151_00.jpg": UPPER,  # long-sleeved striped top, sleeves along its sides
    "upper/00470_00.jpg": UPPER,  # high-necked long-sleeved blouse
    "upper/02015_00.jpg": UPPER,  # bustier crop top on straps
    "upper/02305_00.jpg": UPPER,  # off-the-shoulder top
    "upper/03032_00.jpg": UPPER,  # T-shirt
    "upper/048554_1.jpg": UPPER,  # long T-shirt
    "upper/048769_1.jpg": UPPER,  # camisole
    "upper/049805_1.jpg": UPPER,  # long-sleeved T-shirt
    "upper/049920_1.jpg": UPPER,  # ruffled blouse
    "upper/049940_1.jpg": UPPER,  # blouse with a corset belt
    "upper/049947_1.jpg": UPPER,  # bell-sleeved blouse
    "upper/21514384_52353349_1000.jpg": UPPER,  # cardigan
    "upper/22790049_53294275_1000.jpg": UPPER,  # knitted vest
    "upper/23255574_53383833_1000.jpg": UPPER,  # jersey
    "upper/24083449_54173465_2048.jpg": UPPER,  # T-shirt
}  # fmt: skip


def _check(guess, expected: Category) -> None:
    assert guess.category == expected, f"read as {guess.category} ({guess.confidence:.2f}), {guess.features}"
    assert guess.confidence == guess.scores[expected] >= 0.8
    assert set(guess.scores) == set(Category)
    assert math.isclose(sum(guess.scores.values()), 1.0, abs_tol=1e-9)


@pytest.fixture(scope="module")
def openvto(examples: Path) -> dict[str, Measured]:
    """Each openvto garment's silhouette, measured once (photo -> garment mask -> measurements) by the bench."""
    found = measure("openvto garments", labelled_folders(examples / "clothes"), examples / "clothes")
    return {m.name: m for m in found}


@pytest.fixture(scope="module")
def shared(shared_data: Path) -> dict[str, Measured]:
    garments = shared_data / "garments"
    return {m.name: m for m in measure("shared garments", labelled_folders(garments), garments)}


@pytest.mark.parametrize("name", sorted(OPENVTO))
def test_openvto_garments(openvto: dict[str, Measured], name: str) -> None:
    assert openvto[name].label == OPENVTO[name]  # the bench reads the same label off the folder's name
    _check(guess_from(openvto[name].features), OPENVTO[name])


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_garments(shared: dict[str, Measured], name: str) -> None:
    assert shared[name].label == SHARED[name]
    _check(guess_from(shared[name].features), SHARED[name])


def test_a_photo_classifies_as_its_measurements_say(examples: Path, openvto: dict[str, Measured]) -> None:
    guess = classify_garment(images.read_rgb(str(examples / "clothes" / "shirts" / "2_front.jpg")))
    assert guess == guess_from(openvto["shirts/2_front.jpg"].features)


def test_the_tables_hold_every_labelled_garment(shared: dict[str, Measured], openvto) -> None:
    """A garment added to either source gets a label here before the accuracy is claimed."""
    assert set(shared) == set(SHARED) and set(openvto) == set(OPENVTO)


def test_the_thresholds_in_the_code_are_the_fit_on_the_labelled_garments(shared, openvto) -> None:
    refit = fit([*shared.values(), *openvto.values()])
    for name in ("legs", "dress"):
        ours, again = getattr(THRESHOLDS, name), getattr(refit, name)
        assert again.threshold == pytest.approx(ours.threshold, abs=0.01), name
        assert again.width == pytest.approx(ours.width, abs=0.01), name
    assert refit.waistband == THRESHOLDS.waistband  # set, not fitted (no skirt among the photos)


def test_leave_one_out_on_the_labelled_garments(shared, openvto) -> None:
    report = run([*shared.values(), *openvto.values()], [])
    assert report["leave_one_out"]["garments"] == 53
    assert report["leave_one_out"]["accuracy"] >= 0.95


def test_the_bench_report_has_a_confusion_matrix_per_set(
    openvto: dict[str, Measured], tmp_path: Path
) -> None:
    found = [openvto[name] for name in sorted(openvto)]
    report = run(found[:-2], [replace(m, set="held out") for m in found[-2:]])
    write(report, tmp_path)
    saved = json.loads((tmp_path / "category-accuracy.json").read_text())
    confusion = saved["sets"]["openvto garments"]["confusion"]
    assert set(confusion) == {Category.UPPER_BODY, Category.LOWER_BODY}  # openvto has no dress
    assert sum(sum(row.values()) for row in confusion.values()) == 22
    assert saved["sets"]["held out"]["garments"] == 2
    assert len(saved["garments"]) == 24 and {"features", "confidence"} <= set(saved["garments"][0])
    md = (tmp_path / "category-accuracy.md").read_text()
    assert "| upper_body |" in md and "leave-one-out" in md


def test_viton_tops_are_read_as_tops(viton256: Path) -> None:
    """Held out (the thresholds were never fitted on them): VITON's garments are all tops; 204 in the sample."""
    photos = sorted((viton256 / "test" / "cloth").glob("*.jpg"))
    guesses = [classify_garment(images.read_rgb(str(p))) for p in photos]
    right = sum(g.category == UPPER for g in guesses)
    assert len(photos) >= 200 and right / len(photos) >= 0.9, f"{right} of {len(photos)} read as tops"


# --- drawn outlines: what no labelled photo shows (a skirt, shorts) ------------------------------------------


def _outline(points: list[tuple[int, int]], h: int = 600, w: int = 500) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.array(points, np.int32)], 255)
    return mask


def test_an_a_line_skirt_is_lower_body() -> None:
    skirt = _outline([(170, 100), (330, 100), (400, 450), (100, 450)])
    features = silhouette(skirt)
    assert features.leg_split == 0.0 and features.waistband > THRESHOLDS.waistband.threshold
    _check(classify_mask(skirt), LOWER)


def test_shorts_are_lower_body() -> None:
    shorts = _outline([(150, 100), (350, 100), (380, 330), (265, 330), (250, 200), (235, 330), (120, 330)])
    _check(classify_mask(shorts), LOWER)


def test_a_t_shirt_and_a_dress_of_the_same_cut_differ_by_length() -> None:
    def shirt(hem: int) -> np.ndarray:
        return _outline(
            [(210, 60), (250, 80), (290, 60), (340, 70), (420, 160), (390, 190), (330, 150),
             (330, hem), (170, hem), (170, 150), (110, 190), (80, 160), (160, 70)],
            h=hem + 40,
        )  # fmt: skip

    _check(classify_mask(shirt(330)), UPPER)
    _check(classify_mask(shirt(640)), DRESS)


# --- bad input ------------------------------------------------------------------------------------------------


def test_a_blank_photo_has_no_garment() -> None:
    with pytest.raises(NoPersonFound, match="no garment found"):
        classify_garment(np.full((400, 300, 3), 255, np.uint8))


def test_an_array_that_is_not_an_rgb_photo_is_refused() -> None:
    with pytest.raises(InvalidInput, match="uint8 RGB"):
        classify_garment(np.zeros((400, 300), np.float32))


# --- the backends answer with the same classifier ------------------------------------------------------------


def test_the_backends_classify_with_the_silhouette(examples: Path, tmp_path: Path) -> None:
    photo = images.read_rgb(str(examples / "clothes" / "pants" / "3_front.jpg"))
    save_random(tmp_path)
    for backend in (KeypointTPSWarp(), LadiVtonWarpBackend.from_pretrained(tmp_path)):
        guess = backend.classify(photo)
        assert guess == classify_garment(photo) and guess.category == LOWER
