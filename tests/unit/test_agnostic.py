"""The cloth-agnostic mask and the masked person, built LaDI-VTON's way from a LIP label map and the pose."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from services.parsing import labels as L
from services.parsing.agnostic import MASK_GREY, agnostic_mask, cloth_agnostic, masked_person
from services.parsing.labels import vitonhd_to_lip
from vton.runtime.errors import InvalidInput

H, W = 512, 384
# OpenPose COCO-18 keypoints of the drawn figure; "R" is the person's right, on the image's left.
KEYPOINTS = np.array(
    [
        [192, 80, 1],  # Nose
        [192, 135, 1],  # Neck
        [135, 135, 1],  # RShoulder
        [112, 210, 1],  # RElbow
        [108, 280, 1],  # RWrist
        [249, 135, 1],  # LShoulder
        [272, 210, 1],  # LElbow
        [276, 280, 1],  # LWrist
        [165, 290, 1],  # RHip
        [165, 380, 1],  # RKnee
        [165, 462, 1],  # RAnkle
        [219, 290, 1],  # LHip
        [219, 380, 1],  # LKnee
        [219, 462, 1],  # LAnkle
        [180, 65, 1],  # REye
        [204, 65, 1],  # LEye
        [165, 72, 1],  # REar
        [219, 72, 1],  # LEar
    ],
    np.float32,
)


def figure() -> np.ndarray:
    """A LIP label map of a standing person: hair, face and neck, top, pants, arms with long hands, shoes."""
    labels = np.zeros((H, W), np.uint8)
    cv2.ellipse(labels, (192, 62), (42, 40), 0, 0, 360, L.HAIR, -1)
    cv2.ellipse(labels, (192, 75), (28, 34), 0, 0, 360, L.FACE, -1)
    cv2.rectangle(labels, (180, 105), (204, 132), L.FACE, -1)  # the neck: LIP labels it face
    torso = np.array([[135, 130], [249, 130], [240, 292], [144, 292]], np.int32)
    cv2.fillConvexPoly(labels, torso, L.UPPER_CLOTHES)
    cv2.rectangle(labels, (144, 292), (240, 330), L.PANTS, -1)
    cv2.rectangle(labels, (146, 330), (188, 462), L.PANTS, -1)
    cv2.rectangle(labels, (196, 330), (238, 462), L.PANTS, -1)
    for side, label in ((0, L.RIGHT_ARM), (1, L.LEFT_ARM)):
        shoulder, elbow, wrist = (KEYPOINTS[i, :2].astype(int) for i in ((2, 3, 4), (5, 6, 7))[side])
        hand_end = wrist + np.array([0, 75])
        for a, b in ((shoulder, elbow), (elbow, wrist), (wrist, hand_end)):
            cv2.line(labels, tuple(int(v) for v in a), tuple(int(v) for v in b), int(label), 22)
    cv2.rectangle(labels, (146, 463), (188, 490), L.RIGHT_SHOE, -1)
    cv2.rectangle(labels, (196, 463), (238, 490), L.LEFT_SHOE, -1)
    return labels


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return figure()


def masked(mask: np.ndarray, region: np.ndarray) -> float:
    """Share of a region's pixels that the mask repaints."""
    return float((mask[region] > 0).mean())


def test_upper_body_repaints_top_arms_and_neck_and_keeps_the_rest(labels):
    mask = agnostic_mask(labels, KEYPOINTS, "upper_body")
    assert mask.dtype == np.uint8 and mask.shape == labels.shape
    assert set(np.unique(mask)) <= {0, 255}
    assert masked(mask, labels == L.UPPER_CLOTHES) == 1.0
    upper_arms = np.isin(labels, (L.LEFT_ARM, L.RIGHT_ARM)) & (np.arange(H)[:, None] < 260)
    assert masked(mask, upper_arms) == 1.0
    # Kept untouched: hair, the face above the neck, the lower garment, the shoes, the hands' far end.
    for kept in (L.HAIR, L.PANTS, L.LEFT_SHOE, L.RIGHT_SHOE):
        assert masked(mask, labels == kept) == 0.0, L.LIP_LABELS[kept]
    face_above_neck = (labels == L.FACE) & (np.arange(H)[:, None] < 108)
    assert masked(mask, face_above_neck) == 0.0
    fingers = np.isin(labels, (L.LEFT_ARM, L.RIGHT_ARM)) & (np.arange(H)[:, None] > 335)
    assert fingers.any() and masked(mask, fingers) == 0.0
    # The neck just above the shoulders is repainted (the new collar may differ), as Dress Code does.
    neck = (labels == L.FACE) & (np.arange(H)[:, None] >= 120)
    assert masked(mask, neck) == 1.0
    # The region reaches past the garment's outline into the background (a looser garment may come), but
    # not across the whole photo.
    assert (mask[labels == L.BACKGROUND] > 0).sum() > 0.05 * (labels == L.UPPER_CLOTHES).sum()
    assert mask[5, 5] == 0 and mask[H - 5, W - 5] == 0 and mask[5, W - 5] == 0


def test_lower_body_repaints_the_pants_and_keeps_the_top(labels):
    mask = agnostic_mask(labels, KEYPOINTS, "lower_body")
    assert masked(mask, labels == L.PANTS) == 1.0
    for kept in (L.UPPER_CLOTHES, L.LEFT_ARM, L.RIGHT_ARM, L.FACE, L.HAIR, L.LEFT_SHOE, L.RIGHT_SHOE):
        assert masked(mask, labels == kept) == 0.0, L.LIP_LABELS[kept]
    # The gap between the legs is background inside the dilated region: repainted (a skirt may fill it).
    assert mask[400, 192] == 255


