"""The whole embedded chain (BlazePose, geometric parsing, agnostic mask, keypoint warp, composite) on real photos,
measured by the geometry a shopper sees (issue 16): the garment in one piece, no old garment left showing,
trousers down both legs, a long dress down to the shoes at the product photo's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from services.diffusion.backends.composite import CompositeBackend
from services.diffusion.types import TryOnInputs
from services.parsing.agnostic import cloth_agnostic
from services.parsing.backends.geometric import GeometricParser
from services.pose.openpose_format import pose_map
from services.warp.backends.keypoint_tps import KeypointTPSWarp
from services.warp.garment import analyse_garment
from services.warp.placement import FLAT_FACTOR
from services.warp.types import WarpInputs
from services.warp.upper import CHEST_PRIOR
from vton.runtime.blazepose import BlazePose
from vton.runtime.vocab import Category, Keypoint, Lip
from vton_cli.examples import fetch_examples

DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not on this machine")

# What each category replaces: the old garment's parse region that must not show after the try-on.
REPLACED = {
    Category.UPPER_BODY: (Lip.UPPER_CLOTHES, Lip.COAT),
    Category.LOWER_BODY: (Lip.PANTS, Lip.SKIRT),
    Category.DRESSES: (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT, Lip.PANTS, Lip.SKIRT, Lip.JUMPSUITS),
}
UNCHANGED = 10  # a pixel within this of the photo on every channel is unchanged
LOOSE = 0.01  # a patch of at least this share of the garment counts as a piece


@dataclass
class TryOn:
    person: np.ndarray
    garment: np.ndarray
    keypoints: np.ndarray
    labels: np.ndarray
    warped_garment: np.ndarray
    warped_mask: np.ndarray
    result: np.ndarray


@cache
def try_on(pose: BlazePose, person_path: Path, garment_path: Path, category: Category) -> TryOn:
    """One try-on through the embedded backends, in process, as the stages chain them."""
    person = np.array(Image.open(person_path).convert("RGB"))
    garment = np.array(Image.open(garment_path).convert("RGB"))
    observation = pose.observe(person, with_face=True)
    keypoints = observation.keypoints
    labels = GeometricParser(pose).parse_observation(person, observation).labels
    mask, masked = cloth_agnostic(person, labels, keypoints, category)
    h, w = person.shape[:2]
    poses = pose_map(keypoints, w, h)
    warped = KeypointTPSWarp().warp(
        WarpInputs(garment, person, masked, mask, keypoints, labels, category, pose_map=poses)
    )
    inputs = TryOnInputs(
        person, masked, mask, warped.warped_garment, warped.warped_mask, garment, labels, category, poses
    )
    result = CompositeBackend().try_on(inputs)
    return TryOn(person, garment, keypoints, labels, warped.warped_garment, warped.warped_mask, result)


def pieces(mask: np.ndarray) -> int:
    """Connected pieces of a mask holding at least LOOSE of it."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= LOOSE * areas.sum()).sum()) if count > 1 else 0


def old_garment_left(t: TryOn, category: Category) -> float:
    """Share of the old garment's parse region that the result leaves as it was and the new garment does not
    cover (where the new garment lies, a colour like the old one's is the new garment's)."""
    old = np.isin(t.labels, REPLACED[category])
    same = np.abs(t.result.astype(int) - t.person.astype(int)).max(axis=2) <= UNCHANGED
    return float((old & same & (t.warped_mask == 0)).sum() / max(old.sum(), 1))


def along(points: list[np.ndarray], start: float, stop: float, count: int = 40) -> np.ndarray:
    """Points evenly spaced along a polyline, between two shares of its length."""
    lengths = [float(np.linalg.norm(b - a)) for a, b in zip(points, points[1:], strict=False)]
    total = sum(lengths)
    out = []
    for share in np.linspace(start, stop, count):
        d = share * total
        for a, b, length in zip(points, points[1:], lengths, strict=False):
            if d <= length or b is points[-1]:
                out.append(a + (b - a) * min(1.0, d / max(length, 1e-6)))
                break
            d -= length
    return np.array(out)


def examples_path(name: str) -> Path:
    return fetch_examples() / name


def shared(*parts: str) -> Path:
    if not DATA.is_dir():
        pytest.skip("../shared/data is not on this machine")
    return DATA.joinpath(*parts)


