"""The working size: what the stages get from a large photo, checked with the numbers the user sent, and the
result put back upright at the photo's own size."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.working_size import check_workable, paste_full_size, working_copy, working_dimensions
from tests.reliability.hostile_corpus import exif_block, jpeg, photo
from vton.runtime import images
from vton.runtime.errors import InvalidInput


def test_a_photo_within_the_working_size_is_sent_as_it_is():
    assert working_dimensions(768, 1024, 2_400_000) == (768, 1024)
    assert working_copy(jpeg(photo(96, 128)), 2_400_000) is None


def test_a_large_photo_is_scaled_to_the_working_size_keeping_its_aspect():
    width, height = working_dimensions(6000, 8000, 2_400_000)
    assert width * height <= 2_400_000 and abs(width / height - 0.75) < 0.001


def test_a_photo_that_would_scale_under_the_minimum_side_is_refused_with_the_size_sent():
    with pytest.raises(InvalidInput) as refused:
        check_workable(400, 3000, max_pixels=32 * 32 * 4)
    message = str(refused.value)
    assert message.startswith("the image is 400x3000;")
    assert "it would be 23x175" in message and "at least 32 pixels" in message


def test_every_size_the_header_check_accepts_stays_workable_at_the_default_working_size():
    """The aspect limit keeps the scaled copy's shorter side far above the minimum."""
    ratio = images.MAX_ASPECT_RATIO
    short = int((images.MAX_PIXELS / ratio) ** 0.5)
    images.check_size(short, short * ratio)
    check_workable(short, short * ratio, 2_400_000)
    assert min(working_dimensions(short, short * ratio, 2_400_000)) > 400


def test_a_sideways_stored_photo_is_scaled_upright_and_the_result_comes_back_upright():
    upright = photo(300, 400, seed=3)
    sideways = jpeg(np.ascontiguousarray(np.rot90(upright, 1)), exif=exif_block(6), quality=95)
    assert images.read_header(sideways).width == 400, "stored a quarter turn, as a phone does"

    working = working_copy(sideways, max_pixels=30_000)
    assert working is not None
    small = images.decode_rgb(working)
    assert small.shape[0] > small.shape[1], "the working copy is upright (portrait)"

    tried = small.copy()
    tried[:] = (255, 0, 0)
    mask = np.zeros(small.shape[:2], np.uint8)
    mask[: small.shape[0] // 2] = 255
    result = images.decode_rgb(paste_full_size(sideways, images.encode_png(tried), images.encode_png(mask)))
    assert result.shape == upright.shape, "the result has the size and orientation the user sees"
    assert (result[10, 150] == (255, 0, 0)).all(), "the top half (the mask) is the try-on"
    assert np.abs(result[-50:].astype(int) - upright[-50:]).mean() < 4, "the rest is the user's own photo"
