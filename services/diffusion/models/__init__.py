"""LaDI-VTON's networks in diffusers' style: model classes with configs, weight-compatible with the release."""

from services.diffusion.models.autoencoder_kl import EmascAutoencoderKL
from services.diffusion.models.emasc import EMASC, emasc_channels, mask_features
from services.diffusion.models.inversion_adapter import InversionAdapter
from services.diffusion.models.ladi_unet import EXTENDED_IN_CHANNELS, INPUT_LAYOUT, build_extended_unet

__all__ = [
    "EMASC",
    "EXTENDED_IN_CHANNELS",
    "INPUT_LAYOUT",
    "EmascAutoencoderKL",
    "InversionAdapter",
    "build_extended_unet",
    "emasc_channels",
    "mask_features",
]
