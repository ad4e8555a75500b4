"""The one image decoder: headers read before decoding, EXIF orientation, every bit depth and alpha mode.

Expected pixels are computed here from the picture that was encoded (not from the decoder), and orientation is
checked against what a viewer shows: the picture as it was before the camera stored it turned.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.reliability.hostile_corpus import (
    cv2_png,
    exif_block,
    jpeg,
    jpeg_with_size,
    photo,
    pil_bytes,
    png_chunk,
    png_declaring,
    webp_bomb,
    webp_vp8x,
)
from vton.runtime import images, messages
from vton.runtime.errors import InvalidInput
from vton.v1 import common_pb2

WHITE = 255

# EXIF orientation -> how the camera stored an upright picture (the inverse of what a viewer applies).
_STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # stored a quarter turn counter-clockwise; shown a quarter turn clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _upright() -> np.ndarray:
    """A 64x48 picture whose corners differ: red top-left, green top-right, blue bottom-left, grey elsewhere
    (in 16-pixel blocks, so JPEG's blocks keep the colours apart)."""
    pic = np.full((48, 64, 3), 128, np.uint8)
    pic[:16, :16] = (230, 20, 20)
    pic[:16, -16:] = (20, 230, 20)
    pic[-16:, :16] = (20, 20, 230)
    return pic


def _stored_with_orientation(fmt: str, orientation: int) -> bytes:
    image = Image.fromarray(_upright())
    if _STORED[orientation] is not None:
        image = image.transpose(_STORED[orientation])
    options = {"JPEG": {"quality": 95, "subsampling": 0}, "PNG": {}, "WEBP": {"lossless": True}}[fmt]
    return pil_bytes(image, fmt, exif=exif_block(orientation), **options)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_exif_orientation_is_applied_so_the_picture_is_as_the_user_sees_it(fmt, orientation):
    data = _stored_with_orientation(fmt, orientation)
    assert images.read_header(data).orientation == orientation
    assert images.image_size(data) == (64, 48), "the size is the upright picture's"
    decoded = images.decode_rgb(data)
    assert decoded.shape == (48, 64, 3)
    tolerance = 12 if fmt == "JPEG" else 0
    assert np.abs(decoded.astype(int) - _upright()).max() <= tolerance
    assert decoded[2, 2].argmax() == 0 and decoded[2, -3].argmax() == 1 and decoded[-3, 2].argmax() == 2


def test_a_phone_photo_stored_sideways_reaches_the_stages_upright_at_its_declared_size(shared_data):
    """A real photo, stored as a phone held upright stores it (a quarter turn, orientation 6)."""
    upright = images.read_rgb(str(shared_data / "pairs" / "vitonhd" / "image" / "00057_00.jpg"))
    sideways = jpeg(np.ascontiguousarray(np.rot90(upright, 1)), exif=exif_block(6))
    assert images.read_header(sideways).width == upright.shape[0], "stored a quarter turn"
    msg = common_pb2.Image(data=sideways, width=upright.shape[1], height=upright.shape[0], format="jpeg")
    seen = messages.rgb_from(msg, "person")
    assert seen.shape == upright.shape
    assert np.abs(seen.astype(int) - upright).mean() < 3


def test_an_orientation_out_of_range_or_a_broken_exif_block_leaves_the_picture_as_stored():
    pic = photo()
    for exif in (exif_block(0), exif_block(9), b"Exif\0\0II*\0\xff\xff\xff\x7f", b"Exif\0\0MM\0*"):
        data = jpeg(pic, exif=exif)
        assert images.read_header(data).orientation == 1
        assert images.decode_rgb(data).shape == pic.shape


# --- bit depths and alpha ------------------------------------------------------------------------------------


def _raw_png(arr: np.ndarray, colour_type: int, bit_depth: int) -> bytes:
    """A PNG written field by field, for the layouts no library here writes (16-bit grey + alpha)."""
    height, width = arr.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\0" + row.astype(dtype).tobytes() for row in arr)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        images.PNG_MAGIC
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The expected composite, in floating point: colour * a + white * (1 - a)."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.round(rgb * a + WHITE * (1 - a)).astype(np.uint8)


def _alpha_ramp(height: int = 32, width: int = 64) -> np.ndarray:
    """Alpha from 0 (left) to 255 (right), fully transparent and fully opaque columns included."""
    return np.round(np.linspace(0, 255, width))[None].repeat(height, 0).astype(np.uint8)


def test_8_bit_grey_decodes_to_equal_rgb_channels():
    grey = photo(64, 32)[:, :, 1]
    out = images.decode_rgb(cv2_png(grey))
    assert out.shape == (32, 64, 3) and (out == grey[..., None]).all()


def test_16_bit_grey_is_scaled_to_8_bits_not_wrapped():
    grey16 = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    out = images.decode_rgb(cv2_png(grey16))
    expected = np.round(grey16 / 257.0).astype(np.uint8)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert out[-1, -1, 0] == 255 and out[0, 0, 0] == 0


def test_8_bit_grey_with_alpha_is_composited_on_white():
    grey, alpha = photo(64, 32)[:, :, 0], _alpha_ramp()
    out = images.decode_rgb(_raw_png(np.dstack([grey, alpha]), colour_type=4, bit_depth=8))
    expected = _on_white(np.dstack([grey] * 3).astype(np.float64), alpha)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert (out[:, 0] == WHITE).all(), "fully transparent is white"


def test_16_bit_grey_with_alpha_is_composited_on_white():
    grey = np.linspace(0, 65535, 64)[None].repeat(32, 0).astype(np.uint16)[:, ::-1]
    alpha = _alpha_ramp().astype(np.uint16) * 257
    out = images.decode_rgb(_raw_png(np.dstack([grey, alpha]), colour_type=4, bit_depth=16))
    expected = _on_white(np.dstack([grey / 257.0] * 3), (alpha // 257).astype(np.uint8))
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_8_bit_rgb_decodes_exactly():
    pic = photo()
    assert (images.decode_rgb(cv2_png(pic[:, :, ::-1])) == pic).all()


def test_16_bit_rgb_is_scaled_to_8_bits():
    pic = photo()
    out = images.decode_rgb(cv2_png(pic[:, :, ::-1].astype(np.uint16) * 257))
    assert (out == pic).all()


def test_8_bit_rgba_is_composited_on_white():
    pic, alpha = photo(64, 32), _alpha_ramp()
    out = images.decode_rgb(pil_bytes(Image.fromarray(np.dstack([pic, alpha])), "PNG"))
    assert np.abs(out.astype(int) - _on_white(pic, alpha)).max() <= 1
    assert (out[:, 0] == WHITE).all() and (out[:, -1] == pic[:, -1]).all()


def test_16_bit_rgba_is_composited_on_white_as_the_same_image_in_8_bits():
    """The issue's case: 16-bit alpha was divided by 255 and the values wrapped."""
    pic, alpha = photo(64, 32), _alpha_ramp()
    rgba16 = np.dstack([pic[:, :, ::-1], alpha]).astype(np.uint16) * 257
    out16 = images.decode_rgb(cv2_png(rgba16))
    out8 = images.decode_rgb(pil_bytes(Image.fromarray(np.dstack([pic, alpha])), "PNG"))
    assert np.abs(out16.astype(int) - _on_white(pic, alpha)).max() <= 1
    assert np.abs(out16.astype(int) - out8).max() <= 1


def test_a_palette_with_a_transparent_entry_shows_white_there():
    indices = np.zeros((32, 64), np.uint8)
    indices[:, 32:] = 1
    indices[16:, :16] = 2
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0] + [200, 40, 10] + [10, 90, 200] + [0, 0, 0] * 253)
    out = images.decode_rgb(pil_bytes(image, "PNG", transparency=0))
    assert (out[:16, :16] == WHITE).all(), "index 0 is transparent"
    assert (out[:, 32:] == (200, 40, 10)).all() and (out[16:, :16] == (10, 90, 200)).all()


def test_a_1_bit_png_decodes_to_black_and_white():
    bits = photo(64, 32)[:, :, 0] > 128
    out = images.decode_rgb(pil_bytes(Image.fromarray(bits), "PNG"))
    assert (out[..., 0] == np.where(bits, 255, 0)).all()


def test_a_lossless_webp_with_alpha_is_composited_on_white():
    pic, alpha = photo(64, 32), _alpha_ramp()
    out = images.decode_rgb(
        pil_bytes(Image.fromarray(np.dstack([pic, alpha])), "WEBP", lossless=True, exact=True)
    )
    assert np.abs(out.astype(int) - _on_white(pic, alpha)).max() <= 1


def test_a_lossy_webp_with_alpha_is_composited_on_white():
    pic = np.full((32, 64, 3), (30, 60, 200), np.uint8)
    alpha = np.where(np.arange(64) < 32, 255, 0).astype(np.uint8)[None].repeat(32, 0)
    out = images.decode_rgb(pil_bytes(Image.fromarray(np.dstack([pic, alpha])), "WEBP", quality=90))
    assert np.abs(out[:, :28].astype(int) - (30, 60, 200)).max() <= 8
    assert (out[:, 36:] == WHITE).all()


def test_a_cmyk_jpeg_decodes_to_its_rgb_colours():
    colours = [(220, 30, 30), (30, 160, 60), (40, 60, 200), (240, 240, 240)]
    pic = np.concatenate([np.full((32, 16, 3), c, np.uint8) for c in colours], axis=1)
    out = images.decode_rgb(pil_bytes(Image.fromarray(pic).convert("CMYK"), "JPEG", quality=95))
    reference = np.asarray(Image.fromarray(pic).convert("CMYK").convert("RGB"))
    for i in range(len(colours)):
        block = np.s_[8:24, 16 * i + 4 : 16 * i + 12]
        assert np.abs(out[block].astype(int) - reference[block]).max() <= 12, colours[i]


def test_a_grey_jpeg_decodes_to_equal_rgb_channels():
    out = images.decode_rgb(jpeg(photo()[:, :, 0]))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_masks_and_label_maps_keep_8_bit_values_and_scale_16_bit_ones():
    labels = (np.arange(32 * 64).reshape(32, 64) % 20).astype(np.uint8)
    assert (images.decode_gray(cv2_png(labels)) == labels).all()
    mask16 = np.where(np.arange(64) < 32, 65535, 0).astype(np.uint16)[None].repeat(32, 0)
    assert set(np.unique(images.decode_gray(cv2_png(mask16)))) == {0, 255}


def test_an_animated_image_is_its_first_frame():
    pic = photo()
    frames = [Image.fromarray(pic), Image.fromarray(255 - pic)]
    for fmt in ("WEBP", "PNG"):
        data = pil_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
        assert np.abs(images.decode_rgb(data).astype(int) - pic).max() <= 1, fmt


# --- sizes from the header, before any decoding ----------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if anything reaches the pixel decoder."""

    def tripwire(*_args, **_kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(images.cv2, "imdecode", tripwire)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png_declaring(12345, 678), (12345, 678)),
        (jpeg_with_size(jpeg(photo()), 4321, 765), (4321, 765)),
        (webp_bomb(16383, 200), (16383, 200)),  # VP8L
        (webp_vp8x(9000, 7000), (9000, 7000)),  # VP8X
        (pil_bytes(Image.fromarray(photo(100, 70)), "WEBP", quality=50), (100, 70)),  # VP8
    ],
    ids=["png-ihdr", "jpeg-sof", "webp-vp8l", "webp-vp8x", "webp-vp8"],
)
def test_the_declared_size_is_read_from_the_header_alone(no_decoding, data, size):
    assert images.image_size(data) == size


