"""The embedded try-on backend `composite`, on real persons and product photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from services.diffusion.backends.composite import CompositeBackend
from services.diffusion.types import TryOnInputs
from services.warp.garment import garment_mask
from tests.unit.embedded_chain import ANNOTATED, DATA, annotated_person, composite_try_on, needs_data
from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import Lip

PERSONS = ("00891_00", "07445_00", "08909_00", "12419_00")
GARMENTS = {
    "tshirt": ANNOTATED / "cloth" / "11351_00.jpg",
    "orange knit": ANNOTATED / "cloth" / "01260_00.jpg",
    "cami": ANNOTATED / "cloth" / "09933_00.jpg",
    "lee": DATA / "pairs" / "vitonhd" / "cloth" / "00057_00.jpg",
}


def _try_on(name: str, product: np.ndarray, seed: int = 0) -> tuple[np.ndarray, TryOnInputs]:
    """The embedded chain on an annotated person: reference pose and parse, LaDI-VTON's agnostic mask."""
    return composite_try_on(*annotated_person(name), product, seed=seed)


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _product(key: str) -> np.ndarray:
    return np.array(Image.open(GARMENTS[key]).convert("RGB"))


@needs_data
@pytest.mark.parametrize(("name", "garment"), [(p, g) for p, g in zip(PERSONS, GARMENTS, strict=True)])
def test_result_keeps_the_person_outside_the_mask_and_the_garments_colour_inside(name, garment):
    product = _product(garment)
    result, inputs = _try_on(name, product)
    assert result.shape == inputs.person.shape and result.dtype == np.uint8
    outside = inputs.agnostic_mask == 0
    assert (result[outside] == inputs.person[outside]).all()
    # Inside, the garment: its mean colour is the product photo's (the shading only redistributes light).
    placed = (inputs.warped_mask > 0) & ~outside
    product_mean = _lab(product)[garment_mask(product) > 0].mean(axis=0)
    assert np.linalg.norm(_lab(result)[placed].mean(axis=0) - product_mean) < 6.0
    # And the masked region really was repainted: no grey of the masked person left in it.
    assert (np.abs(result[~outside].astype(int) - 128).max(axis=1) > 3).mean() > 0.95


@needs_data
def test_no_pixel_of_the_product_photos_background_reaches_the_result():
    # The T-shirt's product photo with its background (outside the dataset's cloth mask) painted magenta: any
    # background pixel that slipped through the mask, the warp's sampling or the seams would show as magenta.
    product = _product("tshirt")
    cloth = np.array(Image.open(ANNOTATED / "cloth-mask" / "11351_00.jpg").convert("L")) > 127
    product[~cloth] = (255, 0, 255)

    def magenta(image: np.ndarray) -> np.ndarray:
        r, g, b = (image[..., i].astype(int) for i in range(3))
        return (r - g > 80) & (b - g > 80)

    for name in PERSONS:
        result, inputs = _try_on(name, product)
        assert not magenta(inputs.person).any()
        assert not magenta(result).any(), name


@needs_data
def test_skin_uncovered_by_a_sleeveless_top_takes_the_persons_skin_tone():
    # 07445 wears long maroon sleeves; the cami leaves the arms bare.
    result, inputs = _try_on("07445_00", _product("cami"))
    person, kp = inputs.person, annotated_person("07445_00")[2]
    face = (inputs.labels == Lip.FACE) & (inputs.agnostic_mask == 0)
    skin = np.median(_lab(person)[face], axis=0)
    for shoulder, elbow in ((2, 3), (5, 6)):
        mid = kp[shoulder, :2] + 0.6 * (kp[elbow, :2] - kp[shoulder, :2])
        x, y = int(mid[0]), int(mid[1])
        patch_after = _lab(result)[y - 4 : y + 5, x - 4 : x + 5].reshape(-1, 3).mean(axis=0)
        patch_before = _lab(person)[y - 4 : y + 5, x - 4 : x + 5].reshape(-1, 3).mean(axis=0)
        assert np.linalg.norm(patch_after - skin) < 15  # the arm now looks like her face's skin
        assert np.linalg.norm(patch_before - skin) > 30  # where the sleeve was maroon


