"""The file formats the try-on datasets keep their annotations in, read into and written from the platform's
own representations (LIP labels, OpenPose COCO-18 keypoints, DensePose IUV).

- Keypoints: OpenPose JSON (`people[0].pose_keypoints_2d`, or CP-VTON's `pose_keypoints`) with 18 points
  (COCO-18) or 25 (BODY_25, as VITON-HD ships them and LaDI-VTON's loader indexes them); Dress Code's
  `{"keypoints": [[x, y, score, id], ...]}` on a grid half the image's size.
- Label maps: palette PNGs of class indices (LIP, VITON-HD's LIP-with-neck, Dress Code's 18 classes).
- DensePose: VITON-HD's `image-densepose` picture (the part index coloured with PARULA on black, which gives
  the parts back but not U and V), Dress Code's `dense/ID_5.png` (parts) with `ID_5_uv.npz` (U and V).
- Pairs files: one `person garment` pair a line.

Keypoints here are float32 [18, 3] (x, y in pixels, confidence), zeros for a missing joint.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from services.densepose.visualize import render_iuv
from services.parsing.labels import (
    DRESSCODE_LABELS,
    LIP,
    VITONHD_NECK,
    dresscode_to_lip,
    get_palette,
)
from vton.runtime.vocab import NUM_KEYPOINTS, Lip


class FormatError(ValueError):
    """A dataset file that exists but does not hold what its layout says (the message names the file)."""


# --------------------------------------------------------------------------------------------- images


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of any image file (palette, grey and alpha images are converted)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, SyntaxError) as exc:
        raise FormatError(f"{path}: not a readable image ({exc})") from None


def read_mask(path: Path) -> np.ndarray:
    """bool [H, W]: a mask image (1-bit, grey 0/255 with JPEG noise, or RGB), True where >= 128."""
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
    except (OSError, SyntaxError) as exc:
        raise FormatError(f"{path}: not a readable mask image ({exc})") from None
    return grey >= 128


def read_indices(path: Path) -> np.ndarray:
    """uint8 [H, W]: the class indices of a label map (a palette or grey PNG holds them as pixel values)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I;16", "I"):
                raise FormatError(
                    f"{path}: a label map must be a palette or grey PNG of class indices, not {image.mode}"
                )
            return np.asarray(image).astype(np.uint8)
    except (OSError, SyntaxError) as exc:
        raise FormatError(f"{path}: not a readable label map ({exc})") from None


def write_indices(path: Path, labels: np.ndarray, palette: list[int]) -> None:
    """A palette PNG of class indices, coloured with `palette` (flat RGB) as the datasets ship them."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(palette + [0] * (768 - len(palette)))
    image.save(path)


def write_jpeg(path: Path, image: np.ndarray) -> None:
    """A photo, mask or picture as the datasets keep them (JPEG, quality 95)."""
    Image.fromarray(image).save(path, quality=95)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A photo at another size: area averaging to shrink, bicubic to grow (PIL's default in the loaders)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def resize_nearest(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """Labels or masks [H, W] (or [C, H, W]) at another size, nearest neighbour (no invented classes)."""
    if values.ndim == 3:
        return np.stack([resize_nearest(v, width, height) for v in values])
    if values.shape[1] == width and values.shape[0] == height:
        return values
    dtype = values.dtype
    out = cv2.resize(values.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return out.astype(dtype)


# ----------------------------------------------------------------------------------------- keypoints

# COCO-18 index -> BODY_25 index (BODY_25 inserts MidHip at 8 and appends six foot points).
COCO18_TO_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_R_HIP, _L_HIP = 8, 11
BODY25_MID_HIP = 8


def _checked_keypoints(values: np.ndarray, path: Path) -> np.ndarray:
    values = values.astype(np.float32)
    if values.size == NUM_KEYPOINTS * 3:
        return values.reshape(NUM_KEYPOINTS, 3)
    if values.size == 25 * 3:
        return values.reshape(25, 3)[list(COCO18_TO_BODY25)]
    raise FormatError(
        f"{path}: {values.size} pose numbers; expected 54 (COCO-18) or 75 (BODY_25) x, y, confidence"
    )


def read_openpose(path: Path) -> np.ndarray:
    """[18, 3] keypoints of `people[0]` of an OpenPose JSON file (COCO-18 or BODY_25); zeros when nobody."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable OpenPose JSON file ({exc})") from None
    people = document.get("people") if isinstance(document, dict) else None
    if people is None:
        raise FormatError(f"{path}: an OpenPose JSON file has a 'people' list")
    if not people:
        return np.zeros((NUM_KEYPOINTS, 3), np.float32)
    person = people[0]
    values = person.get("pose_keypoints_2d", person.get("pose_keypoints"))
    if values is None:
        raise FormatError(f"{path}: people[0] has no pose_keypoints_2d (nor CP-VTON's pose_keypoints)")
    keypoints = _checked_keypoints(np.asarray(values, np.float64), path)
    keypoints[keypoints[:, 2] <= 0] = 0
    return keypoints


