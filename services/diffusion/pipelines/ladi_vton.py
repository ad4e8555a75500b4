"""LaDI-VTON's try-on pipeline (Morelli et al., ACM MM 2023) in diffusers' style.

One call, from tensors to the try-on image:
1. the in-shop garment -> CLIP ViT-H/14 vision features -> inversion adapter -> `num_vstar` pseudo-word
   embeddings, spliced into "a photo of a model wearing {category} $ ... $" -> OpenCLIP ViT-H text encoder;
   the unconditional branch of classifier-free guidance encodes the empty prompt;
2. the masked person (person * (1 - mask)) and the warped garment are encoded by the VAE (sampled from
   the posterior, as the official pipeline does); the masked person's encoder features go through EMASC and
   are zeroed inside the mask;
3. the extended UNet denoises [noisy latents, mask, masked-person latents, pose map, warped-garment latents]
   (31 channels); the unconditional branch sees zeros for the pose map and the garment latents;
4. the VAE decoder, with the EMASC features added to its skip points, gives the image.
The random draws happen in the official order (garment latents, initial noise, masked-person latents) from one
generator, so a seed reproduces an image.

Value ranges taken: images in [-1, 1] [B, 3, H, W]; mask in {0, 1} [B, 1, H, W] (1 = repaint); pose map in
[0, 1] [B, 18, H, W] (one Gaussian heatmap per COCO-18 keypoint, zeros where missing). Returned: [B, 3, H, W]
in [0, 1] (or numpy [B, H, W, 3] with output_type="np").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from services.diffusion.models.emasc import mask_features
from services.diffusion.models.ladi_unet import unet_input
from services.diffusion.models.text_encoding import (
    PLACEHOLDER_TOKEN,
    encode_with_pseudo_words,
    tokenize,
    tryon_prompt,
)

# OpenAI CLIP's normalisation, which laion/CLIP-ViT-H-14-laion2B-s32B-b79K's preprocessor uses
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_processor_pixels(images: torch.Tensor) -> torch.Tensor:
    """What transformers 4.27.3's CLIPImageProcessor (the version LaDI-VTON pins) makes of float images in [0, 1]
    [B, 3, S, S] already at its size S: its resize converts a float image to 8 bits (x * 255, truncated) before
    PIL resizes it (to the same size: no change), it rescales by 1/255 once, then normalises with CLIP's mean and
    std. So CLIP sees pixels in [0, 1] quantised down to 1/255 steps: values in about [-1.8, 2.1].
    `tests/fixtures/clip_processor_4_27_3/` holds that version's own output for a few images.
    """
    x = torch.floor(images.float() * 255) / 255
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class LadiVtonPipeline(DiffusionPipeline):
    """Components: vae (EmascAutoencoderKL), text_encoder (CLIPTextModel), tokenizer (CLIPTokenizer),
    unet (31-channel UNet2DConditionModel), scheduler (DDIM or DPM-Solver++), emasc (EMASC),
    inversion_adapter (InversionAdapter), vision_encoder (CLIPVisionModelWithProjection).

    One pipeline serves concurrent calls: a call never changes a component. Each call steps its own scheduler,
    the one passed as `scheduler` or a fresh copy of `self.scheduler` (a scheduler keeps the call's timesteps and,
    for DPM-Solver++, its previous model outputs), and the pseudo-words reach the text encoder through state local
    to the calling thread (`encode_with_pseudo_words`).
    """

    model_cpu_offload_seq = "vision_encoder->inversion_adapter->text_encoder->unet->vae"

    def __init__(
        self,
        vae,
        text_encoder,
        tokenizer,
        unet,
        scheduler,
        emasc,
        inversion_adapter,
        vision_encoder,
        num_vstar: int = 16,
        emasc_int_layers: list[int] = (1, 2, 3, 4, 5),
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            emasc=emasc,
            inversion_adapter=inversion_adapter,
            vision_encoder=vision_encoder,
        )
        self.register_to_config(num_vstar=num_vstar, emasc_int_layers=list(emasc_int_layers))
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.placeholder_id = tokenizer.convert_tokens_to_ids(PLACEHOLDER_TOKEN)
        self.set_progress_bar_config(disable=True)

    # -- conditioning -------------------------------------------------------------------------------------

    def clip_pixels(self, garment: torch.Tensor) -> torch.Tensor:
        """The garment [-1, 1] -> CLIP's normalised square input, as the release prepared it (in float32 whatever
        the pipeline's precision: the release's training fed the processor float32 images).

        src/inference.py resizes (garment + 1) / 2 to CLIP's size with torchvision (bilinear, antialiased; the
        same as `F.interpolate` here), clamps it to [0, 1] and hands it to transformers 4.27.3's CLIP processor,
        whose steps on such an image are `clip_processor_pixels`.
        """
        size = self.vision_encoder.config.image_size
        x = (garment.float() + 1) / 2
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return clip_processor_pixels(x.clamp(0, 1)).to(self.vision_encoder.dtype)

    def pseudo_word_embeddings(self, garment: torch.Tensor) -> torch.Tensor:
        """[B, num_vstar, text_hidden] predicted from the garment photo."""
        features = self.vision_encoder(self.clip_pixels(garment)).last_hidden_state
        words = self.inversion_adapter.pseudo_words(
            features.to(self.inversion_adapter.dtype), self.config.num_vstar
        )
        return words

    def encode_prompt(
        self, categories: list[str], word_embeddings: torch.Tensor, do_classifier_free_guidance: bool
    ) -> torch.Tensor:
        device = self.text_encoder.device
        prompts = [tryon_prompt(c, self.config.num_vstar) for c in categories]
        ids = tokenize(self.tokenizer, prompts).to(device)
        embeds = encode_with_pseudo_words(self.text_encoder, ids, word_embeddings, self.placeholder_id)
        if do_classifier_free_guidance:
            empty = tokenize(self.tokenizer, [""] * len(categories)).to(device)
            uncond = self.text_encoder(empty).last_hidden_state
            embeds = torch.cat([uncond, embeds])
        return embeds

    def encode_latents(self, image: torch.Tensor, generator) -> torch.Tensor:
        dist, _ = self.vae.encode_with_features(image)
        return dist.sample(generator=generator) * self.vae.config.scaling_factor

    @staticmethod
    def _step_kwargs(scheduler, generator, eta: float) -> dict:
        accepted = set(inspect.signature(scheduler.step).parameters)
        kwargs = {}
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    # -- the call -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        pose_map: torch.Tensor,
        warped_garment: torch.Tensor,
        garment: torch.Tensor,
        category: str | list[str],
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pt",
        on_step: Callable[[], None] | None = None,
        scheduler: SchedulerMixin | None = None,
    ) -> torch.Tensor | np.ndarray:
        """`scheduler`: this call's own, stepped by it alone (default: a fresh one of `self.scheduler`'s class and
        config); it must not be shared with another running call."""
        batch, _, height, width = image.shape
        f = self.vae_scale_factor
        if height % f or width % f:
            raise ValueError(f"height and width must be multiples of {f}, not {height}x{width}")
        categories = [category] * batch if isinstance(category, str) else list(category)
        if len(categories) != batch:
            raise ValueError("one category per image is needed")
        if scheduler is None:
            scheduler = type(self.scheduler).from_config(self.scheduler.config)
        device = self._execution_device
        dtype = self.unet.dtype
        latent_size = (height // f, width // f)
        do_cfg = guidance_scale > 1.0
        to = {"device": device, "dtype": dtype}

        # 1. the prompt with the garment's pseudo-words
        words = self.pseudo_word_embeddings(garment.to(device))
        prompt_embeds = self.encode_prompt(categories, words, do_cfg).to(**to)

        # 2. mask, masked person, pose map at the latent size
        mask = (mask.to(**to) >= 0.5).to(dtype)
        image = image.to(**to)
        masked_image = image * (mask < 0.5).to(dtype)
        pose = F.interpolate(pose_map.to(**to), size=latent_size, mode="bilinear")

        # 3. garment latents, initial noise, masked-person latents and features (the official draw order)
        garment_latents = self.encode_latents(warped_garment.to(**to), generator)
        scheduler.set_timesteps(num_inference_steps, device=device)
        latents = randn_tensor(
            (batch, self.vae.config.latent_channels, *latent_size), generator, device, dtype
        )
        latents = latents * scheduler.init_noise_sigma
        dist, features = self.vae.encode_with_features(masked_image)
        masked_latents = dist.sample(generator=generator) * self.vae.config.scaling_factor
        int_layers = list(self.config.emasc_int_layers)
        skips = self.emasc([features[i] for i in int_layers])
        skips = mask_features(skips, mask)
        mask_small = F.interpolate(mask, size=latent_size)

        # 4. the unconditional branch sees no pose and no garment
        if do_cfg:
            mask_small = torch.cat([mask_small] * 2)
            masked_latents = torch.cat([masked_latents] * 2)
            pose = torch.cat([torch.zeros_like(pose), pose])
            garment_latents = torch.cat([torch.zeros_like(garment_latents), garment_latents])

        # 5. denoise
        step_kwargs = self._step_kwargs(scheduler, generator, eta)
        for t in self.progress_bar(scheduler.timesteps):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = scheduler.scale_model_input(model_in, t)
            model_in = unet_input(model_in, mask_small, masked_latents, pose, garment_latents)
            noise = self.unet(model_in, t, encoder_hidden_states=prompt_embeds).sample
            if do_cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            latents = scheduler.step(noise, t, latents, **step_kwargs).prev_sample.to(dtype)
            if on_step is not None:  # lets the service stop a cancelled or expired call between steps
                on_step()

        # 6. decode with EMASC
        decoded = self.vae.decode_with_features(latents / self.vae.config.scaling_factor, skips, int_layers)
        out = (decoded.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "np":
            return out.permute(0, 2, 3, 1).cpu().numpy()
        return out
