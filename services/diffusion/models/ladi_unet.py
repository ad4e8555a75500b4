"""LaDI-VTON's extended UNet: SD-2-inpainting's UNet2DConditionModel with 31 input channels.

It is diffusers' UNet2DConditionModel unchanged except `in_channels`: the released `unet_{dataset}.pth` is
that model's state dict (conv_in widened from 9 to 31 input channels), so it loads with strict=True.
The input channels, in the order the official pipeline concatenates them:
  4 noisy latents | 1 inpainting mask | 4 masked-person latents | 18 pose map | 4 warped-garment latents.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

LATENT_CHANNELS = 4
MASK_CHANNELS = 1
POSE_CHANNELS = 18
# (name, channels) in concatenation order
INPUT_LAYOUT: tuple[tuple[str, int], ...] = (
    ("noisy_latents", LATENT_CHANNELS),
    ("mask", MASK_CHANNELS),
    ("masked_person_latents", LATENT_CHANNELS),
    ("pose_map", POSE_CHANNELS),
    ("warped_garment_latents", LATENT_CHANNELS),
)
EXTENDED_IN_CHANNELS = sum(c for _, c in INPUT_LAYOUT)  # 31


def extended_unet_config(base_config: dict) -> dict:
    """SD-2-inpainting's UNet config with LaDI-VTON's 31 input channels (as the hubconf builds it)."""
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    config["in_channels"] = EXTENDED_IN_CHANNELS
    return config


def build_extended_unet(base_config: dict) -> UNet2DConditionModel:
    """A randomly initialised extended UNet."""
    return UNet2DConditionModel.from_config(extended_unet_config(base_config))


def unet_input(
    noisy_latents: torch.Tensor,
    mask: torch.Tensor,
    masked_person_latents: torch.Tensor,
    pose_map: torch.Tensor,
    warped_garment_latents: torch.Tensor,
) -> torch.Tensor:
    """The 31-channel UNet input, concatenated in the official order."""
    parts = (noisy_latents, mask, masked_person_latents, pose_map, warped_garment_latents)
    for (name, channels), part in zip(INPUT_LAYOUT, parts, strict=True):
        if part.shape[1] != channels:
            raise ValueError(f"{name} must have {channels} channels, not {part.shape[1]}")
    dtype = noisy_latents.dtype
    return torch.cat([p.to(dtype) for p in parts], dim=1)
