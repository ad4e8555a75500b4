"""The platform's one image decoder: the header is checked before any pixel is decoded, then the pixels are
decoded to what the user sees.

Every entry point (the HTTP API and each stage) goes through here. `read_header` reads the declared size from
the header alone (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X) with a bounded walk over the file's structures, so
a 10 kB file that declares 16383x16383 is refused in microseconds instead of costing gigabytes. `check_size`
then refuses what no stage could work on: too many pixels, a side under 32 pixels, a sliver of a picture.
Only then `decode_rgb` decodes, and returns the picture as a viewer shows it: the EXIF orientation applied
(JPEG APP1, PNG eXIf, WebP EXIF), every bit depth brought to 8 bits, and transparency composited on white
(for garments and persons alike: a cut-out product photo is a garment on a white page). Colour profiles (ICC)
are not applied: the pixels are taken as sRGB, as most browsers do without a profile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from vton.runtime.errors import InvalidInput

# A 1024x768 photo is 0.8 MP; 40 MP admits any camera's photo and refuses decompression bombs.
MAX_PIXELS = 40_000_000
MIN_SIDE = 32
# A person or a garment photo is at most a few times taller than wide; past 1:10 it is a sliver in which the
# pose and parsing networks, which see a square, find nothing.
MAX_ASPECT_RATIO = 10
# Structures (PNG chunks, JPEG segments, RIFF chunks) walked while reading a header: real files have tens, and
# the bound keeps the walk over a hostile file of millions of empty chunks to about a millisecond.
MAX_HEADER_STRUCTURES = 1024
# Rows composited at a time: the arithmetic's temporaries stay a few MB whatever the image's size.
_BAND_ROWS = 512

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0-15 less DHT C4, JPG C8 and DAC CC): each carries the frame's size.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# JPEG markers that stand alone, without a length: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})
_EXIF_ORIENTATION_TAG = 0x0112
_TIFF_SHORT = 3


class ImageTooLarge(InvalidInput):
    """The header declares more pixels than the limit: HTTP 413 at the API, INVALID_ARGUMENT at a stage."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header declares: the format, the stored size and the EXIF orientation (1 = stored upright)."""

    format: str  # "png", "jpeg" or "webp"
    width: int
    height: int
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as the user sees the picture: orientations 5-8 turn it a quarter."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


