"""The pictures DensePose's tools draw for an IUV (apply_net `show`: dp_segm, dp_u, dp_v).

DensePose's visualizers colour a channel with OpenCV's PARULA colormap (the part index scaled by 255 / 24, or
U / V scaled by 255) and blend it over the photo turned to grey, 70 % colour inside the person and the photo
untouched outside. VITON-HD's and IDM-VTON's `image-densepose` pictures are the same colours on black at full
opacity; `render_iuv(None, iuv)` draws that.
"""

from __future__ import annotations

import cv2
import numpy as np

from vton.runtime.vocab import NUM_DENSEPOSE_PARTS

DEFAULT_ALPHA = 0.7  # DensePose's MatrixVisualizer default for `show`


def _colour(values: np.ndarray) -> np.ndarray:
    """uint8 [H, W] -> RGB [H, W, 3] with PARULA (OpenCV returns BGR)."""
    return cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_PARULA), cv2.COLOR_BGR2RGB)


def render_iuv(
    image: np.ndarray | None, iuv: np.ndarray, channel: str = "segm", alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """uint8 RGB [H, W, 3]: the IUV's parts (or its U or V) coloured over the greyed photo, or over black.

    image: uint8 RGB [H, W, 3] or None for a black canvas (then the colour is opaque); iuv: float [3, H, W].
    channel: "segm" (part index), "u" or "v".
    """
    iuv = np.asarray(iuv)
    if iuv.ndim != 3 or iuv.shape[0] != 3:
        raise ValueError(f"iuv must be [3, H, W], not {list(iuv.shape)}")
    height, width = iuv.shape[1:]
    parts = np.rint(iuv[0]).astype(np.int32)
    person = parts > 0
    if channel == "segm":
        values = np.clip(parts * (255.0 / NUM_DENSEPOSE_PARTS), 0, 255)
    elif channel in ("u", "v"):
        values = np.clip(iuv[1 if channel == "u" else 2] * 255.0, 0, 255)
    else:
        raise ValueError(f"channel must be 'segm', 'u' or 'v', not {channel!r}")
    colour = _colour(values.astype(np.uint8))
    if image is None:
        out = np.zeros((height, width, 3), dtype=np.uint8)
        out[person] = colour[person]
        return out
    if image.shape[:2] != (height, width):
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the IUV is {width}x{height}")
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out = grey.copy()
    blended = grey[person].astype(np.float32) * (1.0 - alpha) + colour[person].astype(np.float32) * alpha
    out[person] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