SHOP = "mothr22044226e8_1718142523286_2-0._QL90_UX564_V12524t6_.jpg"
ONE_PIECE = [
    # (person, garment, category); the pieces measured before this work in the comment
    (
        lambda: examples_path("avatars/2.png"),
        lambda: examples_path("clothes/pants/1_front.jpg"),
        "lower_body",
    ),  # 2
    (
        lambda: examples_path("avatars/1.png"),
        lambda: examples_path("clothes/shirts/1_front.jpg"),
        "upper_body",
    ),  # 1
    (
        lambda: shared("people", "fashn_model.webp"),
        lambda: shared("garments", "upper", "00470_00.jpg"),
        "upper_body",
    ),  # 2
    (lambda: shared("people", SHOP), lambda: shared("garments", "upper", "049920_1.jpg"), "upper_body"),  # 2
    (
        lambda: shared("annotated", "vitonhd", "image", "00891_00.jpg"),
        lambda: shared("annotated", "vitonhd", "cloth", "11351_00.jpg"),
        "upper_body",
    ),  # 2
]


@pytest.mark.parametrize(
    ("person", "garment", "category"), ONE_PIECE, ids=["trousers", "shirt", "seated", "ruffles", "tee"]
)
def test_the_garment_lands_in_one_piece(person, garment, category, blazepose):
    """Class 2: a hand on the hip, a seated pose, ruffled sleeves or a waistband above the top worn over it no
    longer leave loose patches of the new garment (four of these five came out in two pieces before)."""
    t = try_on(blazepose, person(), garment(), Category(category))
    assert pieces(t.warped_mask) == 1