def test_a_frame_header_inside_an_exif_thumbnail_is_not_taken_for_the_photos():
    data = jpeg(photo(96, 128))
    thumbnail = b"Exif\0\0" + b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x20\x03" + b"\0" * 40
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(thumbnail)) + thumbnail
    assert images.image_size(data[:2] + app1 + data[2:]) == (96, 128)


@pytest.mark.parametrize(
    ("data", "status", "needle"),
    [
        (webp_bomb(16383, 16383, pad_to=10_000), 413, "16383x16383 (268.4 megapixels)"),
        (png_declaring(100_000, 100_000), 413, "100000x100000"),
        (jpeg_with_size(jpeg(photo()), 65535, 65535), 413, "65535x65535"),
        (webp_vp8x(1 << 24, 1 << 24), 413, "16777216x16777216"),
        (png_declaring(40, 1_000_000), 400, "40x1000000; its longer side may be at most 10 times"),
        (png_declaring(31, 100), 400, "31x100; each side must be at least 32 pixels"),
    ],
    ids=["webp-16383", "png-100000", "jpeg-65535", "webp-canvas", "40x1000000", "31-wide"],
)
def test_sizes_no_stage_takes_are_refused_from_the_header_naming_the_size_sent(
    no_decoding, data, status, needle
):
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as refused:
        images.decode_rgb(data)
    assert time.perf_counter() - started < 0.05
    assert needle in str(refused.value)
    assert isinstance(refused.value, images.ImageTooLarge) == (status == 413)