def openpose_body25_json(keypoints: np.ndarray) -> str:
    """OpenPose's BODY_25 document for one person, the form VITON-HD ships and LaDI-VTON's loader reads.

    MidHip is the middle of the two hips when both are found; the six foot points are left missing.
    """
    body = np.zeros((25, 3), np.float32)
    body[list(COCO18_TO_BODY25)] = keypoints
    if keypoints[_R_HIP, 2] > 0 and keypoints[_L_HIP, 2] > 0:
        mid = (keypoints[_R_HIP] + keypoints[_L_HIP]) / 2
        body[BODY25_MID_HIP] = (mid[0], mid[1], min(keypoints[_R_HIP, 2], keypoints[_L_HIP, 2]))
    person = {
        "person_id": [-1],
        "pose_keypoints_2d": [round(float(v), 3) for v in body.ravel()],
        "face_keypoints_2d": [],
        "hand_left_keypoints_2d": [],
        "hand_right_keypoints_2d": [],
    }
    return json.dumps({"version": 1.3, "people": [person]})


# Dress Code's keypoints lie on a 384x512 grid, half its 768x1024 photos; its loaders scale them from that
# grid to any working size, whatever the photo's own size.
DRESSCODE_FULL_SIZE = (768, 1024)  # width, height


def read_dresscode_keypoints(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """[18, 3] keypoints in pixels of an image of `image_size` (width, height) from Dress Code's JSON (points on
    the 384x512 grid); a point with a negative coordinate or no score is missing."""
    try:
        document = json.loads(Path(path).read_text())
        values = np.asarray(document["keypoints"], np.float64)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FormatError(
            f"{path}: not Dress Code keypoints {{'keypoints': [[x, y, score, id], ...]}} ({exc})"
        ) from None
    if values.shape != (NUM_KEYPOINTS, 4):
        raise FormatError(
            f"{path}: {list(values.shape)} keypoint values; Dress Code has 18 x [x, y, score, id]"
        )
    keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    width, height = image_size
    keypoints[:, 0] = values[:, 0] * 2 * width / DRESSCODE_FULL_SIZE[0]
    keypoints[:, 1] = values[:, 1] * 2 * height / DRESSCODE_FULL_SIZE[1]
    keypoints[:, 2] = values[:, 2]
    missing = (values[:, 0] < 0) | (values[:, 1] < 0) | (values[:, 2] <= 0)
    keypoints[missing] = 0
    return keypoints


def dresscode_keypoints_json(keypoints: np.ndarray, image_size: tuple[int, int]) -> str:
    """Dress Code's keypoint document: 18 x [x, y, score, id] on the half-size grid; missing = [-1, -1, 0, id]."""
    width, height = image_size
    rows = []
    for index, (x, y, score) in enumerate(keypoints):
        if score > 0:
            gx = float(x) * DRESSCODE_FULL_SIZE[0] / 2 / width
            gy = float(y) * DRESSCODE_FULL_SIZE[1] / 2 / height
            rows.append([round(gx, 2), round(gy, 2), round(float(score), 4), float(index)])
        else:
            rows.append([-1.0, -1.0, 0.0, float(index)])
    return json.dumps({"keypoints": rows})


def scale_keypoints(keypoints: np.ndarray, sx: float, sy: float) -> np.ndarray:
    out = keypoints.copy()
    out[:, 0] *= sx
    out[:, 1] *= sy
    out[keypoints[:, 2] <= 0] = 0
    return out


# ------------------------------------------------------------------------------------------ label maps

LIP_PALETTE_FLAT = get_palette(len(LIP))
DRESSCODE_PALETTE_FLAT = get_palette(len(DRESSCODE_LABELS))

# LIP -> Dress Code, for writing Dress Code label maps from a LIP parse. Dress Code has no glove or socks
# (their side is unknown, so they become background, which its loaders treat as changeable), a coat is an
# upper garment and a jumpsuit a dress.
_LIP_TO_DRESSCODE = {
    Lip.BACKGROUND: "background",
    Lip.HAT: "hat",
    Lip.HAIR: "hair",
    Lip.GLOVE: "background",
    Lip.SUNGLASSES: "sunglasses",
    Lip.UPPER_CLOTHES: "upper_clothes",
    Lip.DRESS: "dress",
    Lip.COAT: "upper_clothes",
    Lip.SOCKS: "background",
    Lip.PANTS: "pants",
    Lip.JUMPSUITS: "dress",
    Lip.SCARF: "scarf",
    Lip.SKIRT: "skirt",
    Lip.FACE: "head",
    Lip.LEFT_ARM: "left_arm",
    Lip.RIGHT_ARM: "right_arm",
    Lip.LEFT_LEG: "left_leg",
    Lip.RIGHT_LEG: "right_leg",
    Lip.LEFT_SHOE: "left_shoe",
    Lip.RIGHT_SHOE: "right_shoe",
}
_LIP_TO_DRESSCODE_LUT = np.zeros(256, np.uint8)
for _lip, _name in _LIP_TO_DRESSCODE.items():
    _LIP_TO_DRESSCODE_LUT[_lip] = DRESSCODE_LABELS.index(_name)


def lip_to_dresscode(labels: np.ndarray) -> np.ndarray:
    return _LIP_TO_DRESSCODE_LUT[labels.astype(np.uint8)]


def lip_to_vitonhd(labels: np.ndarray) -> np.ndarray:
    """LIP -> VITON-HD's parse indices: the same but 10, which VITON-HD spends on the neck, so a LIP jumpsuit
    is written as a dress (both are upper garments to the loaders)."""
    out = labels.astype(np.uint8).copy()
    out[out == VITONHD_NECK] = Lip.DRESS
    return out


def lip_from_cpvton(labels: np.ndarray) -> np.ndarray:
    """CP-VTON's image-parse holds LIP indices; its test split's image-parse-new adds 20 for the neck (face)."""
    out = labels.astype(np.uint8).copy()
    out[out == 20] = Lip.FACE
    out[out >= len(LIP)] = Lip.BACKGROUND
    return out


def lip_from_dresscode(labels: np.ndarray) -> np.ndarray:
    return dresscode_to_lip(labels)


# ------------------------------------------------------------------------------------------- DensePose

NUM_PARTS = 24
# VITON-HD's image-densepose colours: black background, part p as PARULA(p * 255 / 24) (render_iuv on black).
PART_COLOURS = render_iuv(
    None,
    np.stack(
        [
            np.arange(NUM_PARTS + 1, dtype=np.float32)[None, :],
            np.zeros((1, NUM_PARTS + 1)),
            np.zeros((1, NUM_PARTS + 1)),
        ]
    ),
)[0].astype(np.int32)  # [25, 3]; row 0 (background) is black


def parts_from_rendering(picture: np.ndarray) -> np.ndarray:
    """uint8 [H, W] DensePose part index (0 background, 1..24) of an `image-densepose` picture: the nearest of
    the 25 colours, which survives the JPEG noise of VITON-HD's files."""
    pixels = picture.reshape(-1, 1, 3).astype(np.int32)
    distance = ((pixels - PART_COLOURS[None]) ** 2).sum(-1)
    return distance.argmin(1).astype(np.uint8).reshape(picture.shape[:2])


def rendering_from_parts(parts: np.ndarray) -> np.ndarray:
    """The `image-densepose` picture of a part map (what VITON-HD's preprocessing draws)."""
    return PART_COLOURS[parts.astype(np.intp)].astype(np.uint8)


def iuv_to_uint8(iuv: np.ndarray) -> np.ndarray:
    """A backend's float IUV [3, H, W] (I 0..24, U and V 0..1) -> uint8 (I, U * 255, V * 255), DensePose's own
    quantisation."""
    out = np.empty(iuv.shape, np.uint8)
    out[0] = np.clip(np.rint(iuv[0]), 0, NUM_PARTS)
    out[1:] = np.clip(np.rint(iuv[1:] * 255), 0, 255)
    return out


def read_dresscode_dense(labels_path: Path, uv_path: Path) -> np.ndarray:
    """uint8 [3, H, W] IUV from Dress Code's `dense/ID_5.png` (parts) and `dense/ID_5_uv.npz` (key `uv`, [2, h, w],
    0..1 or 0..255), the UV resized to the parts' size when they differ."""
    parts = read_indices(labels_path)
    try:
        with np.load(uv_path) as archive:
            uv = np.asarray(archive["uv"], np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise FormatError(f"{uv_path}: not a DensePose UV archive with a 'uv' array ({exc})") from None
    if uv.ndim != 3 or uv.shape[0] != 2:
        raise FormatError(f"{uv_path}: uv must be [2, H, W], not {list(uv.shape)}")
    if uv.max(initial=0) <= 1.0:
        uv = uv * 255
    uv = np.stack([cv2.resize(c, parts.shape[::-1], interpolation=cv2.INTER_NEAREST) for c in uv])
    return np.concatenate([parts[None], np.clip(np.rint(uv), 0, 255).astype(np.uint8)])


def write_dresscode_dense(labels_path: Path, uv_path: Path, iuv: np.ndarray) -> None:
    """Dress Code's two DensePose files from a uint8 IUV [3, H, W]: parts PNG and a float16 UV in 0..1."""
    Image.fromarray(iuv[0].astype(np.uint8), mode="L").save(labels_path)
    np.savez_compressed(uv_path, uv=(iuv[1:].astype(np.float32) / 255).astype(np.float16))


# ------------------------------------------------------------------------------------------ pairs files


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(person, garment) file names, one pair a line; blank lines are skipped, anything else is an error."""
    pairs = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not a readable pairs file ({exc})") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise FormatError(f"{path}:{number}: expected 'PERSON GARMENT', got {line.strip()!r}")
        pairs.append((fields[0], fields[1]))
    return pairs


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> None:
    Path(path).write_text("".join(f"{person} {garment}\n" for person, garment in pairs))
