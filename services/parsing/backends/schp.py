"""SCHP human parsing (LIP, ATR or Pascal-Person-Part checkpoints) with SCHP's own test-time transform.

What `parse` does, step by step as SCHP's `simple_extractor.py` / `evaluate.py` do it:
1. the whole photo is the person box; its centre and a scale widened to the network input's aspect ratio give an
   affine map that fits the photo into 473x473 (LIP) or 512x512 (ATR, Pascal), letterboxed with black;
2. the crop, in BGR order, is scaled to 0..1 and normalised with SCHP's BGR mean/std;
3. for every test scale the crop is resized by that factor, the network runs on it (and on its mirror image
   when `flip` is on: the mirrored logits swap left/right classes and are flipped back, then averaged), and the
   fusion logits are upsampled to the input size (bilinear, align_corners=True); scales are averaged;
4. the logits go back to the photo through the inverse affine map (bilinear per channel, zero outside) and
   the label is their argmax.

Weights: the released `exp-schp-*.pth` files, a dict whose `state_dict` has DataParallel's `module.` prefix
(`services/parsing/testing.py` writes random ones in that layout for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from services.parsing.models.schp import CE2P, load_config, official_to_module_keys
from services.parsing.types import ParseEstimate
from vton.runtime.checkpoints import load_strict
from vton.runtime.errors import NoPersonFound, WeightsMissing
from vton.runtime.images import require_rgb


@dataclass(frozen=True)
class DatasetSpec:
    checkpoint: str  # the released file name
    num_classes: int
    input_size: tuple[int, int]  # (height, width) of the network input
    mirror_pairs: tuple[tuple[int, int], ...]  # left/right classes that swap in a mirror image


DATASETS: dict[str, DatasetSpec] = {
    # LIP: 14/15 left/right arm, 16/17 legs, 18/19 shoes (evaluate.py's flipped_idx).
    "lip": DatasetSpec("exp-schp-201908261155-lip.pth", 20, (473, 473), ((14, 15), (16, 17), (18, 19))),
    # ATR: 9/10 left/right shoe, 12/13 legs, 14/15 arms.
    "atr": DatasetSpec("exp-schp-201908301523-atr.pth", 18, (512, 512), ((9, 10), (12, 13), (14, 15))),
    # Pascal-Person-Part has no sided classes (head, torso, upper/lower arms, upper/lower legs).
    "pascal": DatasetSpec("exp-schp-201908270938-pascal-person-part.pth", 7, (512, 512), ()),
}

# SCHP's ImageNet statistics in BGR order (the network was trained on cv2-read BGR images scaled to 0..1).
BGR_MEAN = (0.406, 0.456, 0.485)
BGR_STD = (0.225, 0.224, 0.229)


def dataset_spec(dataset: str) -> DatasetSpec:
    if dataset not in DATASETS:
        raise ValueError(f"unknown SCHP dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[dataset]


def person_center_scale(width: int, height: int, aspect_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """SCHP's `_box2cs` on the whole-image box [0, 0, w-1, h-1]: centre and a scale padded to the aspect."""
    w, h = float(width - 1), float(height - 1)
    center = np.array([w * 0.5, h * 0.5], np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h], np.float64)