def test_the_webp_bomb_is_a_real_one_that_decodes_to_its_declared_size():
    """The refusal above is of a file that would really decode: the same construction at a small size does."""
    out = images.decode_rgb(webp_bomb(300, 200))
    assert out.shape == (200, 300, 3) and (out == (200, 30, 30)).all()


def test_hostile_header_walks_are_bounded():
    """Millions of empty segments or fill bytes cost milliseconds, not a second of the event loop."""
    for data in (b"\xff\xd8" + b"\xff" * 24_000_000, b"\xff\xd8" + b"\xff\xfe\x00\x02" * 6_000_000):
        started = time.perf_counter()
        with pytest.raises(InvalidInput, match="segments before its frame header"):
            images.read_header(data)
        assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 40, "not an image: expected PNG, JPEG or WebP"),
        (cv2_png(photo())[:200], "truncated or damaged"),
        (jpeg(photo())[:500], "truncated or damaged"),
        (b"RIFF\xff\xff\x00\x00WEBPVP8L" + b"\0" * 30, "truncated"),
        (images.PNG_MAGIC + b"\0" * 30, "IHDR"),
    ],
    ids=["empty", "gif", "png-cut", "jpeg-cut", "webp-cut", "png-no-ihdr"],
)
def test_damaged_files_are_refused_naming_the_problem(data, needle):
    with pytest.raises(InvalidInput, match=needle):
        images.decode_rgb(data)