def test_dresses_repaint_top_and_bottom(labels):
    mask = agnostic_mask(labels, KEYPOINTS, "dresses")
    assert masked(mask, np.isin(labels, (L.UPPER_CLOTHES, L.PANTS))) == 1.0
    for kept in (L.HAIR, L.LEFT_SHOE, L.RIGHT_SHOE):
        assert masked(mask, labels == kept) == 0.0
    assert masked(mask, (labels == L.FACE) & (np.arange(H)[:, None] < 108)) == 0.0


def test_a_skirt_counts_as_the_lower_garment(labels):
    with_skirt = np.where(labels == L.PANTS, L.SKIRT, labels).astype(np.uint8)
    assert masked(agnostic_mask(with_skirt, KEYPOINTS, "lower_body"), with_skirt == L.SKIRT) == 1.0
    assert masked(agnostic_mask(with_skirt, KEYPOINTS, "upper_body"), with_skirt == L.SKIRT) == 0.0


def test_an_arm_without_its_elbow_is_not_drawn_across_the_body(labels):
    keypoints = KEYPOINTS.copy()
    keypoints[6] = 0  # LElbow missing: the left wrist cannot be joined to the shoulder
    mask = agnostic_mask(labels, keypoints, "upper_body")
    left_forearm = (labels == L.LEFT_ARM) & (np.arange(H)[:, None] > 240)
    right_forearm = (labels == L.RIGHT_ARM) & (np.arange(H)[:, None] > 240) & (np.arange(H)[:, None] < 300)
    assert masked(mask, left_forearm) < 0.5
    assert masked(mask, right_forearm) == 1.0


def test_the_mask_scales_with_the_image(labels):
    """The same person at twice the size gives the same mask at twice the size."""
    small = agnostic_mask(labels, KEYPOINTS, "upper_body") > 0
    big_labels = cv2.resize(labels, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    big_keypoints = KEYPOINTS * np.array([2, 2, 1], np.float32)
    big = agnostic_mask(big_labels, big_keypoints, "upper_body")
    down = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA) > 127
    assert (small & down).sum() / (small | down).sum() > 0.97


def test_masked_person_is_grey_inside_the_mask_and_untouched_outside(labels):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask, person = cloth_agnostic(image, labels, KEYPOINTS, "upper_body")
    inside = mask > 0
    assert (person[inside] == MASK_GREY).all()
    assert np.array_equal(person[~inside], image[~inside])
    assert np.array_equal(masked_person(image, mask), person)


@pytest.mark.parametrize("category", ["shoes", "", "Upper_Body"])
def test_unknown_category_is_invalid_input(labels, category):
    with pytest.raises(InvalidInput, match="category"):
        agnostic_mask(labels, KEYPOINTS, category)


def test_sizes_that_disagree_are_invalid_input(labels):
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(InvalidInput, match="same size"):
        cloth_agnostic(image, labels[:-8], KEYPOINTS, "upper_body")
    with pytest.raises(InvalidInput, match="mask"):
        masked_person(image, np.zeros((H, W + 1), np.uint8))
    with pytest.raises(InvalidInput, match="keypoints"):
        agnostic_mask(labels, KEYPOINTS[:17], "upper_body")
    with pytest.raises(InvalidInput, match="label map"):
        agnostic_mask(np.zeros((H, W, 3), np.uint8), KEYPOINTS, "upper_body")


# --- against VITON-HD's own parse maps and OpenPose keypoints ------------------------------------------------
BODY25_TO_COCO18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]


def vitonhd_references(shared_data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LIP labels, COCO-18 keypoints) of each annotated VITON-HD person."""
    root = shared_data / "annotated" / "vitonhd"
    out = []
    for image in sorted((root / "image").glob("*.jpg")):
        for parse_dir, pose_dir in (("image-parse", "openpose-json"), ("image-parse-v3", "openpose_json")):
            parse, pose = (
                root / parse_dir / f"{image.stem}.png",
                root / pose_dir / f"{image.stem}_keypoints.json",
            )
            if parse.exists() and pose.exists():
                body25 = json.loads(pose.read_text())["people"][0]["pose_keypoints_2d"]
                keypoints = np.array(body25, np.float32).reshape(-1, 3)[BODY25_TO_COCO18]
                out.append((image.stem, vitonhd_to_lip(np.array(Image.open(parse))), keypoints))
    return out


def test_upper_body_mask_on_vitonhd_references(shared_data):
    samples = vitonhd_references(shared_data)
    assert len(samples) >= 3
    for name, labels, keypoints in samples:
        mask = agnostic_mask(labels, keypoints, "upper_body")
        garment = np.isin(labels, (L.UPPER_CLOTHES, L.DRESS, L.COAT))
        assert masked(mask, garment) > 0.99, name
        assert masked(mask, labels == L.HAIR) == 0.0, name
        assert masked(mask, np.isin(labels, (L.PANTS, L.SKIRT))) == 0.0, name
        # The eyes' row and everything above it stays.
        eyes_y = int(keypoints[[14, 15], 1].max())
        assert masked(mask, (labels == L.FACE) & (np.arange(labels.shape[0])[:, None] <= eyes_y)) == 0.0, name
