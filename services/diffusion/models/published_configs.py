"""The published sizes of LaDI-VTON's networks, for building them without any file (benchmarks).

Loading from a models folder reads the configs shipped with the weights instead; these dicts are the same
values, written down from the release's sources: stabilityai/stable-diffusion-2-inpainting (unet, vae,
text_encoder, scheduler), laion/CLIP-ViT-H-14-laion2B-s32B-b79K (vision tower) and LaDI-VTON's hubconf
(EMASC channels, inversion adapter sizes, 31 UNet input channels).
"""

from __future__ import annotations

SD2_INPAINTING_UNET: dict = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 9,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}

SD2_VAE: dict = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}

# OpenCLIP ViT-H/14 text tower as SD-2 ships it: 23 of the 24 layers (SD-2 conditions on the penultimate one).
SD2_TEXT_ENCODER: dict = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "projection_dim": 512,
    "layer_norm_eps": 1e-05,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

SD2_SCHEDULER: dict = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

CLIP_VIT_H_14_VISION: dict = {
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 16,
    "num_hidden_layers": 32,
    "image_size": 224,
    "patch_size": 14,
    "layer_norm_eps": 1e-05,
    "projection_dim": 1024,
}

# The text tower of the same CLIP checkpoint (stored in its file, unused by LaDI-VTON).
CLIP_VIT_H_14_TEXT: dict = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "projection_dim": 1024,
    "layer_norm_eps": 1e-05,
}
CLIP_VIT_H_14_PROJECTION_DIM = 1024

# LaDI-VTON's own choices (hubconf.py and src/inference.py of miccunifi/ladi-vton).
NUM_VSTAR = 16
EMASC_INT_LAYERS = [1, 2, 3, 4, 5]
EMASC_TYPE = "nonlinear"