def test_a_stage_names_the_field_whose_image_it_refuses():
    msg = common_pb2.Image(data=webp_bomb(16383, 16383))
    with pytest.raises(InvalidInput, match=r"^warped_garment: the image is 16383x16383"):
        messages.rgb_from(msg, "warped_garment")


def test_decoding_a_large_rgba_image_keeps_its_temporaries_bounded():
    """Compositing works in bands of rows: beyond the decoded and the output arrays, a few MB."""
    import tracemalloc

    rgba = np.zeros((3000, 4000, 4), np.uint8)
    rgba[..., 3] = 128
    ok, buf = cv2.imencode(".png", rgba, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    data = buf.tobytes()
    del rgba
    tracemalloc.start()
    out = images.decode_rgb(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (3000, 4000, 3) and (out == 127).all()
    decoded, output = 3000 * 4000 * 4, 3000 * 4000 * 3
    assert peak < decoded + 2 * output + 16e6, f"peak {peak / 1e6:.0f} MB"


def test_pillow_composites_rgba_on_white_as_the_decoder_does():
    """An independent decoder as a second opinion on the composite."""
    pic, alpha = photo(64, 32), _alpha_ramp()
    data = pil_bytes(Image.fromarray(np.dstack([pic, alpha])), "PNG")
    theirs = Image.alpha_composite(Image.new("RGBA", (64, 32), "white"), Image.open(io.BytesIO(data)))
    assert np.abs(images.decode_rgb(data).astype(int) - np.asarray(theirs.convert("RGB"))).max() <= 1
