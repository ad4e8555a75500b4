"""The embedded warp: thin-plate splines, and the keypoint TPS backend on real persons and product photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.warp import tps
from services.warp.backends.keypoint_tps import KeypointTPSWarp
from services.warp.types import WarpInputs
from tests.unit.embedded_chain import ANNOTATED, DATA, annotated_person, needs_data
from vton.runtime.errors import NoPersonFound
from vton.runtime.vocab import Lip

UPPER_CLOTHES, PANTS, SKIRT = Lip.UPPER_CLOTHES, Lip.PANTS, Lip.SKIRT
ARMS, HEAD = (Lip.LEFT_ARM, Lip.RIGHT_ARM), (Lip.HAT, Lip.HAIR, Lip.SUNGLASSES, Lip.FACE)


# --- thin-plate spline ---------------------------------------------------------------------------------------


def test_tps_interpolates_its_control_points():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 500, (12, 2))
    target = source + rng.normal(0, 20, source.shape)
    spline = tps.ThinPlateSpline(source, target, regularization=1e-8)
    assert np.allclose(spline(source), target, atol=1e-3)


def test_tps_reproduces_an_affine_map_exactly_everywhere():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 400, (8, 2))
    a = np.array([[1.1, 0.2], [-0.15, 0.9]])
    target = source @ a.T + np.array([30.0, -12.0])
    spline = tps.ThinPlateSpline(source, target)
    probe = rng.uniform(-100, 500, (50, 2))
    assert np.allclose(spline(probe), probe @ a.T + np.array([30.0, -12.0]), atol=1e-6)


def test_warp_moves_the_image_with_its_points():
    image = np.zeros((120, 100, 3), np.uint8)
    image[40:60, 30:50] = (200, 40, 40)
    mask = np.zeros((120, 100), np.uint8)
    mask[40:60, 30:50] = 255
    corners = np.array([[0, 0], [99, 0], [0, 119], [99, 119], [50, 60]], float)
    maps = tps.inverse_maps(corners, corners + [10, 20], (160, 140), grid_step=4)
    warped, warped_mask = tps.warp(image, mask, maps)
    assert warped.shape == (160, 140, 3) and warped_mask.shape == (160, 140)
    ys, xs = np.nonzero(warped_mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == pytest.approx((60, 79, 40, 59), abs=1)
    assert (warped[warped_mask > 0] == (200, 40, 40)).all()
    assert (warped[warped_mask == 0] == 0).all()


# --- the backend on real persons -----------------------------------------------------------------------------


def _warp(name: str, garment: Path, category: str = "upper_body"):
    from services.parsing.agnostic import cloth_agnostic

    photo, labels, keypoints = annotated_person(name)
    mask, masked = cloth_agnostic(photo, labels, keypoints, category)
    product = np.array(Image.open(garment).convert("RGB"))
    inputs = WarpInputs(product, photo, masked, mask, keypoints, labels, category)
    return KeypointTPSWarp().warp(inputs), inputs


PERSONS = ("00891_00", "07445_00", "08909_00", "12419_00")
TSHIRT = ANNOTATED / "cloth" / "11351_00.jpg"
LONG_SLEEVES = DATA / "pairs" / "vitonhd" / "cloth" / "00006_00.jpg"
CAMI = ANNOTATED / "cloth" / "09933_00.jpg"
CROP_TOP = DATA / "garments" / "upper" / "02015_00.jpg"
TROUSERS = DATA / "garments" / "lower" / "051827_1.jpg"


@needs_data
@pytest.mark.parametrize("name", PERSONS)
def test_warped_garment_lands_on_the_torso_inside_the_mask(name):
    out, inputs = _warp(name, TSHIRT)
    h, w = inputs.person.shape[:2]
    assert out.warped_garment.shape == (h, w, 3) and out.warped_mask.shape == (h, w)
    placed = out.warped_mask > 0
    assert not (placed & (inputs.agnostic_mask == 0)).any()
    assert not (placed & np.isin(inputs.labels, HEAD)).any()  # the head and hair stay in front
    assert (out.warped_garment[~placed] == 0).all()
    # It covers most of the old top where the mask lets it.
    old = (inputs.labels == UPPER_CLOTHES) & (inputs.agnostic_mask > 0)
    assert (placed & old).sum() / old.sum() > 0.6
    # The product photo's own mask and landmarks come back with it.
    assert out.garment_mask.shape == (1024, 768) and "left_armpit" in out.landmarks


@needs_data
@pytest.mark.parametrize("name", PERSONS)
def test_arms_stay_in_front_of_a_sleeveless_top(name):
    out, inputs = _warp(name, CAMI)
    arms = np.isin(inputs.labels, ARMS)
    assert (out.warped_mask > 0).any()
    assert not ((out.warped_mask > 0) & arms).any()


@needs_data
def test_garment_proportions_are_kept_a_crop_top_ends_higher():
    crop, _ = _warp("12419_00", CROP_TOP)
    tshirt, _ = _warp("12419_00", TSHIRT)
    crop_hem = np.nonzero(crop.warped_mask)[0].max()
    tshirt_hem = np.nonzero(tshirt.warped_mask)[0].max()
    assert crop_hem < tshirt_hem - 60


@needs_data
def test_long_sleeves_follow_the_arms_and_short_ones_stop_above_the_elbow():
    name = "07445_00"  # arms down along the body, long sleeves in the photo
    long_sleeves, inputs = _warp(name, LONG_SLEEVES)
    short, _ = _warp(name, TSHIRT)
    kp = inputs.keypoints
    for elbow, wrist in ((3, 4), (6, 7)):
        forearm = kp[elbow, :2] + 0.5 * (kp[wrist, :2] - kp[elbow, :2])
        x, y = int(forearm[0]), int(forearm[1])
        assert long_sleeves.warped_mask[y - 3 : y + 4, x - 3 : x + 4].any()
        assert not short.warped_mask[y - 3 : y + 4, x - 3 : x + 4].any()


@needs_data
def test_trousers_cover_the_legs():
    out, inputs = _warp("12419_00", TROUSERS, "lower_body")
    placed = out.warped_mask > 0
    old = (inputs.labels == PANTS) & (inputs.agnostic_mask > 0)
    assert (placed & old).sum() / old.sum() > 0.7
    assert not (placed & np.isin(inputs.labels, (*ARMS, UPPER_CLOTHES))).any()  # hands and the top in front


@needs_data
def test_a_given_garment_mask_is_used():
    photo, labels, keypoints = annotated_person("12419_00")
    product = np.array(Image.open(TSHIRT).convert("RGB"))
    given = np.zeros(product.shape[:2], np.uint8)
    given[150:900, 150:620] = 255  # a box: the warp must take this, not separate the photo itself
    out = KeypointTPSWarp().warp(
        WarpInputs(product, photo, photo, np.full(labels.shape, 255, np.uint8), keypoints, labels, "upper_body",
                   garment_mask=given)
    )  # fmt: skip
    assert (out.garment_mask == given).all()


@needs_data
def test_a_pose_without_shoulders_is_noannotated_person():
    photo, labels, keypoints = annotated_person("12419_00")
    keypoints = keypoints.copy()
    keypoints[[2, 5]] = 0
    product = np.array(Image.open(TSHIRT).convert("RGB"))
    inputs = WarpInputs(
        product, photo, photo, np.full(labels.shape, 255, np.uint8), keypoints, labels, "upper_body"
    )
    with pytest.raises(NoPersonFound, match="shoulders"):
        KeypointTPSWarp().warp(inputs)


def _along(points: list[np.ndarray], start: float, stop: float, step: float = 4.0) -> list[np.ndarray]:
    """Points every `step` pixels along a polyline, from share `start` to share `stop` of its length."""
    lengths = [float(np.linalg.norm(b - a)) for a, b in zip(points, points[1:], strict=False)]
    total, out = sum(lengths), []
    for s in np.arange(start * total, stop * total, step):
        for a, b, length in zip(points, points[1:], lengths, strict=False):
            if s <= length:
                out.append(a + (b - a) * s / max(length, 1e-6))
                break
            s -= length
    return out


@needs_data
def test_a_long_sleeve_is_one_piece_from_shoulder_past_the_elbow_to_the_wrist():
    long_sleeves, inputs = _warp("07445_00", LONG_SLEEVES)
    kp, placed, repaint = inputs.keypoints, long_sleeves.warped_mask > 0, inputs.agnostic_mask > 0
    for arm in ((2, 3, 4), (5, 6, 7)):
        points = [kp[i, :2].astype(np.float64) for i in arm]
        covered = [
            placed[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3].any()
            for x, y in _along(points, 0.1, 0.9)
            if repaint[int(y), int(x)]
        ]
        assert len(covered) > 20
        assert all(covered)  # no gap at the elbow or along the forearm


@needs_data
def test_a_sleeve_without_the_arms_keypoints_hangs_from_the_shoulder_along_the_side():
    from services.parsing.agnostic import cloth_agnostic

    photo, labels, keypoints = annotated_person("07445_00")
    mask, masked = cloth_agnostic(photo, labels, keypoints, "upper_body")
    armless = keypoints.copy()
    armless[[3, 4, 6, 7]] = 0  # elbows and wrists not seen
    product = np.array(Image.open(LONG_SLEEVES).convert("RGB"))
    out = KeypointTPSWarp().warp(WarpInputs(product, photo, masked, mask, armless, labels, "upper_body"))
    placed, repaint = out.warped_mask > 0, mask > 0
    hips_y = 0.5 * (keypoints[8, 1] + keypoints[11, 1])
    for shoulder, elbow in ((2, 3), (5, 6)):
        sx, sy = keypoints[shoulder, :2]
        # Where the real elbow is (the arm hangs), and half way down to it: the sleeve is there.
        for t in (0.5, 1.0):
            x, y = (keypoints[shoulder, :2] + t * (keypoints[elbow, :2] - keypoints[shoulder, :2])).astype(
                int
            )
            if repaint[y, x]:
                assert placed[y - 6 : y + 7, x - 6 : x + 7].any()
        # It does not stick out sideways at the shoulders' height as the flat photo has it.
        sw = abs(keypoints[5, 0] - keypoints[2, 0])
        x = int(sx + np.sign(sx - keypoints[1, 0]) * 0.9 * sw)
        band = placed[int(sy + 0.3 * (hips_y - sy)) : int(sy + 0.5 * (hips_y - sy)), max(0, x - 5) : x + 5]
        assert not band.any()


def test_a_long_sleeve_on_a_studio_photo_follows_the_whole_arm_without_gaps(examples, blazepose):
    """Avatar 1 (a full-length studio photo, arms hanging) in a long-sleeved shirt: the embedded chain's own
    pose and parse, the case whose sleeves used to land as fragments."""
    from services.parsing.agnostic import cloth_agnostic
    from services.parsing.backends.geometric import GeometricParser

    pose = blazepose
    root = examples
    photo = np.array(Image.open(root / "avatars" / "1.png").convert("RGB"))
    product = np.array(Image.open(root / "clothes" / "shirts" / "1_front.jpg").convert("RGB"))
    observation = pose.observe(photo, with_face=True)
    labels = GeometricParser(pose).parse_observation(photo, observation).labels
    kp = observation.keypoints
    mask, masked = cloth_agnostic(photo, labels, kp, "upper_body")
    out = KeypointTPSWarp().warp(WarpInputs(product, photo, masked, mask, kp, labels, "upper_body"))
    placed, repaint = out.warped_mask > 0, mask > 0
    sw = float(np.linalg.norm(kp[5, :2] - kp[2, :2]))
    for arm in ((2, 3, 4), (5, 6, 7)):
        points = [kp[i, :2].astype(np.float64) for i in arm]
        # The arm's middle and two lines a tenth of the shoulder width either side of it: the sleeve covers
        # the arm's width, not a thread along it.
        covered = [
            placed[int(y), int(x)]
            for cx, cy in _along(points, 0.1, 0.85)
            for x, y in ((cx - 0.1 * sw, cy), (cx, cy), (cx + 0.1 * sw, cy))
            if repaint[int(y), int(x)]
        ]
        print(f"arm {arm}: {np.mean(covered):.3f} of {len(covered)} points covered")
        assert len(covered) > 60
        assert np.mean(covered) > 0.97
