"""The try-on backend `tryon-lite`: the compact generator of `services.diffusion.models.tryon_lite`, trained here.

Folder (`<models>/tryon-lite/`): `config.json` and `diffusion_pytorch_model.safetensors`, as `vton train tryon-lite`
writes them (docs/training.md). No base model and no download: the weights are whoever trained them.

The network runs at the size it was trained at (its config's height and width), or at the size a request names, up
to 1024x768 (the U-Net is convolutional throughout: the same weights run at any multiple of its downsampling). The
person, the masked person (rebuilt from the person and the agnostic mask, as the training data builds it), the warped
garment and the pose map are resized to it; the composition mask and the rendering come back at the person's size
and are composed there with the full-size warped garment, so the garment keeps the warp's own resolution. Pixels
outside the agnostic mask are the person's, bit for bit. Deterministic: seed, steps and guidance do not apply.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from services.diffusion.models.tryon_lite import TryOnLite
from services.diffusion.types import TryOnInputs, person_size
from vton.runtime.errors import InvalidInput, WeightsMissing

MAX_PIXELS = 1024 * 768  # the platform's largest working size: beyond it a request only costs memory


class TryOnLiteBackend:
    """`from_pretrained(folder)`, then `try_on(TryOnInputs)` -> uint8 RGB at the person's size."""

    def __init__(
        self, model: TryOnLite, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()

    @classmethod
    def from_pretrained(
        cls, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> TryOnLiteBackend:
        try:
            model = TryOnLite.from_pretrained(folder)
        except FileNotFoundError as exc:
            raise WeightsMissing(f"{exc}; train it with `vton train tryon-lite` (docs/training.md)") from exc
        return cls(model, device, dtype)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) the network was trained at."""
        return self.model.config.height, self.model.config.width

    def check(self, inputs: TryOnInputs) -> None:
        h, w = person_size(inputs)
        if inputs.pose_map is not None and inputs.pose_map.shape != (18, h, w):
            raise InvalidInput(f"pose_map must be [18, {h}, {w}], got {list(inputs.pose_map.shape)}")
        category = self.model.config.category
        if inputs.category != category:
            raise InvalidInput(
                f"this tryon-lite generator dresses {category} garments only (the category it was trained on), "
                f"not {inputs.category!r}"
            )
        self.network(self.working_size(inputs))

    def working_size(self, inputs: TryOnInputs) -> tuple[int, int]:
        """(height, width): the request's, else the trained size."""
        if not (inputs.width or inputs.height):
            return self.size
        return inputs.height or self.size[0], inputs.width or self.size[1]

    def network(self, size: tuple[int, int]) -> TryOnLite:
        """The network to run at `size`: the trained one at its own size; at another, the same modules and weights
        under a config of that size (InvalidInput where the U-Net cannot run there)."""
        if size == self.size:
            return self.model
        if size[0] * size[1] > MAX_PIXELS:
            raise InvalidInput(f"tryon-lite runs at 1024x768 pixels at most, not {size[1]}x{size[0]}")
        try:
            config = dataclasses.replace(self.model.config, height=size[0], width=size[1])
        except ValueError as exc:
            raise InvalidInput(
                f"tryon-lite cannot run at {size[1]}x{size[0]} (width x height; trained at "
                f"{self.size[1]}x{self.size[0]}): {exc}"
            ) from None
        sized = copy.copy(self.model)  # shares every submodule and parameter: no second copy of the weights
        sized.config = config
        return sized

    @torch.inference_mode()
    def try_on(self, inputs: TryOnInputs) -> np.ndarray:
        self.check(inputs)
        h, w = inputs.person.shape[:2]
        size = self.working_size(inputs)
        person = _image(inputs.person)
        repaint = torch.from_numpy(inputs.agnostic_mask >= 128).float()[None, None]
        small_repaint = F.interpolate(repaint, size=size, mode="nearest")
        masked = _resize(person, size) * (1 - small_repaint)
        warped = _image(inputs.warped_garment)
        warped_mask = torch.from_numpy(inputs.warped_mask.astype(np.float32) / 255.0)[None, None]
        if inputs.pose_map is None:
            pose = torch.zeros(
                1, 18, *size
            )  # no keypoints found: an empty pose map, as the other backends do
        else:
            pose = _resize(torch.from_numpy(inputs.pose_map.astype(np.float32) / 255.0)[None], size)
        parse = None
        if self.model.config.parse_groups:
            labels = torch.from_numpy(inputs.labels.astype(np.int64))[None, None].float()
            parse = F.interpolate(labels, size=size, mode="nearest")[:, 0].long()
        tensors = [masked, small_repaint, _resize(warped, size), _resize(warped_mask, size), pose]
        network = self.network(size)
        out = network(*(t.to(self.device, self.dtype) for t in tensors), parse=_to(parse, self.device))

        # Compose at the person's size: the full-size warped garment where the mask takes it.
        mask = F.interpolate(
            out.composition_mask.float().cpu(), size=(h, w), mode="bilinear", align_corners=False
        )
        rendered = F.interpolate(out.rendered.float().cpu(), size=(h, w), mode="bicubic", align_corners=False)
        tryon = (mask * warped + (1 - mask) * rendered).clamp(-1, 1)
        result = ((tryon[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)
        inside = (inputs.agnostic_mask >= 128)[..., None]
        return np.where(inside, result, inputs.person).astype(np.uint8)


def _image(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _to(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if x is None else x.to(device)