def crop_affine(center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """SCHP's `get_affine_transform(center, scale, rot=0, input_size)` as a closed form.

    With no rotation the reference's three point pairs define a uniform scale k = (W_in - 1) / scale_w about
    the centre, which lands on the input's centre ((W_in - 1) / 2, (H_in - 1) / 2).
    """
    in_h, in_w = input_size
    k = (in_w - 1) / scale[0]
    return np.array(
        [[k, 0.0, (in_w - 1) * 0.5 - k * center[0]], [0.0, k, (in_h - 1) * 0.5 - k * center[1]]], np.float64
    )


def mirror_permutation(num_classes: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Channel order that turns a mirror image's logits into the original's: each left/right pair swaps."""
    perm = list(range(num_classes))
    for left, right in pairs:
        perm[left], perm[right] = right, left
    return perm


def merge_flipped(logits: torch.Tensor, flipped_logits: torch.Tensor, perm: Sequence[int]) -> torch.Tensor:
    """Average [C, H, W] logits with those of the mirrored input (swapped sides, flipped back)."""
    return (logits + flipped_logits[list(perm)].flip(-1)) * 0.5


def logits_to_photo(logits: torch.Tensor, affine: np.ndarray, width: int, height: int) -> torch.Tensor:
    """[C, H_in, W_in] crop logits -> [C, height, width] on the photo, on the logits' device.

    SCHP's `transform_logits` warps each channel with cv2.warpAffine through the inverse crop transform
    (bilinear, zero outside); every photo pixel p reads the crop at `affine @ p`. The same sampling with
    grid_sample (align_corners=True puts -1 and 1 on the first and last pixel centres, as cv2 indexes them)
    keeps the work on the logits' device; the two agree to float rounding.
    """
    in_h, in_w = logits.shape[1:]
    k, tx, ty = float(affine[0, 0]), float(affine[0, 2]), float(affine[1, 2])
    xs = torch.arange(width, device=logits.device, dtype=torch.float32) * k + tx
    ys = torch.arange(height, device=logits.device, dtype=torch.float32) * k + ty
    grid = torch.stack(
        [
            (xs * (2.0 / (in_w - 1)) - 1.0)[None, :].expand(height, width),
            (ys * (2.0 / (in_h - 1)) - 1.0)[:, None].expand(height, width),
        ],
        dim=-1,
    )
    return F.grid_sample(logits[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[
        0
    ]


class SCHPBackend:
    """Human parsing with an SCHP checkpoint; `parse(image)` returns the dataset's labels at the image's size."""

    def __init__(
        self,
        model: CE2P,
        dataset: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        flip: bool = True,
        scales: Sequence[float] = (1.0,),
        require_person: bool = True,
    ):
        self.spec = dataset_spec(dataset)
        if model.config.num_classes != self.spec.num_classes:
            raise ValueError(
                f"{dataset} has {self.spec.num_classes} classes, the model {model.config.num_classes}"
            )
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive, got {tuple(scales)}")
        self.dataset = dataset
        self.device = torch.device(device)
        self.dtype = dtype
        self.flip = flip
        self.scales = tuple(float(s) for s in scales)
        self.require_person = require_person  # an all-background parse raises NoPersonFound
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self._perm = mirror_permutation(self.spec.num_classes, self.spec.mirror_pairs)
        self._mean = torch.tensor(BGR_MEAN, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(BGR_STD, device=self.device).view(3, 1, 1)

    @classmethod
    def from_pretrained(
        cls,
        folder: Path,
        dataset: str = "lip",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        flip: bool = True,
        scales: Sequence[float] = (1.0,),
    ) -> SCHPBackend:
        """Load the released checkpoint of `dataset` from `folder` (sizes from vton_config.json if present)."""
        folder = Path(folder)
        spec = dataset_spec(dataset)
        path = folder / spec.checkpoint
        if not path.is_file():
            raise WeightsMissing(
                f"SCHP {dataset} needs {spec.checkpoint} in {folder}; get it with `vton weights pull schp-{dataset}`"
            )
        model = CE2P(load_config(folder, spec.num_classes))
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated download, a corrupt pickle
            raise WeightsMissing(f"{path} is not a usable SCHP {dataset} checkpoint: {exc}") from exc
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise WeightsMissing(f"{path} is not a usable SCHP {dataset} checkpoint: it holds no state dict")
        load_strict(model, official_to_module_keys(state), path, f"SCHP's {dataset} network")
        return cls(model, dataset, device, dtype, flip, scales)

    def _input_tensor(self, bgr_crop: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(bgr_crop).to(self.device).permute(2, 0, 1).float() / 255.0
        return ((x - self._mean) / self._std).unsqueeze(0)

    @torch.inference_mode()
    def crop_logits(self, x: torch.Tensor) -> torch.Tensor:
        """[1, 3, H_in, W_in] normalised crop -> [C, H_in, W_in] float32 logits averaged over flips and scales."""
        in_h, in_w = self.spec.input_size
        fused = []
        for s in self.scales:
            scaled = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=True)
            batch = torch.cat([scaled, scaled.flip(-1)]) if self.flip else scaled
            fusion = self.model(batch.to(self.dtype)).fusion.float()
            logits = merge_flipped(fusion[0], fusion[1], self._perm) if self.flip else fusion[0]
            fused.append(
                F.interpolate(logits[None], size=(in_h, in_w), mode="bilinear", align_corners=True)[0]
            )
        return torch.stack(fused).mean(0)

    @torch.inference_mode()
    def parse(self, image: np.ndarray) -> ParseEstimate:
        """uint8 RGB [H, W, 3] -> labels uint8 [H, W] in this dataset's label set."""
        height, width = require_rgb(image).shape[:2]
        in_h, in_w = self.spec.input_size
        center, scale = person_center_scale(width, height, in_w / in_h)
        affine = crop_affine(center, scale, self.spec.input_size)
        crop = cv2.warpAffine(
            np.ascontiguousarray(image[:, :, ::-1]),
            affine,
            (in_w, in_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        logits = logits_to_photo(self.crop_logits(self._input_tensor(crop)), affine, width, height)
        labels = logits.argmax(0).to(torch.uint8).cpu().numpy()
        people = int(bool(labels.any()))  # SCHP parses one person: the photo's
        if not people and self.require_person:
            raise NoPersonFound("no person found")
        return ParseEstimate(labels=labels, label_set=self.dataset, people_detected=people)
