"""Image codecs with the checks every entry point needs: the bytes are an image, and not too large."""

from __future__ import annotations

import cv2
import numpy as np

from vton.runtime.errors import InvalidInput

# A 1024x768 photo is 0.8 MP; 40 MP admits any camera's photo and refuses decompression bombs.
MAX_PIXELS = 40_000_000
MIN_SIDE = 32


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) read from the header alone, without decoding the pixels."""
    if not data:
        raise InvalidInput("the image is empty (0 bytes)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        raise InvalidInput("the JPEG has no frame header: the file is truncated or not a JPEG")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        arr = _decode_any(data, cv2.IMREAD_UNCHANGED)
        return arr.shape[1], arr.shape[0]
    raise InvalidInput("the file is not an image: expected PNG, JPEG or WebP")


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise InvalidInput(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels"
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidInput(f"the image is {width}x{height}; each side must be at least {MIN_SIDE} pixels")


def _decode_any(data: bytes, flags: int) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None:
        raise InvalidInput("the image could not be decoded: the file is damaged or not an image")
    return arr


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded bytes -> uint8 RGB array [H, W, 3]; transparent pixels are composited on white."""
    width, height = image_size(data)
    check_size(width, height, max_pixels)
    arr = _decode_any(data, cv2.IMREAD_UNCHANGED)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        bgr = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = cv2.cvtColor(bgr.round().astype(np.uint8), cv2.COLOR_BGR2RGB)
    else:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.dtype != np.uint8:
        arr = (arr / 257).astype(np.uint8)
    return arr


def decode_gray(data: bytes) -> np.ndarray:
    """Encoded single-channel image (a mask or label map) -> uint8 [H, W], values unchanged."""
    width, height = image_size(data)
    check_size(width, height)
    arr = _decode_any(data, cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2GRAY)
    return arr.astype(np.uint8)


def encode_png(arr: np.ndarray) -> bytes:
    """uint8 RGB [H, W, 3] or single-channel [H, W] -> PNG bytes (lossless)."""
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def read_rgb(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        return decode_rgb(f.read())


def write_png(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(encode_png(arr))