@needs_data
def test_the_persons_folds_and_light_carry_onto_a_plain_garment():
    # A flat mid-grey shirt: whatever light and shade it shows in the result comes from the person's photo.
    tshirt = _product("tshirt")
    plain = np.full_like(tshirt, 255)
    plain[garment_mask(tshirt) > 0] = 128
    result, inputs = _try_on("00891_00", plain)
    region = (inputs.warped_mask > 0) & (inputs.agnostic_mask > 0) & (inputs.labels == 5)
    region = cv2.erode(region.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0

    def detail(image: np.ndarray) -> np.ndarray:
        lum = _lab(image)[..., 0]
        return lum - cv2.GaussianBlur(lum, (0, 0), 25)

    lum = _lab(result)[..., 0][region]
    assert lum.std() > 1.0  # not flat any more (the old method's 2.5 included the knit and prints)
    # The light is read on a 512-pixel-high copy without the old garment's own edges: its fine wrinkles and
    # the logo stay behind (0.28 measured; printing everything through was 0.52).
    assert np.corrcoef(detail(result)[region], detail(inputs.person)[region])[0, 1] > 0.2
    assert abs(lum.mean() - _lab(plain)[..., 0][garment_mask(tshirt) > 0].mean()) < 4


@needs_data
def test_the_same_request_gives_the_same_picture():
    product = _product("orange knit")
    first, _ = _try_on("08909_00", product, seed=3)
    second, _ = _try_on("08909_00", product, seed=3)
    assert (first == second).all()


def test_an_empty_mask_returns_the_person_unchanged():
    rng = np.random.default_rng(0)
    person = rng.integers(0, 256, (64, 48, 3)).astype(np.uint8)
    zeros = np.zeros((64, 48), np.uint8)
    inputs = TryOnInputs(person, person, zeros, np.zeros_like(person), zeros, person, zeros, "upper_body")
    assert (CompositeBackend().try_on(inputs) == person).all()


def test_mismatched_sizes_are_invalid_input():
    person = np.zeros((64, 48, 3), np.uint8)
    inputs = TryOnInputs(
        person, person, np.zeros((32, 48), np.uint8), person, np.zeros((64, 48), np.uint8), person,
        np.zeros((64, 48), np.uint8), "upper_body",
    )  # fmt: skip
    with pytest.raises(InvalidInput, match="agnostic_mask"):
        CompositeBackend().try_on(inputs)


def test_the_backend_is_registered_as_composite():
    from services.diffusion.backends import BACKENDS
    from vton.runtime.backend import select_backend

    info, backend = select_backend(BACKENDS, "composite")
    assert info.name == "composite" and info.kind == "embedded"
    assert isinstance(backend, CompositeBackend)


def _two_layer_garment() -> tuple[np.ndarray, np.ndarray]:
    """A black jacket's half beside a white T-shirt's, both under the same horizontal folds."""
    h, w = 240, 240
    ys = np.arange(h, dtype=np.float32)[:, None]
    folds = 1.0 + 0.08 * np.sin(ys / 7.0) * np.ones((1, w), np.float32)
    base = np.where(np.arange(w)[None, :] < w // 2, 30.0, 225.0).astype(np.float32) * np.ones((h, 1))
    person = np.clip(base * folds, 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    return person, folds


def test_shading_carries_the_folds_but_not_an_old_print():
    """Grey letters printed on a folded beige top: the new garment takes the folds, not the letters."""
    from services.diffusion.shading import shading_gain

    h, w = 512, 384
    ys = np.arange(h, dtype=np.float32)[:, None]
    folds = (1.0 + 0.12 * np.sin(ys / 18.0)) * np.ones((1, w), np.float32)
    beige = np.array([235, 222, 200], np.float32)
    person = beige[None, None, :] * folds[..., None]
    letters = np.zeros((h, w), np.uint8)
    for row, word in enumerate(("MOTHER", "LIKES", "YOU")):
        cv2.putText(letters, word, (40, 160 + 90 * row), cv2.FONT_HERSHEY_DUPLEX, 2.2, 1, 9)
    person[letters > 0] = np.array([120, 120, 118], np.float32) * folds[letters > 0][:, None]
    person = np.clip(person, 0, 255).astype(np.uint8)
    source = np.ones((h, w), bool)
    gain = shading_gain(person, source, source)
    inner = np.zeros((h, w), bool)
    inner[30:-30, 30:-30] = True
    assert np.corrcoef(gain[inner], folds[inner])[0, 1] > 0.8
    # On the letters the gain is what the folds alone give there: they do not print as dark shapes.
    on_letters = (letters > 0) & inner
    fit = np.polyfit(folds[inner], gain[inner], 1)
    residual = gain - np.polyval(fit, folds)
    assert abs(float(residual[on_letters].mean())) < 0.02
    assert float(gain[on_letters].mean()) > 0.9 * float(gain[inner & ~on_letters].mean())


def test_shading_carries_the_folds_but_not_the_old_layers_brightness():
    from services.diffusion.shading import shading_gain

    person, folds = _two_layer_garment()
    source = np.ones(person.shape[:2], bool)
    gain = shading_gain(person, source, source)
    jacket, tshirt = gain[20:-20, 20:100], gain[20:-20, 140:-20]
    # The white T-shirt's half is not lit up against the jacket's: same mean light on both, bounded highlights.
    assert abs(float(tshirt.mean()) - float(jacket.mean())) < 0.03
    assert gain.max() <= 1.15 + 1e-6
    # Next to the jacket's edge the T-shirt is not lighter than further in.
    assert abs(float(gain[20:-20, 122:130].mean()) - float(tshirt.mean())) < 0.03
    # The folds come through on both layers.
    for cols in (slice(20, 100), slice(140, 220)):
        assert np.corrcoef(gain[20:-20, cols].ravel(), folds[20:-20, cols].ravel())[0, 1] > 0.8
