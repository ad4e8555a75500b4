"""The geometric DensePose backend: IUV format, body-part layout on real photos, and DensePose's picture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.densepose.backends.geometric import GeometricDensePose, fit_iuv
from services.densepose.types import DensePoseEstimate
from services.densepose.visualize import render_iuv
from vton.runtime.errors import NoPersonFound
from vton.runtime.images import read_rgb

SHARED = (Path(__file__).resolve().parents[2] / "../shared/data").resolve()
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not on this machine")

# DensePose part indices, grouped
TORSO = (1, 2)
UPPER_ARM_R, UPPER_ARM_L = (16, 18), (15, 17)
LOWER_ARM_R, LOWER_ARM_L = (20, 22), (19, 21)
UPPER_LEG_R, UPPER_LEG_L = (7, 9), (8, 10)
HEAD_RIGHT, HEAD_LEFT = 23, 24


@pytest.fixture(scope="module")
def densepose(blazepose) -> GeometricDensePose:
    return GeometricDensePose(blazepose)


def photos(examples: Path) -> list[Path]:
    paths = sorted((examples / "avatars").glob("*.png"))[:2]
    if SHARED.is_dir():
        paths += [SHARED / "pairs/vitonhd/image/00006_00.jpg", SHARED / "people/049447_0.jpg"]
    return paths


@pytest.fixture(scope="module")
def fitted(densepose, examples):
    """(name, image, observation, iuv) for a few frontal photos."""
    out = []
    for path in photos(examples):
        image = read_rgb(path)
        observation = densepose.pose.observe(image)
        out.append((path.name, image, observation, fit_iuv(observation.landmarks, observation.mask)))
    return out


def part_mask(iuv: np.ndarray, labels) -> np.ndarray:
    return np.isin(np.rint(iuv[0]).astype(int), labels)


def touches(iuv: np.ndarray, a, b, grow: int = 4) -> bool:
    """Whether part(s) a, grown by `grow` px, overlap part(s) b."""
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    return bool((cv2.dilate(part_mask(iuv, a).astype(np.uint8), kernel) & part_mask(iuv, b)).any())


def test_estimate_returns_densepose_format(densepose, examples):
    image = read_rgb(examples / "avatars" / "1.png")
    result = densepose.estimate(image)
    assert isinstance(result, DensePoseEstimate)
    assert result.iuv.shape == (3, *image.shape[:2]) and result.iuv.dtype == np.float32
    assert result.people_detected == 1


def test_iuv_values_are_in_range_and_background_is_off_the_person(fitted):
    for name, _, observation, iuv in fitted:
        parts = iuv[0]
        assert (parts == np.rint(parts)).all() and parts.min() >= 0 and parts.max() <= 24, name
        assert iuv[1:].min() >= 0.0 and iuv[1:].max() <= 1.0, name
        off_person = observation.mask <= 0.5
        assert (iuv[:, off_person] == 0).all(), name
        # The person is covered: most of the mask gets a part.
        assert (parts[~off_person] > 0).mean() > 0.9, name


def test_parts_touch_where_the_body_joins(fitted):
    for name, _, _, iuv in fitted:
        for upper, lower in ((UPPER_ARM_R, LOWER_ARM_R), (UPPER_ARM_L, LOWER_ARM_L)):
            assert touches(iuv, upper, lower), f"{name}: upper arm {upper} does not meet lower arm {lower}"
        for limb in (UPPER_ARM_R, UPPER_ARM_L, UPPER_LEG_R, UPPER_LEG_L):
            if part_mask(iuv, limb).sum() > 200:
                assert touches(iuv, TORSO, limb), f"{name}: torso does not meet {limb}"
        assert touches(iuv, TORSO, (HEAD_RIGHT, HEAD_LEFT)), name
        # Not everything touches: the head is far from the legs.
        assert not touches(iuv, (HEAD_RIGHT, HEAD_LEFT), UPPER_LEG_R + UPPER_LEG_L), name


def test_frontal_people_get_front_charts_on_the_right_sides(fitted):
    for name, _, _, iuv in fitted:
        parts = np.rint(iuv[0]).astype(int)
        assert (parts == 2).sum() > 10 * max((parts == 1).sum(), 1), f"{name}: torso is not the front chart"
        assert (parts == 9).sum() + (parts == 10).sum() > (parts == 7).sum() + (parts == 8).sum(), name
        # The person's right (hand 3, head 23, right upper arm) is on the image's left.
        xs = {
            label: np.nonzero(parts == label)[1].mean()
            for label in (3, 4, 23, 24, 16, 15)
            if (parts == label).any()
        }
        assert xs[23] < xs[24], name
        assert xs[16] < xs[15], name
        if 3 in xs and 4 in xs:
            assert xs[3] < xs[4], name


def test_u_runs_from_the_proximal_joint(fitted):
    for name, _, observation, iuv in fitted:
        lm = observation.landmarks
        parts = np.rint(iuv[0]).astype(int)
        for labels, joint_a, joint_b in ((UPPER_ARM_R, 12, 14), (LOWER_ARM_L, 13, 15), (UPPER_LEG_R, 24, 26)):
            ys, xs = np.nonzero(np.isin(parts, labels))
            if len(xs) < 200:
                continue
            u = iuv[1, ys, xs]
            near_a = np.hypot(xs - lm[joint_a, 0], ys - lm[joint_a, 1])
            near_b = np.hypot(xs - lm[joint_b, 0], ys - lm[joint_b, 1])
            assert u[near_a < near_b].mean() < u[near_a > near_b].mean(), (
                f"{name}: U of {labels} runs backwards"
            )


def test_back_view_uses_back_charts():
    """The same body with left and right landmarks mirrored is a person seen from behind."""
    height, width = 400, 300
    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 1.0
    points = {
        0: (150, 60), 2: (160, 52), 5: (140, 52), 7: (170, 58), 8: (130, 58), 9: (155, 75), 10: (145, 75),
        11: (185, 110), 12: (115, 110), 13: (195, 170), 14: (105, 170), 15: (200, 225), 16: (100, 225),
        17: (203, 240), 18: (97, 240), 19: (200, 245), 20: (100, 245), 21: (196, 238), 22: (104, 238),
        23: (170, 220), 24: (130, 220), 25: (172, 300), 26: (128, 300), 27: (174, 370), 28: (126, 370),
        29: (174, 380), 30: (126, 380), 31: (178, 392), 32: (122, 392),
    }  # fmt: skip
    for i, (x, y) in points.items():
        lm[i, :2] = (x, y)
    mask = np.zeros((height, width), np.float32)
    cv2.fillPoly(mask, [np.array([[95, 40], [205, 40], [215, 260], [190, 399], [110, 399], [85, 260]])], 1.0)

    front = np.rint(fit_iuv(lm, mask)[0]).astype(int)
    mirrored = lm.copy()
    mirrored[:, 0] = width - lm[:, 0]  # the right side now on the image's right: seen from behind
    back = np.rint(fit_iuv(mirrored, mask[:, ::-1].copy())[0]).astype(int)
    assert (front == 2).sum() > 0 and (front == 1).sum() == 0
    assert (back == 1).sum() > 0 and (back == 2).sum() == 0
    assert np.isin(back, (7, 8)).sum() > 0 and np.isin(back, (9, 10)).sum() == 0
    # Seen from behind, the person's right hand (3) is on the image's right.
    assert np.nonzero(back == 3)[1].mean() > width / 2


def test_no_person_raises(densepose):
    with pytest.raises(NoPersonFound, match="no person found"):
        densepose.estimate(np.full((512, 384, 3), 200, np.uint8))


def test_render_draws_densepose_colours(fitted):
    _, image, _, iuv = fitted[0]
    parts = np.rint(iuv[0]).astype(int)
    black = render_iuv(None, iuv)
    assert black.shape == image.shape and black.dtype == np.uint8
    assert (black[parts == 0] == 0).all()
    # DensePose colours part i with PARULA at i * 255 / 24; the torso front is a blue.
    parula = cv2.cvtColor(
        cv2.applyColorMap(np.array([[round(2 * 255 / 24)]], np.uint8), cv2.COLORMAP_PARULA), cv2.COLOR_BGR2RGB
    )
    torso_pixels = black[parts == 2]
    assert (torso_pixels == parula[0, 0]).all()
    assert parula[0, 0, 2] > parula[0, 0, 0]
    over = render_iuv(image, iuv)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    # Off the person the photo is shown grey and unchanged.
    np.testing.assert_array_equal(over[parts == 0][:, 0], grey[parts == 0])
    assert not (over[parts == 2] == grey[parts == 2][:, None]).all()
    with pytest.raises(ValueError):
        render_iuv(image, iuv, channel="w")
