"""Large photos are tried on at a working size, and the result is put back into the full-size photo.

The stage networks gain nothing from more than a couple of megapixels, while a 40 MP phone photo would make
every stage (and every pose map and label map on the wire) twenty times heavier. So the orchestrator sends the
stages a copy scaled down to at most `max_pixels`, then pastes the try-on, scaled up, into the original photo inside
the agnostic mask only: every pixel outside the garment region is still the customer's own.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vton.runtime import images


def working_copy(data: bytes, max_pixels: int) -> bytes | None:
    """PNG bytes of the photo scaled to fit `max_pixels`, or None when it already fits."""
    width, height = images.image_size(data)
    if width * height <= max_pixels:
        return None
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
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