def read_header(data: bytes) -> ImageHeader:
    """The format, declared size and orientation, from the header alone. Raises InvalidInput naming the problem."""
    if not data:
        raise InvalidInput("the image is empty (0 bytes)")
    if data.startswith(PNG_MAGIC):
        return _png_header(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_header(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    raise InvalidInput("the file is not an image: expected PNG, JPEG or WebP")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) as the user sees the picture, read from the header alone."""
    return read_header(data).size


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a size no stage can work on, naming it: ImageTooLarge past `max_pixels`, else InvalidInput."""
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels"
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidInput(f"the image is {width}x{height}; each side must be at least {MIN_SIDE} pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InvalidInput(
            f"the image is {width}x{height}; its longer side may be at most {MAX_ASPECT_RATIO} times its "
            "shorter side"
        )


def checked_header(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """The header of an image whose declared size passes `check_size`."""
    header = read_header(data)
    check_size(*header.size, max_pixels)
    return header


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded bytes -> uint8 RGB [H, W, 3] as the user sees it: upright, 8 bits, transparency on white."""
    arr = _decode_upright(data, max_pixels)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 4:
        return cv2.cvtColor(_on_white(arr[:, :, :3], arr[:, :, 3:]), cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def decode_gray(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded single-channel image (a mask or label map) -> uint8 [H, W], upright; 8-bit values unchanged."""
    arr = _decode_upright(data, max_pixels)
    if arr.ndim == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_BGR2GRAY)
    return arr


def verify(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """The header of an image that decodes whole (what the stages will decode), or InvalidInput."""
    header = checked_header(data, max_pixels)
    _decode_stored(data, header)
    return header


def encode_png(arr: np.ndarray) -> bytes:
    """uint8 RGB [H, W, 3] or single-channel [H, W] -> PNG bytes (lossless)."""
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def require_rgb(image: object, name: str = "the image") -> np.ndarray:
    """IMAGE when it is a uint8 RGB array [H, W, 3], else InvalidInput naming NAME and what it is: a backend's
    check of what it is handed (the servicers decode requests into such arrays)."""
    if not isinstance(image, np.ndarray):
        raise InvalidInput(f"{name} must be a uint8 RGB image [H, W, 3], not a {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(
            f"{name} must be a uint8 RGB image [H, W, 3], not {image.dtype} {list(image.shape)}"
        )
    return image


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    with open(path, "rb") as f:
        return decode_rgb(f.read())


def write_png(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(encode_png(arr))


# --- decoding ---------------------------------------------------------------------------------------------

# EXIF orientation -> the view that turns the stored pixels into what a viewer shows (EXIF 2.32, tag 0x0112).
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored upside down
    5: lambda a: a.swapaxes(0, 1),  # mirrored, a quarter turn counter-clockwise
    6: lambda a: np.rot90(a, -1),  # a quarter turn clockwise (a phone held upright)
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # mirrored, a quarter turn clockwise
    8: lambda a: np.rot90(a, 1),  # a quarter turn counter-clockwise
}


def _decode_upright(data: bytes, max_pixels: int) -> np.ndarray:
    """Pixels as the user sees them, at 8 bits: [H, W] grey, [H, W, 3] BGR or [H, W, 4] BGRA."""
    header = checked_header(data, max_pixels)
    arr = _decode_stored(data, header)
    if arr.dtype != np.uint8:
        # 16-bit PNG: scale (65535 -> 255, rounded) rather than cast, which would wrap the values
        arr = cv2.convertScaleAbs(arr, alpha=255.0 / 65535.0)
    return np.ascontiguousarray(_UPRIGHT[header.orientation](arr))


def _decode_stored(data: bytes, header: ImageHeader) -> np.ndarray:
    """The stored pixels (bit depth and channels as in the file); the header's size is checked already."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InvalidInput(
            f"the {header.format.upper()} image could not be decoded: the file is truncated or damaged"
        )
    if arr.shape[:2] != (header.height, header.width):
        raise InvalidInput(
            f"the image decodes to {arr.shape[1]}x{arr.shape[0]} but its header declares "
            f"{header.width}x{header.height}: the file is damaged"
        )
    if arr.dtype not in (np.uint8, np.uint16) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidInput(f"unsupported pixel layout: {arr.dtype} with shape {arr.shape}")
    return arr


def _on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour [H, W, 3] over a white page through uint8 alpha [H, W, 1], rounded, in integer arithmetic.

    colour * a + 255 * (255 - a) is at most 255 * 255, so uint16 holds it; bands of rows bound the temporaries.
    """
    out = np.empty(colour.shape, np.uint8)
    for top in range(0, colour.shape[0], _BAND_ROWS):
        rows = slice(top, top + _BAND_ROWS)
        c, a = colour[rows].astype(np.uint16), alpha[rows].astype(np.uint16)
        out[rows] = (c * a + 255 * (255 - a) + 127) // 255
    return out


# --- headers ----------------------------------------------------------------------------------------------


def _be(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "big")


def _le(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "little")


def _png_header(data: bytes) -> ImageHeader:
    """IHDR (always the first chunk) gives the size; an eXIf chunk before the image data the orientation."""
    if len(data) < 33:
        raise InvalidInput("the PNG is truncated: it ends inside its header")
    if data[12:16] != b"IHDR" or _be(data, 8, 4) != 13:
        raise InvalidInput("the PNG is damaged: its first chunk is not an IHDR header")
    width, height = _be(data, 16, 4), _be(data, 20, 4)
    orientation, pos = 1, 8
    for _ in range(MAX_HEADER_STRUCTURES):
        if pos + 8 > len(data):
            break
        length, kind = _be(data, pos, 4), data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + length])
            break
        pos += 12 + length
    return ImageHeader("png", width, height, orientation)


