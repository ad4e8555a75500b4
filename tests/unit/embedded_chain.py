"""The embedded warp and composite run in process on a person whose parse and pose are known: the annotated
VITON-HD persons of ../shared/data (their own label map and OpenPose file), or any photo with its labels and
keypoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.diffusion.backends.composite import CompositeBackend
from services.diffusion.types import TryOnInputs
from services.parsing.agnostic import cloth_agnostic
from services.parsing.labels import vitonhd_to_lip
from services.warp.backends.keypoint_tps import KeypointTPSWarp
from services.warp.types import WarpInputs
from training.data.formats import read_openpose

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ANNOTATED = DATA / "annotated" / "vitonhd"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not on this machine")


def annotated_person(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photo, LIP labels and COCO-18 keypoints of an annotated VITON-HD person."""
    photo = np.array(Image.open(ANNOTATED / "image" / f"{name}.jpg").convert("RGB"))
    parse = next(
        p for d in ("image-parse", "image-parse-v3") if (p := ANNOTATED / d / f"{name}.png").is_file()
    )
    pose = next(
        p
        for d in ("openpose-json", "openpose_json")
        if (p := ANNOTATED / d / f"{name}_keypoints.json").is_file()
    )
    return photo, vitonhd_to_lip(np.array(Image.open(parse))), read_openpose(pose)


def square_pose_map(keypoints: np.ndarray, h: int, w: int) -> np.ndarray:
    """LaDI-VTON's pose map as its dataset loader draws it: a small filled square per keypoint, one channel each."""
    r = max(3, h // 128)
    out = np.zeros((18, h, w), np.uint8)
    for i, (x, y, c) in enumerate(keypoints):
        if c > 0:
            out[i, max(0, int(y) - r) : int(y) + r + 1, max(0, int(x) - r) : int(x) + r + 1] = 255
    return out


def composite_try_on(
    person: np.ndarray, labels: np.ndarray, keypoints: np.ndarray, garment: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, TryOnInputs]:
    """LaDI-VTON's agnostic mask, the keypoint warp and the composite, upper body: the result and its inputs."""
    mask, masked = cloth_agnostic(person, labels, keypoints, "upper_body")
    warped = KeypointTPSWarp().warp(
        WarpInputs(garment, person, masked, mask, keypoints, labels, "upper_body")
    )
    inputs = TryOnInputs(
        person=person,
        masked_person=masked,
        agnostic_mask=mask,
        warped_garment=warped.warped_garment,
        warped_mask=warped.warped_mask,
        garment=garment,
        labels=labels,
        category="upper_body",
        pose_map=square_pose_map(keypoints, *person.shape[:2]),
        seed=seed,
    )
    return CompositeBackend().try_on(inputs), inputs
