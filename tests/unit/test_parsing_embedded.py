"""The embedded parser (BlazePose + geometry + colour) and the label sets, on real photos and references."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from services.parsing import labels as L
from services.parsing.agnostic import agnostic_mask
from services.parsing.backends.geometric import GeometricParser, Skeleton, parse_person
from services.parsing.types import ParseEstimate
from vton.runtime.errors import NoPersonFound

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
requires_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not on this machine")
GARMENT = (L.UPPER_CLOTHES, L.DRESS, L.COAT)
LOWER_GARMENT = (L.PANTS, L.SKIRT)
# Class groups compared with the references (VITON-HD's neck is folded into the face by vitonhd_to_lip).
GROUPS = {
    "background": (L.BACKGROUND,),
    "face": (L.FACE, L.SUNGLASSES),
    "hair": (L.HAIR, L.HAT),
    "upper clothes": GARMENT,
    "arms": (L.LEFT_ARM, L.RIGHT_ARM, L.GLOVE),
    "lower body": (
        L.PANTS,
        L.SKIRT,
        L.JUMPSUITS,
        L.LEFT_LEG,
        L.RIGHT_LEG,
        L.SOCKS,
        L.LEFT_SHOE,
        L.RIGHT_SHOE,
    ),
}


def read_rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


@dataclass
class Parsed:
    name: str
    image: np.ndarray
    labels: np.ndarray
    keypoints: np.ndarray
    has_face_mesh: bool
    seconds: float


@pytest.fixture(scope="module")
def parser(blazepose) -> GeometricParser:
    return GeometricParser(blazepose)


def run(parser: GeometricParser, path: Path) -> Parsed:
    image = read_rgb(path)
    start = time.perf_counter()
    observation = parser.pose.observe(image, with_face=True)
    estimate = parser.parse_observation(image, observation)
    seconds = time.perf_counter() - start
    assert isinstance(estimate, ParseEstimate) and estimate.label_set == "lip"
    return Parsed(
        path.name, image, estimate.labels, observation.keypoints, observation.face is not None, seconds
    )


@pytest.fixture(scope="module")
def photos(parser, examples) -> list[Parsed]:
    """Every person photo at hand: the openvto avatars always, the shared people photos when present."""
    paths = sorted((examples / "avatars").glob("*.png"))
    if SHARED.is_dir():
        paths += sorted(p for p in (SHARED / "people").iterdir() if p.suffix in (".jpg", ".png", ".webp"))
    parsed = [run(parser, p) for p in paths]
    times = [p.seconds for p in parsed]
    print(
        f"\nparsed {len(parsed)} photos: {np.mean(times) * 1000:.0f} ms mean, {max(times) * 1000:.0f} ms max"
    )
    return parsed


# --- label sets ----------------------------------------------------------------------------------------------
def test_lip_labels_in_schp_order():
    assert len(L.LIP_LABELS) == 20
    assert [L.LIP_LABELS[i] for i in (0, 2, 5, 9, 12, 13, 14, 15, 18, 19)] == [
        "background", "hair", "upper-clothes", "pants", "skirt", "face",
        "left-arm", "right-arm", "left-shoe", "right-shoe",
    ]  # fmt: skip
    assert L.LIP["dress"] == L.DRESS == 6


def test_palette_is_the_bit_pattern_map_schp_draws_with():
    palette = np.array(L.get_palette(20)).reshape(-1, 3)
    assert palette[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert len({tuple(c) for c in palette}) == 20  # every class its own colour
    labels = np.array([[0, 13], [5, 19]], np.uint8)
    rgb = L.colorize(labels)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[1, 0].tolist() == palette[5].tolist() and rgb[0, 1].tolist() == palette[13].tolist()


@requires_shared
def test_palette_matches_the_datasets_palette_pngs():
    """Dress Code's label map PNGs carry the same bit-pattern palette for their 18 classes."""
    png = next((SHARED / "annotated" / "dresscode").glob("*/label_maps/*.png"))
    stored = np.array(Image.open(png).getpalette()[: 18 * 3]).reshape(-1, 3)
    assert np.array_equal(stored, np.array(L.get_palette(18)).reshape(-1, 3))


