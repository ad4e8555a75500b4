"""EMASC (LaDI-VTON's src/train_emasc.py): the skip connections from the masked person's VAE encoder features.

The frozen VAE encodes the person (a posterior sample of its latents) and the masked person (its intermediate
features); EMASC adapts the features at `emasc_int_layers`, they are zeroed inside the inpainting mask, and the
frozen decoder reconstructs the person from the person's latents plus those features. Loss: L1 to the person plus
`vgg_weight` (0.5) times the VGG loss (skipped without the VGG file). AdamW, lr 1e-5. Starts from the release's
`emasc_{dataset}.pth` or from a fresh EMASC (the paper trains it from scratch). Export: `emasc_{dataset}.pth`
(a plain state dict, as released) in the diffusion backend's folder, the other files linked from the official one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.diffusion.models.emasc import EMASC, mask_features
from training.config import trainer_options
from training.data.sample import TryOnSample
from training.losses.vgg import perceptual_loss
from training.trainers.diffusion_parts import DiffusionModuleTrainer


@dataclass(frozen=True)
class EmascOptions:
    vgg_weight: float = 0.5


class EmascTrainer(DiffusionModuleTrainer):
    name = "emasc"

    def __init__(self, config):
        super().__init__(config)
        self.options = trainer_options(EmascOptions, config.options)

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        pipeline = self.load_pipeline(device, weight_dtype, frozen_names=("vae",), trained="emasc")
        self.int_layers = list(pipeline.config.emasc_int_layers)
        self.vae = pipeline.vae
        emasc = pipeline.emasc
        if self.config.init == "scratch":
            emasc = EMASC.from_config(emasc.config)  # same sizes, fresh weights
        self.trainable = {"emasc": emasc.to(device, torch.float32)}
        self.vgg = (
            perceptual_loss(self.config.vgg_weights, device, self.note) if self.options.vgg_weight else None
        )

    def reconstruct(self, batch: TryOnSample) -> torch.Tensor:
        """The person decoded from its own latents with EMASC features of the masked person."""
        with torch.no_grad():
            dist, _ = self.vae.encode_with_features(batch.person.to(self.vae.dtype))
            latents = dist.sample()
            _, features = self.vae.encode_with_features(batch.masked_person.to(self.vae.dtype))
            features = [features[i] for i in self.int_layers]
        skips = mask_features(self.trainable["emasc"](features), batch.agnostic_mask)
        return self.vae.decode_with_features(latents, skips, self.int_layers)

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        reconstructed = self.reconstruct(batch).float()
        losses = {"l1": F.l1_loss(reconstructed, batch.person)}
        total = losses["l1"]
        if self.vgg is not None:
            losses["vgg"] = self.vgg(reconstructed, batch.person)
            total = total + self.options.vgg_weight * losses["vgg"]
        losses["loss"] = total
        return losses

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        return [batch.person, batch.masked_person, self.reconstruct(batch).float().clamp(-1, 1)]

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        return self.export_state(modules["emasc"], "emasc", folder)
