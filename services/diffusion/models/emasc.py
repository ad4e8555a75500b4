"""EMASC: Enhanced Mask-Aware Skip Connections (LaDI-VTON, Morelli et al. 2023).

Small convolutional adapters that carry the VAE encoder's features of the masked person straight into the
decoder, so that the pixels outside the inpainting mask (face, hands, background) keep their detail instead of
going through the 8x-downsampled latent. One adapter per skip connection; parameter names follow the official
module (`conv.{i}.0/2` for the nonlinear kind, `conv.{i}` for the linear one), so the released
`emasc_{dataset}.pth` state dicts load with strict=True.

Which encoder feature feeds which point of the decoder follows LaDI-VTON's AutoencoderKL (see
`EmascAutoencoderKL`): the encoder keeps [input, conv_in, the input of every down block]; `int_layers` picks
some of them (official: [1, 2, 3, 4, 5]); the picked list, reversed, is added to the inputs of the decoder's
up blocks in order, and the feature of layer 1 (the full-resolution conv_in output) is added after the
decoder's last norm+activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class EMASC(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        in_channels: list[int] = (128, 128, 128, 256, 512),
        out_channels: list[int] = (128, 256, 512, 512, 512),
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 1,
        type: str = "nonlinear",  # noqa: A002 - the official config name
    ):
        super().__init__()
        if len(in_channels) != len(out_channels):
            raise ValueError("EMASC needs one output width per input width")
        self.conv = nn.ModuleList()
        for in_ch, out_ch in zip(in_channels, out_channels, strict=True):
            if type == "linear":
                self.conv.append(nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding))
            elif type == "nonlinear":
                self.conv.append(
                    nn.Sequential(
                        nn.Conv2d(in_ch, in_ch, kernel_size, stride=stride, padding=padding),
                        nn.SiLU(),
                        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding),
                    )
                )
            else:
                raise ValueError(f"EMASC type must be 'linear' or 'nonlinear', not {type!r}")

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """One adapted feature per input feature (a new list; the input is left as it is)."""
        if len(features) != len(self.conv):
            raise ValueError(f"EMASC has {len(self.conv)} adapters but got {len(features)} features")
        return [adapter(f) for adapter, f in zip(self.conv, features, strict=True)]


def mask_features(features: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """Zero each feature inside the inpainting mask (1 = repaint), the mask resized (nearest) to its size.

    Only the preserved region may flow through the skip connections; what is repainted comes from the latent.
    """
    out = []
    for feature in features:
        m = F.interpolate(mask.to(feature.dtype), size=feature.shape[-2:])
        out.append(feature * (1 - m))
    return out


def encoder_feature_channels(vae_config) -> list[int]:
    """Channels of the encoder features EmascAutoencoderKL collects: input, conv_in, each down block's input."""
    blocks = list(vae_config["block_out_channels"])
    inputs_of_down_blocks = [blocks[0]] + blocks[:-1]
    return [vae_config["in_channels"], blocks[0], *inputs_of_down_blocks]


def decoder_target_channels(vae_config, int_layers: list[int]) -> list[int]:
    """Channels at the decoder points where each picked feature (in `int_layers` order) is added."""
    blocks = list(vae_config["block_out_channels"])
    reversed_blocks = blocks[::-1]
    up_inputs = [reversed_blocks[0]] + reversed_blocks[:-1]
    n = len(int_layers)
    out = []
    for position, layer in enumerate(int_layers):
        r = n - 1 - position  # index in the reversed list
        if r < len(up_inputs):
            out.append(up_inputs[r])
        elif layer == 1:
            out.append(blocks[0])  # after the decoder's last norm + activation
        elif layer == 0:
            out.append(vae_config["out_channels"])  # after conv_out
        else:
            raise ValueError(f"EMASC layer {layer} has no place in the decoder")
    return out


def emasc_channels(vae_config, int_layers: list[int]) -> tuple[list[int], list[int]]:
    """EMASC's (in_channels, out_channels) for a VAE; for SD-2's VAE and [1..5] the hubconf's numbers."""
    enc = encoder_feature_channels(vae_config)
    if max(int_layers) >= len(enc):
        raise ValueError(f"EMASC layers {int_layers} exceed the encoder's {len(enc)} features")
    return [enc[i] for i in int_layers], decoder_target_channels(vae_config, int_layers)