def test_vitonhd_neck_becomes_face():
    vitonhd = np.array([[0, 2, 5, 10, 13, 14, 15, 9]], np.uint8)
    assert L.vitonhd_to_lip(vitonhd).tolist() == [[0, 2, 5, 13, 13, 14, 15, 9]]


@requires_shared
def test_dresscode_label_maps_map_onto_lip():
    root = SHARED / "annotated" / "dresscode" / "upper_body" / "label_maps"
    dresscode = np.array(Image.open(next(root.glob("*.png"))))
    lip = L.dresscode_to_lip(dresscode)
    code = {name: i for i, name in enumerate(L.DRESSCODE_LABELS)}
    assert ((dresscode == code["upper_clothes"]) == (lip == L.UPPER_CLOTHES)).all()
    assert ((dresscode == code["left_leg"]) == (lip == L.LEFT_LEG)).all()
    assert ((dresscode == code["right_arm"]) == (lip == L.RIGHT_ARM)).all()
    assert ((dresscode == code["head"]) == (lip == L.FACE)).all()
    assert (lip[dresscode == code["bag"]] == L.BACKGROUND).all()
    # A person photographed for the upper-body split wears a top: most of the person is that top.
    assert (lip == L.UPPER_CLOTHES).sum() > 0.2 * (lip > 0).sum()


# --- the parser on photos --------------------------------------------------------------------------------------
def test_parser_refuses_an_empty_photo(parser):
    with pytest.raises(NoPersonFound, match="no person found"):
        parser.parse(np.full((512, 384, 3), 235, np.uint8))


def test_parse_returns_lip_labels_at_the_photos_size(parser, examples):
    image = read_rgb(examples / "avatars" / "2.png")
    estimate = parser.parse(image)
    assert estimate.label_set == "lip" and estimate.people_detected >= 1
    assert estimate.labels.shape == image.shape[:2] and estimate.labels.dtype == np.uint8


def test_every_photo_gets_a_plausible_parse(photos):
    for p in photos:
        labels = p.labels
        assert labels.max() <= 19, p.name
        person = labels > 0
        assert 0.03 < person.mean() < 0.9, p.name
        assert np.isin(labels, GARMENT).sum() > 0.1 * person.sum(), p.name
        ys = np.nonzero(person)[0]
        top, height = ys.min(), ys.max() - ys.min() + 1
        face = labels == L.FACE
        if p.has_face_mesh:
            assert face.sum() > 0.005 * person.sum(), p.name
        if face.any():
            # The face (with the neck) is in the top part of the person, above the upper clothes' middle.
            face_y = np.nonzero(face)[0].mean()
            assert face_y < top + 0.35 * height, p.name
            assert face_y < np.nonzero(np.isin(labels, GARMENT))[0].mean(), p.name


def test_upper_body_mask_covers_the_garment_and_keeps_the_head(photos):
    for p in photos:
        labels, keypoints = p.labels, p.keypoints
        mask = agnostic_mask(labels, keypoints, "upper_body") > 0
        garment = np.isin(labels, GARMENT)
        assert mask[garment].mean() > 0.95, p.name
        assert not mask[labels == L.HAIR].any(), p.name
        if keypoints[14, 2] > 0 and keypoints[15, 2] > 0:
            eyes_y = int(keypoints[[14, 15], 1].max())
            above_eyes = (labels == L.FACE) & (np.arange(labels.shape[0])[:, None] <= eyes_y)
            assert not mask[above_eyes].any(), p.name
        assert not mask[np.isin(labels, LOWER_GARMENT)].any(), p.name


def test_lower_body_mask_covers_the_pants_and_keeps_the_top(photos):
    for p in photos:
        labels = p.labels
        lower = np.isin(labels, LOWER_GARMENT)
        if lower.sum() < 0.02 * (labels > 0).sum():
            continue  # a dress or a photo cut at the waist
        mask = agnostic_mask(labels, p.keypoints, "lower_body") > 0
        assert mask[lower].mean() > 0.95, p.name
        assert not mask[labels == L.UPPER_CLOTHES].any(), p.name
        assert not mask[labels == L.FACE].any(), p.name


