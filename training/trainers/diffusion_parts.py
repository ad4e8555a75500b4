"""What the EMASC, inversion-adapter and try-on-UNet trainers share: the diffusion backend's networks and the
latent-diffusion training step's pieces (LaDI-VTON's src/train_*.py, after diffusers' train_text_to_image.py).

The networks come from the diffusion backend's own loader (training/trainers/sources.py), so training reads
exactly what the service serves; they are loaded on the CPU and only the ones a trainer uses go to its device.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from services.diffusion.models.text_encoding import encode_with_pseudo_words, tokenize, tryon_prompt
from training.trainers.base import ModuleTrainer
from training.trainers.common import cpu_state_dict
from vton.runtime.errors import WeightsMissing


def frozen(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A helper network that is used but not trained: on `device` in `dtype`, eval mode, no parameter gradients
    (gradients still flow through it to the trained network)."""
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


def noise_scheduler(scheduler_config: dict) -> DDPMScheduler:
    """The training noise schedule: SD-2's, as a DDPM scheduler (what the reference scripts train with)."""
    return DDPMScheduler.from_config(scheduler_config)


def add_noise(
    scheduler: DDPMScheduler, latents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, noise, timesteps): one uniformly drawn timestep per sample, epsilon target."""
    noise = torch.randn_like(latents)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
    )
    return scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def latents_of(vae, image: torch.Tensor) -> torch.Tensor:
    """A posterior sample of `image` scaled by the VAE's factor (no gradient: the VAE is frozen)."""
    with torch.no_grad():
        dist, _ = vae.encode_with_features(image.to(vae.dtype))
        return dist.sample() * vae.config.scaling_factor


def garment_words(pipeline, garment: torch.Tensor) -> torch.Tensor:
    """[B, tokens, hidden] CLIP vision features of the garment photo, prepared as the inference pipeline does."""
    with torch.no_grad():
        return pipeline.vision_encoder(pipeline.clip_pixels(garment)).last_hidden_state


def prompt_embeddings(pipeline, categories: list[str], words: torch.Tensor, keep: torch.Tensor | None = None):
    """The text encoder's states for "a photo of a model wearing {category} $ ... $" with `words` at the '$'
    tokens; rows where `keep` is False get the empty prompt instead (classifier-free-guidance dropout)."""
    device = words.device
    num_vstar = words.shape[1]
    ids = tokenize(pipeline.tokenizer, [tryon_prompt(c, num_vstar) for c in categories]).to(device)
    states = encode_with_pseudo_words(pipeline.text_encoder, ids, words, pipeline.placeholder_id)
    if keep is not None and not bool(keep.all()):
        empty = tokenize(pipeline.tokenizer, [""] * len(categories)).to(device)
        uncond = pipeline.text_encoder(empty).last_hidden_state.to(states.dtype)
        states = torch.where(keep[:, None, None], states, uncond)
    return states


def load_sd2_inpainting_unet(folder: Path) -> UNet2DConditionModel:
    """SD-2-inpainting's own 9-channel UNet (what the inversion adapter is trained against, and what the try-on
    UNet is widened from when trained from scratch), loaded strictly from the backend folder's SD-2 copy."""
    from services.diffusion.backends.ladi_vton import SD_DIR

    unet_dir = Path(folder) / SD_DIR / "unet"
    names = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    present = [unet_dir / n for n in names if (unet_dir / n).is_file()]
    if not present:
        raise WeightsMissing(
            f"{unet_dir} holds no SD-2-inpainting UNet weights ({' or '.join(names)}): get "
            "hf:stabilityai/stable-diffusion-2-inpainting#unet/diffusion_pytorch_model.bin into that folder"
        )
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(unet_dir)))
    if present[0].suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(present[0]))
    else:
        state = torch.load(present[0], map_location="cpu", weights_only=True)
    unet.load_state_dict(state, strict=True)
    return unet


def link_other_files(official: Path | None, folder: Path) -> None:
    """Complete an export folder with symbolic links to the official folder's other files, so it is a whole
    backend folder the service loads; the trained files themselves are real files (the ones to upload)."""
    if official is None:  # random networks (benchmarks): there is nothing to link to
        return
    for source in official.rglob("*"):
        if source.is_dir():
            continue
        target = folder / source.relative_to(official)
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source.resolve(), target)


PIPELINE_NETWORKS = ("vae", "text_encoder", "vision_encoder", "inversion_adapter", "unet", "emasc")


class DiffusionModuleTrainer(ModuleTrainer):
    """A trainer of one of the diffusion backend's networks: its folder, its networks, its export."""

    learning_rate = 1e-5  # LaDI-VTON's, for every diffusion module

    @property
    def backend(self) -> str:
        return f"ladi-vton-{self.config.dataset}"

    def load_pipeline(
        self, device: torch.device, weight_dtype: torch.dtype, frozen_names: tuple[str, ...], trained: str
    ):
        """The backend's pipeline with `frozen_names` moved to `device` and frozen, the networks neither frozen nor
        `trained` kept off it (on the CPU); sets `pipeline`, `num_vstar`, `scheduler` (the training noise schedule)
        and `official` (the folder the export links to)."""
        backend = self.sources.diffusion()
        self.official = self.sources.folder(self.backend)
        self.pipeline = backend.pipeline
        for name in PIPELINE_NETWORKS:
            if name in frozen_names:
                frozen(getattr(self.pipeline, name), device, weight_dtype)
            elif name != trained:
                getattr(self.pipeline, name).to("cpu")
        self.num_vstar = self.pipeline.config.num_vstar
        self.scheduler = noise_scheduler(backend.scheduler_config)
        return self.pipeline

    def export_state(self, module: torch.nn.Module, name: str, folder: Path) -> list[Path]:
        """`module`'s state dict as `{name}_{dataset}.pth` (the release's plain state-dict file), the backend's other
        files linked beside it."""
        path = folder / f"{name}_{self.config.dataset}.pth"
        torch.save(cpu_state_dict(module), path)
        link_other_files(self.official, folder)
        return [path]
