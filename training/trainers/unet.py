"""LaDI-VTON's try-on UNet (src/train_vto.py): SD-2-inpainting's UNet with 31 input channels.

Per batch: the person's latents are noised at a random timestep; the UNet sees [noisy latents, mask, masked-person
latents, pose map (bilinear to the latent size), warped-garment latents] and the prompt with the garment's
pseudo-words (frozen CLIP vision encoder + frozen inversion adapter + frozen text encoder), and predicts the noise
(MSE). As the reference, each sample independently loses its text (empty prompt), its pose map and its garment
latents with probability `uncond_fraction` (0.2), which is what classifier-free guidance needs at inference. The
warped garment is computed on the fly by the frozen warping module of `ladi-vton-warp-<dataset>` (the reference
precomputes the same with train_tps.py's extraction). AdamW, lr 1e-5.

Starts from the release's `unet_{dataset}.pth`, or ("scratch", the paper's start) from SD-2-inpainting's own UNet
with conv_in widened to 31 channels: the 9 original input channels' weights copied, the 22 new ones zero. Export:
`unet_{dataset}.pth` (a plain state dict, as released), the other files linked from the official folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.diffusion.models.ladi_unet import build_extended_unet, unet_input
from training.data.sample import TryOnSample
from training.trainers.diffusion_parts import (
    DiffusionModuleTrainer,
    frozen,
    garment_words,
    latents_of,
    noised_inpainting,
    prompt_embeddings,
)
from training.trainers.warp import warp_garment


@dataclass(frozen=True)
class UnetOptions:
    uncond_fraction: float = 0.2
    gradient_checkpointing: bool = False  # trade compute for memory at the published size


def widen_inpainting_unet(unet: nn.Module) -> nn.Module:
    """SD-2-inpainting's UNet as LaDI-VTON's 31-channel one: conv_in's 9 input channels kept, new ones zero."""
    config = dict(unet.config)
    extended = build_extended_unet(config)
    state = unet.state_dict()
    new_weight = torch.zeros_like(extended.conv_in.weight)
    new_weight[:, : unet.conv_in.in_channels] = state["conv_in.weight"]
    state["conv_in.weight"] = new_weight
    extended.load_state_dict(state, strict=True)
    return extended


class UnetTrainer(DiffusionModuleTrainer):
    name = "unet"
    options_class = UnetOptions

    def __init__(self, config):
        super().__init__(config)
        if not 0.0 <= self.options.uncond_fraction < 1.0:
            raise ValueError(f"uncond_fraction must be in [0, 1), not {self.options.uncond_fraction}")

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        helpers = ("vae", "text_encoder", "vision_encoder", "inversion_adapter")
        pipeline = self.load_pipeline(device, weight_dtype, frozen_names=helpers, trained="unet")
        tps, refinement = self.sources.warping_module()
        self.tps = frozen(tps, device, torch.float32)  # the TPS system is solved in float32, as at inference
        self.refinement = frozen(refinement, device, weight_dtype)
        unet = pipeline.unet
        if self.config.init == "scratch":
            unet = widen_inpainting_unet(self.sources.sd2_inpainting_unet())
        if self.options.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.trainable = {"unet": unet.to(device, torch.float32)}

    def warped_garment(self, batch: TryOnSample) -> torch.Tensor:
        with torch.no_grad():
            refined, _ = warp_garment(
                self.tps, self.refinement, batch.garment, batch.masked_person, batch.pose_map
            )
            return refined[:, :3].clamp(-1, 1)  # a self-trained network's fourth channel is its mask

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        step = noised_inpainting(self.pipeline.vae, self.scheduler, batch)
        noisy = step.noisy
        pose = F.interpolate(batch.pose_map, size=noisy.shape[-2:], mode="bilinear")
        features = garment_words(self.pipeline, batch.garment)
        with torch.no_grad():
            words = self.pipeline.inversion_adapter.pseudo_words(features, self.num_vstar)
        garment_latents = latents_of(self.pipeline.vae, self.warped_garment(batch))

        # classifier-free-guidance dropout, drawn per sample and per input as the reference does
        batch_size = noisy.shape[0]
        fraction = self.options.uncond_fraction
        keep_text = torch.rand(batch_size, device=noisy.device) >= fraction
        keep_garment = torch.rand(batch_size, device=noisy.device) >= fraction
        keep_pose = torch.rand(batch_size, device=noisy.device) >= fraction
        pose = pose * keep_pose[:, None, None, None]
        garment_latents = garment_latents * keep_garment[:, None, None, None]
        with torch.no_grad():
            states = prompt_embeddings(self.pipeline, batch.category, words, keep_text)

        unet = self.trainable["unet"]
        model_in = unet_input(noisy, step.mask, step.masked_latents, pose.to(noisy.dtype), garment_latents)
        prediction = unet(model_in, step.timesteps, encoder_hidden_states=states).sample
        mse = F.mse_loss(prediction.float(), step.noise.float())
        return {"loss": mse, "mse": mse}

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        return [batch.person, batch.masked_person, batch.garment, self.warped_garment(batch)]

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        return self.export_state(modules["unet"], "unet", folder)
