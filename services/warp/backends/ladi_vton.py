"""LaDI-VTON's warping module as a warp backend: TPS regression at 256x192, then the refinement U-Net.

The release (`warping_{vitonhd,dresscode}.pth`, one file per dataset) is a dict with two state dicts, `tps` (the
ConvNet_TPS) and `refinement` (the U-Net); both load unchanged with strict=True. The flow follows the official
inference (src/inference.py of miccunifi/ladi-vton):

1. At the working resolution (what the request asks; else the size the module was trained at, which
   `vton train warp` records in `vton_config.json`; else the release's 512x384): the garment photo, the masked person
   `im_mask` (the person in [-1, 1] with the region to repaint set to 0) and the 18-channel pose map in [0, 1].
2. All three are resized (bilinear, antialiased) to 256x192; the TPS network regresses 5x5 control points from the
   garment and [im_mask, pose map], and returns a 256x192 sampling grid.
3. The grid is resized to the working resolution and samples the full-resolution garment (border padding).
4. The refinement U-Net takes [im_mask, pose map, warped garment] (24 channels) and outputs the refined garment,
   clamped to [-1, 1].

The garment mask is warped with the same grid (zero padding) to give the warped garment's mask, unless the
refinement U-Net has a fourth output channel (one trained here: `split_refinement`), whose mask it returns. Outputs
are resized to the person's size.

Inputs are prepared the way the dataset code of the release prepares them: images normalised to [-1, 1]; the pose
map `inputs.pose_map` when given, else the release's Gaussians drawn from the keypoints at the working resolution
(`vton.runtime.posemap`: sigma 9 px on a 512-row map, as the released weights saw it); for the Dress Code checkpoint the garment's background is painted white with its mask
(the release README recommends in-shop images with a white background). Garment photos whose aspect differs from
the working resolution's are padded with white, not stretched: the training photos were all 3:4. `im_mask` is
rebuilt from `person` and `agnostic_mask` (the dataset's definition), whatever fill `masked_person` carries.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from services.warp.category import classify_garment
from services.warp.garment import garment_mask as garment_mask_of
from services.warp.models import ConvNetTPS, RefinementConfig, RefinementUNet, TPSConfig
from services.warp.models.tps_regression import predict_grid
from services.warp.types import CategoryGuess, WarpInputs, WarpOutput
from vton.runtime.checkpoints import WeightsMismatch, load_strict
from vton.runtime.errors import InvalidInput, WeightsMissing
from vton.runtime.images import require_rgb
from vton.runtime.posemap import pose_heatmaps
from vton.runtime.vocab import CATEGORIES

DATASETS = ("vitonhd", "dresscode")
DEFAULT_SIZE = (512, 384)  # (height, width) the released checkpoints were trained at
CONFIG_FILE = "vton_config.json"  # network sizes and the working size, where they are not the release's


def checkpoint_name(dataset: str) -> str:
    return f"warping_{dataset}.pth"


class LadiVtonWarpBackend:
    """LaDI-VTON's TPS + refinement warping. Build with `from_pretrained`; call `warp(WarpInputs)`."""

    def __init__(
        self,
        tps: ConvNetTPS,
        refinement: RefinementUNet,
        dataset: str = "vitonhd",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        size: tuple[int, int] = DEFAULT_SIZE,
    ):
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, not {dataset!r}")
        self.size = size  # (height, width) of requests that name none
        self.device = torch.device(device)
        self.dtype = dtype
        self.dataset = dataset
        # The official inference keeps the TPS network in float32 whatever the precision of the rest: the TPS
        # system is solved by matrix products whose precision decides the geometry. The U-Net takes `dtype`.
        self.tps = tps.to(self.device, torch.float32).eval()
        self.refinement = refinement.to(self.device, dtype).eval()

    @classmethod
    def from_pretrained(
        cls, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> LadiVtonWarpBackend:
        """Load `warping_vitonhd.pth` or `warping_dresscode.pth` from `folder` (the first present, in that order)."""
        folder = Path(folder)
        present = [d for d in DATASETS if (folder / checkpoint_name(d)).is_file()]
        if not present:
            names = " or ".join(checkpoint_name(d) for d in DATASETS)
            raise WeightsMissing(f"{folder} holds neither {names}")
        dataset = present[0]
        tps_config, refinement_config, size = read_config(folder)
        path = folder / checkpoint_name(dataset)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or not {"tps", "refinement"} <= set(checkpoint):
            # the hub loader reads only these two entries of the file, so nothing else is required or refused
            raise WeightsMismatch(
                f"{path} is not LaDI-VTON's warping module: it lacks its `tps` or `refinement` entry"
            )
        tps = ConvNetTPS(tps_config)
        refinement = RefinementUNet(refinement_config)
        load_strict(tps, checkpoint["tps"], path, "the warping module's TPS network (its `tps` entry)")
        load_strict(
            refinement, checkpoint["refinement"], path, "the refinement U-Net (its `refinement` entry)"
        )
        return cls(tps, refinement, dataset, device, dtype, size)

    def classify(self, garment: np.ndarray) -> CategoryGuess:
        return classify_garment(garment)  # LaDI-VTON has no classifier: the embedded one, from the silhouette

    @torch.inference_mode()
    def warp(self, inputs: WarpInputs) -> WarpOutput:
        height, width = self._working_size(inputs)
        person_h, person_w = _check_inputs(inputs)
        garment_mask = inputs.garment_mask
        if garment_mask is None:
            garment_mask = garment_mask_of(inputs.garment)  # the stage's own garment analysis

        cloth, cloth_mask = _garment_to_working_size(inputs.garment, garment_mask, height, width)
        if self.dataset == "dresscode":
            cloth = np.where(cloth_mask[..., None] > 0, cloth, 255).astype(np.uint8)
        im_mask = _masked_person(inputs.person, inputs.agnostic_mask, height, width)
        pose_map = _pose_map(inputs, person_h, person_w, height, width)

        to = dict(device=self.device, dtype=torch.float32)
        cloth_t = _image_tensor(cloth).to(**to)
        im_mask_t = torch.from_numpy(im_mask).permute(2, 0, 1)[None].to(**to)
        pose_t = torch.from_numpy(pose_map)[None].to(**to)
        mask_t = torch.from_numpy((cloth_mask > 0).astype(np.float32))[None, None].to(**to)

        grid = self.sampling_grid(cloth_t, im_mask_t, pose_t)
        warped = F.grid_sample(cloth_t, grid, mode="bilinear", padding_mode="border", align_corners=False)
        warped_mask = F.grid_sample(mask_t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        refined, refined_mask = self.refine(im_mask_t, pose_t, warped)
        if refined_mask is not None:
            warped_mask = refined_mask

        garment_out = _to_uint8_image(refined[0])
        garment_out = np.asarray(Image.fromarray(garment_out).resize((person_w, person_h), Image.BICUBIC))
        mask_out = cv2.resize(warped_mask[0, 0].float().cpu().numpy(), (person_w, person_h), cv2.INTER_LINEAR)
        return WarpOutput(
            warped_garment=garment_out,
            warped_mask=np.where(mask_out > 0.5, 255, 0).astype(np.uint8),
            garment_mask=np.where(garment_mask > 127, 255, 0).astype(np.uint8),
        )

    def sampling_grid(
        self, cloth: torch.Tensor, im_mask: torch.Tensor, pose_map: torch.Tensor
    ) -> torch.Tensor:
        """[B, H, W, 2] grid_sample grid at the inputs' resolution, predicted by the TPS network at its own size."""
        grid, _ = predict_grid(self.tps, cloth, torch.cat([im_mask, pose_map], 1))
        return grid

    def refine(
        self, im_mask: torch.Tensor, pose_map: torch.Tensor, warped: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The refinement U-Net on [im_mask, pose map, TPS-warped garment]: the garment clamped to [-1, 1]
        (float32) and, where the network has a fourth output channel, the garment's mask in [0, 1] it predicts."""
        x = torch.cat([im_mask, pose_map, warped], 1).to(self.dtype)
        return split_refinement(self.refinement(x).float())

    def _working_size(self, inputs: WarpInputs) -> tuple[int, int]:
        if not (inputs.height or inputs.width):
            return self.size
        return _usable_size(inputs.height or self.size[0], inputs.width or self.size[1], "working resolution")


def _usable_size(height: int, width: int, what: str) -> tuple[int, int]:
    if height % 16 or width % 16 or min(height, width) < 16:  # the refinement U-Net halves it four times
        raise InvalidInput(
            f"{what} {height}x{width} is not usable: each side must be a positive multiple of 16 "
            "(the released checkpoints' own are 512x384 and 1024x768)"
        )
    return height, width


def _check_inputs(inputs: WarpInputs) -> tuple[int, int]:
    """(person height, width) after checking that the arrays fit together."""
    require_rgb(inputs.garment, "garment")
    h, w = require_rgb(inputs.person, "person").shape[:2]
    if inputs.agnostic_mask.shape != (h, w):
        raise InvalidInput(f"agnostic_mask is {inputs.agnostic_mask.shape}, the person is {(h, w)}")
    if inputs.category not in CATEGORIES:
        raise InvalidInput(f"unknown category {inputs.category!r}; choose one of {', '.join(CATEGORIES)}")
    if inputs.garment_mask is not None and inputs.garment_mask.shape != inputs.garment.shape[:2]:
        raise InvalidInput(
            f"garment_mask is {inputs.garment_mask.shape}, the garment is {inputs.garment.shape[:2]}"
        )
    if inputs.pose_map is not None and inputs.pose_map.shape != (18, h, w):
        raise InvalidInput(f"pose_map is {inputs.pose_map.shape}, expected (18, {h}, {w})")
    if inputs.pose_map is None and np.asarray(inputs.keypoints).shape != (18, 3):
        raise InvalidInput("keypoints must be [18, 3] (x, y, confidence) when no pose_map is given")
    return h, w


def _pad_to_aspect(image: np.ndarray, aspect_hw: float, fill: int) -> np.ndarray:
    """Pad (centred) to height / width == aspect_hw."""
    h, w = image.shape[:2]
    if h / w < aspect_hw:
        extra = round(w * aspect_hw) - h
        pads = ((extra // 2, extra - extra // 2), (0, 0))
    else:
        extra = round(h / aspect_hw) - w
        pads = ((0, 0), (extra // 2, extra - extra // 2))
    pads += ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pads, constant_values=fill)


def _garment_to_working_size(
    garment: np.ndarray, mask: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    cloth = _pad_to_aspect(garment, height / width, 255)
    cloth_mask = _pad_to_aspect(mask, height / width, 0)
    cloth = np.asarray(Image.fromarray(cloth).resize((width, height), Image.BICUBIC))
    cloth_mask = cv2.resize(cloth_mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return cloth, np.where(cloth_mask > 127, 255, 0).astype(np.uint8)


def _masked_person(person: np.ndarray, agnostic_mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3]: the person in [-1, 1] times (1 - inpainting mask), i.e. the dataset's `im_mask`."""
    image = np.asarray(Image.fromarray(person).resize((width, height), Image.BICUBIC)).astype(np.float32)
    repaint = cv2.resize(agnostic_mask, (width, height), interpolation=cv2.INTER_NEAREST) > 127
    return (image / 127.5 - 1.0) * (~repaint)[..., None]


def _pose_map(inputs: WarpInputs, person_h: int, person_w: int, height: int, width: int) -> np.ndarray:
    """float32 [18, H, W] in [0, 1] at the working resolution: the request's map resized, or the dataset's Gaussians
    drawn from the keypoints at the working resolution (as the release draws them at its own)."""
    if inputs.pose_map is not None:
        maps = torch.from_numpy(inputs.pose_map.astype(np.float32) / 255.0)[None]
        maps = F.interpolate(maps, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        return maps[0].clamp(0, 1).numpy()
    keypoints = np.asarray(inputs.keypoints, np.float32).copy()
    keypoints[:, :2] *= np.array([width / person_w, height / person_h], np.float32)
    return pose_heatmaps(keypoints, width, height)


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


def _to_uint8_image(tensor: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> uint8 [H, W, 3]."""
    array = ((tensor.float().cpu().permute(1, 2, 0).numpy() + 1.0) * 127.5).round()
    return np.clip(array, 0, 255).astype(np.uint8)


def split_refinement(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The refinement U-Net's output as (garment clamped to [-1, 1], mask in [0, 1] or None).

    The released networks output the garment alone (3 channels), and the warp's mask is the garment mask warped
    by the TPS grid. A network trained here with `refinement: {out_channels: 4}` also predicts the mask (a logit):
    one smooth TPS grid cannot fold a product photo's spread sleeves onto arms held at the sides, the U-Net can.
    """
    garment = output[:, :3].clamp(-1, 1)
    return garment, (torch.sigmoid(output[:, 3:4]) if output.shape[1] > 3 else None)


def read_config(folder: Path) -> tuple[TPSConfig, RefinementConfig, tuple[int, int]]:
    """(TPS sizes, refinement sizes, working size (height, width)) from `vton_config.json` in `folder` where it
    holds them (a module `vton train warp` wrote, tiny test networks), else the release's."""
    path = Path(folder) / CONFIG_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    size = data.get("working_size", DEFAULT_SIZE)
    try:
        if not (isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(s, int) for s in size)):
            raise InvalidInput(f"working_size must be [height, width] in pixels, not {size!r}")
        _usable_size(size[0], size[1], "working_size")
    except InvalidInput as exc:
        raise WeightsMissing(f"{path}: {exc}") from None
    tps = TPSConfig.from_dict(data.get("tps", {}))
    return tps, RefinementConfig.from_dict(data.get("refinement", {})), (size[0], size[1])