def print_through(t: TryOn, sigma: float = 3.0) -> float:
    """How much of the old garment's fine detail (a knit, a print) the result carries beyond the new garment's
    own: the correlation, over the new garment, of the result's detail less the warped garment's with the
    person photo's."""
    inner = cv2.erode((t.warped_mask > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0

    def detail(image: np.ndarray) -> np.ndarray:
        lum = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return lum - cv2.GaussianBlur(lum, (0, 0), sigma)

    return float(
        np.corrcoef((detail(t.result) - detail(t.warped_garment))[inner], detail(t.person)[inner])[0, 1]
    )


@pytest.mark.parametrize(
    ("person", "garment"),
    [
        (lambda: examples_path("avatars/3.png"), lambda: examples_path("clothes/shirts/1_front.jpg")),  # 0.37
        (lambda: examples_path("avatars/3.png"), lambda: examples_path("clothes/shirts/2_front.jpg")),  # 0.45
        (lambda: shared("people", SHOP), lambda: shared("garments", "upper", "049920_1.jpg")),  # 0.48
    ],
    ids=["knit-shirt", "knit-print", "slogan"],
)
def test_the_old_garments_knit_and_print_do_not_show_through(person, garment, blazepose):
    """Class 3: a shirt onto a cable-knit sweater, a blouse onto a slogan T-shirt: the new garment takes the
    person's light, not the old garment's knit or letters (0.37-0.48 of correlation before, in the comments)."""
    t = try_on(blazepose, person(), garment(), Category.UPPER_BODY)
    assert print_through(t) < 0.15


def leg_coverage(t: TryOn, chain: tuple[Keypoint, ...]) -> float:
    """Share of points along the leg's keypoints, and a small step either side of them, that the trousers cover
    (a hand resting on the thigh is in front of them: its points do not count)."""
    placed = t.warped_mask > 0
    hands = np.isin(t.labels, (Lip.LEFT_ARM, Lip.RIGHT_ARM))
    h, w = placed.shape
    step = 0.08 * float(
        np.linalg.norm(t.keypoints[Keypoint.L_SHOULDER, :2] - t.keypoints[Keypoint.R_SHOULDER, :2])
    )
    leg = [t.keypoints[k, :2].astype(np.float64) for k in chain]
    points = [(x + dx, y) for x, y in along(leg, 0.15, 0.95) for dx in (-step, 0.0, step)]
    points = [(int(y), int(np.clip(x, 0, w - 1))) for x, y in points if y < h - 2]
    return float(np.mean([placed[y, x] for y, x in points if not hands[y, x]]))


@pytest.mark.parametrize(
    ("person", "garment"),
    [("avatars/2.png", "clothes/pants/1_front.jpg"), ("avatars/4.png", "clothes/pants/1_front.jpg")],
)
def test_trousers_run_down_both_legs_to_the_shoes(person, garment, blazepose):
    """Class 4: each trouser leg follows its leg from the hip to the ankle (before: 0.61 and 0.79 of one leg,
    straight jeans on legs apart came out as a bent skirt with a leg cut)."""
    t = try_on(blazepose, examples_path(person), examples_path(garment), Category.LOWER_BODY)
    for chain in (
        (Keypoint.R_HIP, Keypoint.R_KNEE, Keypoint.R_ANKLE),
        (Keypoint.L_HIP, Keypoint.L_KNEE, Keypoint.L_ANKLE),
    ):
        assert leg_coverage(t, chain) > 0.95, chain[0].name


@pytest.mark.parametrize(
    ("person", "skirt"), [("01008_00.jpg", "051412_1.jpg"), ("02849_00.jpg", "051515_1.jpg")]
)
def test_trousers_onto_a_person_in_a_skirt_cover_both_legs(person, skirt, blazepose):
    """Class 4: trousers onto shop photos of people in skirts, cut at the thighs: both thighs are trousered down
    to the frame and the skirt is gone."""
    t = try_on(blazepose, shared("people", person), shared("garments", "lower", skirt), Category.LOWER_BODY)
    h = t.warped_mask.shape[0]
    for hip, knee in ((Keypoint.R_HIP, Keypoint.R_KNEE), (Keypoint.L_HIP, Keypoint.L_KNEE)):
        # The knee is below the frame: the thigh runs on to the frame's edge.
        a = t.keypoints[hip, :2].astype(np.float64)
        b = (
            t.keypoints[knee, :2].astype(np.float64)
            if t.keypoints[knee, 2] > 0
            else np.array([a[0], h - 1.0])
        )
        t_leg = TryOn(
            t.person, t.garment, t.keypoints.copy(), t.labels, t.warped_garment, t.warped_mask, t.result
        )
        t_leg.keypoints[knee, :2] = b
        t_leg.keypoints[knee, 2] = 1.0
        assert leg_coverage(t_leg, (hip, knee)) > 0.9, hip.name
    assert old_garment_left(t, Category.LOWER_BODY) < 0.05


def garment_length_ratio(t: TryOn) -> float:
    """The dress's length on the body over the length its product photo gives at the body's size: shoulders to
    hem on the body (the warped dress's lowest row near the axis) against the product's shoulders to hem times
    the body's chest over the product's (a flat chest is FLAT_FACTOR times the body's front)."""
    marks = analyse_garment(t.garment, Category.DRESSES).landmarks
    g_chest = abs(marks["left_armpit"][0] - marks["right_armpit"][0]) / FLAT_FACTOR
    g_length = 0.5 * (marks["right_hem"][1] + marks["left_hem"][1]) - 0.5 * (
        marks["right_shoulder"][1] + marks["left_shoulder"][1]
    )
    k = t.keypoints
    shoulders = 0.5 * (k[Keypoint.R_SHOULDER, :2] + k[Keypoint.L_SHOULDER, :2])
    b_chest = 2 * CHEST_PRIOR * float(np.linalg.norm(k[Keypoint.L_SHOULDER, :2] - k[Keypoint.R_SHOULDER, :2]))
    columns = t.warped_mask[:, int(shoulders[0]) - 5 : int(shoulders[0]) + 6] > 0
    b_length = float(np.flatnonzero(columns.any(axis=1)).max()) - shoulders[1]
    return b_length / (g_length * b_chest / g_chest)


@needs_data
@pytest.mark.parametrize(
    ("person", "dress"), [("avatars/1.png", "051998_1.jpg"), ("avatars/2.png", "052234_1.jpg")]
)
def test_a_long_dress_onto_a_person_in_trousers_reaches_the_shoes(person, dress, blazepose):
    """Class 4: a long dress onto a studio photo of a person in trousers ends at the ankles (before: above the
    knee, the trousers' legs filled in below, or past the shoes), at the product photo's length, and no trouser
    shows."""
    t = try_on(blazepose, examples_path(person), DATA / "garments" / "dresses" / dress, Category.DRESSES)
    k = t.keypoints
    ankles = float(np.mean(k[[Keypoint.R_ANKLE, Keypoint.L_ANKLE], 1]))
    knees = float(np.mean(k[[Keypoint.R_KNEE, Keypoint.L_KNEE], 1]))
    hem = float(np.flatnonzero((t.warped_mask > 0).any(axis=1)).max())
    # Between the ankles and the shoes' tops (before: -0.27, above the knee, and 1.57, below the shoes).
    assert 0.7 < (hem - knees) / (ankles - knees) < 1.3
    # The product photo's length, at the body's size, within what its widths can be read to.
    assert 0.7 < garment_length_ratio(t) < 1.3
    assert old_garment_left(t, Category.DRESSES) < 0.05
