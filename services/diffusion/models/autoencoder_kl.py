"""SD-2's VAE with the two extra paths LaDI-VTON needs: encoder features out, EMASC features into the decoder.

`EmascAutoencoderKL` subclasses diffusers' AutoencoderKL without adding or renaming any parameter, so the
stable-diffusion-2-inpainting `vae/` folder loads unchanged (diffusers itself converts that file's old
attention names). The two methods below walk the same submodules as diffusers' Encoder/Decoder forward,
collecting or injecting features at the points LaDI-VTON's modified AutoencoderKL uses:

- encoder features: [the input image, conv_in's output, the input of each down block], so for SD-2
  (block widths 128, 256, 512, 512) the widths are [3, 128, 128, 128, 256, 512] at H, H, H, H/2, H/4, H/8.
- decoder: the picked features, reversed, are added to the inputs of the up blocks in order; layer 1's
  feature is added after the last norm+activation and layer 0's after conv_out (see `emasc.py`).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution


class EmascAutoencoderKL(AutoencoderKL):
    def encode_with_features(
        self, x: torch.Tensor
    ) -> tuple[DiagonalGaussianDistribution, list[torch.Tensor]]:
        """The latent distribution of `x` (as `encode`) and the encoder's intermediate features."""
        enc = self.encoder
        features = [x]
        sample = enc.conv_in(x)
        features.append(sample)
        for down_block in enc.down_blocks:
            features.append(sample)
            sample = down_block(sample)
        sample = enc.mid_block(sample)
        sample = enc.conv_norm_out(sample)
        sample = enc.conv_act(sample)
        sample = enc.conv_out(sample)
        if self.quant_conv is not None:
            sample = self.quant_conv(sample)
        return DiagonalGaussianDistribution(sample), features

    def decode_with_features(
        self, z: torch.Tensor, features: list[torch.Tensor] | None = None, int_layers: list[int] | None = None
    ) -> torch.Tensor:
        """Decode latents `z` (already divided by the scaling factor), adding EMASC `features` on the way.

        `features` are in `int_layers` order (as EMASC returns them); without features this equals `decode`.
        """
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        dec = self.decoder
        sample = dec.conv_in(z)
        sample = dec.mid_block(sample, None)
        sample = sample.to(next(iter(dec.up_blocks.parameters())).dtype)
        skips = list(reversed(features)) if features else []
        layers = list(int_layers or [])
        for i, up_block in enumerate(dec.up_blocks):
            if i < len(skips):
                sample = sample + skips[i]
            sample = up_block(sample, None)
        sample = dec.conv_norm_out(sample)
        sample = dec.conv_act(sample)
        if skips and 1 in layers:
            sample = sample + skips[len(layers) - 1 - layers.index(1)]
        sample = dec.conv_out(sample)
        if skips and 0 in layers:
            sample = sample + skips[len(layers) - 1 - layers.index(0)]
        return sample
