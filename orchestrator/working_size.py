"""Large photos are tried on at a working size, and the result is put back into the full-size photo.

The stage networks gain nothing from more than a couple of megapixels, while a 40 MP phone photo would make
every stage (and every pose map and label map on the wire) twenty times heavier. So the orchestrator sends the
stages a copy scaled down to at most `max_pixels`, then pastes the try-on, scaled up, into the original photo inside
the agnostic mask only: every pixel outside the garment region is still the customer's own.

Sizes here are as the user sees the photo (its EXIF orientation applied): the decoder returns it upright.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vton.runtime import images
from vton.runtime.errors import InvalidInput


def working_dimensions(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) the stages get for a photo of width x height: scaled down to fit `max_pixels`."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def check_workable(width: int, height: int, max_pixels: int) -> None:
    """Refuse, with the size the user sent, a photo the stages would refuse once scaled to the working size."""
    scaled = working_dimensions(width, height, max_pixels)
    if min(scaled) < images.MIN_SIDE:
        raise InvalidInput(
            f"the image is {width}x{height}; scaled to the working size (at most {max_pixels} pixels) it would "
            f"be {scaled[0]}x{scaled[1]}, and each side must be at least {images.MIN_SIDE} pixels"
        )


def working_copy(data: bytes, max_pixels: int) -> bytes | None:
    """PNG bytes of the photo, upright, scaled to fit `max_pixels`; None when it already fits."""
    width, height = images.image_size(data)
    if width * height <= max_pixels:
        return None
    size = working_dimensions(width, height, max_pixels)
    return images.encode_png(cv2.resize(images.decode_rgb(data), size, interpolation=cv2.INTER_AREA))


def paste_full_size(original: bytes, result: bytes, mask: bytes) -> bytes:
    """The original photo with the working-size result, scaled up, inside the (scaled-up) agnostic mask."""
    person = images.decode_rgb(original)
    height, width = person.shape[:2]
    tried = cv2.resize(images.decode_rgb(result), (width, height), interpolation=cv2.INTER_CUBIC)
    inside = cv2.resize(images.decode_gray(mask), (width, height), interpolation=cv2.INTER_LINEAR) >= 128
    out = person.copy()
    out[inside] = tried[inside]
    return images.encode_png(np.ascontiguousarray(out))
