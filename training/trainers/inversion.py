"""The textual-inversion adapter (LaDI-VTON's src/train_inversion_adapter.py).

The frozen CLIP vision encoder reads the garment photo (prepared as the inference pipeline prepares it); the
adapter predicts `num_vstar` pseudo-word embeddings that replace the '$' tokens of "a photo of a model wearing
{category} $ ... $"; the frozen text encoder encodes that prompt, and SD-2-inpainting's own frozen UNet (9 input
channels: noisy latents, mask, masked-person latents) predicts the noise of the person's latents at a random
timestep. Loss: MSE to the noise, back-propagated through the UNet and the text encoder into the adapter only.
AdamW, lr 1e-5. Starts from the release's `inversion_adapter_{dataset}.pth` or from a fresh adapter (as the
paper). Needs SD-2-inpainting's UNet weights in the backend folder (`stable-diffusion-2-inpainting/unet/`), which
the try-on itself does not. Export: `inversion_adapter_{dataset}.pth`, the other files linked.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.diffusion.models.inversion_adapter import InversionAdapter
from training.config import ConfigError
from training.data.sample import TryOnSample
from training.trainers.diffusion_parts import (
    DiffusionModuleTrainer,
    add_noise,
    frozen,
    garment_words,
    latents_of,
    prompt_embeddings,
)


class InversionTrainer(DiffusionModuleTrainer):
    name = "inversion"

    def __init__(self, config):
        super().__init__(config)
        if config.options:
            raise ConfigError(f"the inversion trainer takes no options, got {', '.join(config.options)}")

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        helpers = ("vae", "text_encoder", "vision_encoder")
        pipeline = self.load_pipeline(device, weight_dtype, frozen_names=helpers, trained="inversion_adapter")
        self.unet = frozen(self.sources.sd2_inpainting_unet(), device, weight_dtype)
        adapter = pipeline.inversion_adapter
        if self.config.init == "scratch":
            adapter = InversionAdapter.from_config(adapter.config)
        self.trainable = {"adapter": adapter.to(device, torch.float32)}

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        vae = self.pipeline.vae
        latents = latents_of(vae, batch.person)
        noisy, noise, timesteps = add_noise(self.scheduler, latents)
        mask = F.interpolate(batch.agnostic_mask, size=latents.shape[-2:])
        masked_latents = latents_of(vae, batch.masked_person)
        features = garment_words(self.pipeline, batch.garment)
        words = self.trainable["adapter"](features).reshape(latents.shape[0], self.num_vstar, -1)
        states = prompt_embeddings(self.pipeline, batch.category, words)
        model_in = torch.cat([noisy, mask.to(noisy.dtype), masked_latents], 1)
        prediction = self.unet(model_in.to(self.unet.dtype), timesteps, states.to(self.unet.dtype)).sample
        mse = F.mse_loss(prediction.float(), noise.float())
        return {"loss": mse, "mse": mse}

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        return self.export_state(modules["adapter"], "inversion_adapter", folder)