def _jpeg_header(data: bytes) -> ImageHeader:
    """The first SOF segment gives the size (APPn segments are skipped whole, so an EXIF thumbnail's frame is
    never taken for the photo's); the first APP1 Exif segment the orientation."""
    orientation: int | None = None
    pos = 2
    for _ in range(MAX_HEADER_STRUCTURES):
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE or marker == 0x00:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # the image ends, or its data starts, before any frame header
            break
        if pos + 4 > len(data):
            break
        length = _be(data, pos + 2, 2)
        if length < 2:
            raise InvalidInput("the JPEG is damaged: a segment declares a length under 2 bytes")
        body = pos + 4  # segments are read in place: an ICC profile's 64 kB are never copied
        if marker in _JPEG_SOF:
            if body + 5 > len(data):
                break
            width, height = _be(data, body + 3, 2), _be(data, body + 1, 2)
            if height == 0:
                raise InvalidInput("the JPEG leaves its height to a DNL marker, which is not supported")
            return ImageHeader("jpeg", width, height, orientation or 1)
        if marker == 0xE1 and orientation is None and data.startswith(b"Exif\0\0", body):
            orientation = _exif_orientation(data[body + 6 : pos + 2 + length])
        pos += 2 + length
    else:
        raise InvalidInput(
            f"the JPEG has more than {MAX_HEADER_STRUCTURES} segments before its frame header: not a photo"
        )
    raise InvalidInput("the JPEG has no frame header (SOF): the file is truncated or damaged")


def _webp_header(data: bytes) -> ImageHeader:
    """The first chunk: VP8 (lossy) or VP8L (lossless) carry the size; VP8X (extended: alpha, animation,
    metadata) the canvas size, and flags whether an EXIF chunk follows."""
    if len(data) < 30:
        raise InvalidInput("the WebP is truncated: it ends inside its header")
    declared = 8 + _le(data, 4, 4)
    if declared > len(data):
        raise InvalidInput(
            f"the WebP is truncated: its RIFF header declares {declared} bytes, {len(data)} came"
        )
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise InvalidInput("the WebP is damaged: its VP8 frame has no start code")
        return ImageHeader("webp", _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise InvalidInput("the WebP is damaged: its VP8L stream has no signature")
        bits = _le(data, 21, 4)
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width, height = _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
        has_exif = bool(data[20] & 0x08)
        return ImageHeader("webp", width, height, _webp_orientation(data, declared) if has_exif else 1)
    raise InvalidInput(f"the WebP is damaged: unknown first chunk {chunk!r}")


def _webp_orientation(data: bytes, end: int) -> int:
    pos = 12
    for _ in range(MAX_HEADER_STRUCTURES):
        if pos + 8 > end:
            break
        kind, length = data[pos : pos + 4], _le(data, pos + 4, 4)
        if kind == b"EXIF":
            exif = data[pos + 8 : pos + 8 + length]
            # some writers keep JPEG's "Exif\0\0" prefix in the chunk
            return _exif_orientation(exif[6:] if exif.startswith(b"Exif\0\0") else exif)
        pos += 8 + length + (length & 1)  # RIFF chunks are padded to an even size
    return 1


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of IFD0 in a TIFF-structured EXIF block; 1 when absent or out of range."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"

    def number(start: int, size: int) -> int:
        return int.from_bytes(tiff[start : start + size], order)

    if number(2, 2) != 42:
        return 1
    ifd = number(4, 4)
    if ifd + 2 > len(tiff):
        return 1
    entries = min(number(ifd, 2), (len(tiff) - ifd - 2) // 12)
    for k in range(entries):
        entry = ifd + 2 + 12 * k
        if number(entry, 2) == _EXIF_ORIENTATION_TAG and number(entry + 2, 2) == _TIFF_SHORT:
            value = number(entry + 8, 2)
            return value if value in _UPRIGHT else 1
    return 1