# --- against reference parse maps and masks ------------------------------------------------------------------
def group_iou(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    out = {}
    for group, classes in GROUPS.items():
        a, b = np.isin(predicted, classes), np.isin(reference, classes)
        if a.any() or b.any():
            out[group] = float((a & b).sum() / (a | b).sum())
    a, b = predicted > 0, reference > 0
    out["person"] = float((a & b).sum() / (a | b).sum())
    return out


def vitonhd_parse_references() -> list[tuple[Path, np.ndarray]]:
    pairs = []
    annotated = SHARED / "annotated" / "vitonhd"
    for image in sorted((annotated / "image").glob("*.jpg")):
        for folder in ("image-parse", "image-parse-v3"):
            parse = annotated / folder / f"{image.stem}.png"
            if parse.exists():
                pairs.append((image, parse))
    paired = SHARED / "pairs" / "vitonhd"
    for parse in sorted((paired / "image-parse-v3").glob("*.png")):
        pairs.append((paired / "image" / f"{parse.stem}.jpg", parse))
    return [(image, L.vitonhd_to_lip(np.array(Image.open(parse)))) for image, parse in pairs]


@requires_shared
def test_parse_agrees_with_vitonhd_reference_parses(parser):
    references = vitonhd_parse_references()
    assert len(references) >= 4
    scores: dict[str, list[float]] = {}
    for image_path, reference in references:
        parsed = run(parser, image_path)
        ious = group_iou(parsed.labels, reference)
        print(f"{image_path.stem}: " + " ".join(f"{k}={v:.2f}" for k, v in ious.items()))
        for group, value in ious.items():
            scores.setdefault(group, []).append(value)
    means = {group: float(np.mean(values)) for group, values in scores.items()}
    print("mean IoU vs VITON-HD parses: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    assert means["person"] > 0.9
    assert means["upper clothes"] > 0.65
    assert means["face"] > 0.5


@requires_shared
def test_upper_body_mask_covers_reference_inpainting_masks(parser):
    """IDM-VTON-style inpainting masks drawn for these photos: ours (LaDI-VTON's, tighter) covers most of them."""
    masks = sorted((SHARED / "pairs" / "vitonhd" / "agnostic-mask").glob("*_mask.png"))
    masks += sorted((SHARED / "annotated" / "vitonhd" / "agnostic-mask").glob("*_mask.png"))
    assert masks
    for path in masks:
        name = path.name.removesuffix("_mask.png")
        image_path = next(p for p in path.parent.parent.glob(f"image/{name}.*"))
        parsed = run(parser, image_path)
        ours = agnostic_mask(parsed.labels, parsed.keypoints, "upper_body") > 0
        theirs = np.array(Image.open(path).convert("L")) > 127
        theirs = cv2.resize(theirs.astype(np.uint8), ours.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        cover = (ours & theirs).sum() / theirs.sum()
        iou = (ours & theirs).sum() / (ours | theirs).sum()
        print(f"{name}: covers {cover:.2f} of the reference mask, IoU {iou:.2f}")
        assert cover > 0.7, name
        assert iou > 0.5, name


@requires_shared
def test_colour_rules_split_a_given_silhouette_with_given_openpose_keypoints():
    """The region rules alone, on VITON-HD's own OpenPose keypoints and the reference silhouette (no face mesh):
    the garments and limbs inside the outline still come out where the reference has them."""
    annotated = SHARED / "annotated" / "vitonhd"
    body25_to_coco18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    scores: dict[str, list[float]] = {}
    for parse_path in sorted((annotated / "image-parse").glob("*.png")):
        name = parse_path.stem
        pose = json.loads((annotated / "openpose-json" / f"{name}_keypoints.json").read_text())
        keypoints = np.array(pose["people"][0]["pose_keypoints_2d"], np.float32).reshape(-1, 3)[
            body25_to_coco18
        ]
        reference = L.vitonhd_to_lip(np.array(Image.open(parse_path)))
        image = read_rgb(annotated / "image" / f"{name}.jpg")
        labels = parse_person(image, (reference > 0).astype(np.float32), Skeleton.from_keypoints(keypoints))
        assert labels.shape == reference.shape
        for group, value in group_iou(labels, reference).items():
            scores.setdefault(group, []).append(value)
    means = {group: float(np.mean(values)) for group, values in scores.items()}
    print(
        "mean IoU with given keypoints and silhouette: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
    )
    assert means["upper clothes"] > 0.65
    assert means["lower body"] > 0.7
    assert means["person"] > 0.97
