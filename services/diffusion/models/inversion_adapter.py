"""LaDI-VTON's inversion adapter: CLIP vision features of the garment -> pseudo-word token embeddings.

The garment photo's CLIP ViT-H/14 patch features (last hidden state, [B, 257, 1280]) go through one more
CLIP encoder layer, the CLS token is normalised and an MLP maps it to `num_vstar` embeddings in the text
encoder's token space ([B, num_vstar * 1024] -> [B, num_vstar, 1024]). Those replace the '$' placeholders of
the prompt ("textual inversion" predicted in one shot instead of optimised per garment).

Parameter names follow the official module (`encoder_layers.{i}` are transformers' CLIPEncoderLayer,
`post_layernorm`, `layers.{0,3,6}` the linear layers of the MLP with GELU/Dropout between), so the released
`inversion_adapter_{dataset}.pth` loads with strict=True.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoderLayer


class InversionAdapter(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        input_dim: int = 1280,
        hidden_dim: int = 5120,
        output_dim: int = 16 * 1024,
        num_encoder_layers: int = 1,
        dropout: float = 0.5,
        # the CLIP vision encoder's layer shape (ViT-H/14), for the extra encoder layer(s)
        clip_hidden_size: int = 1280,
        clip_intermediate_size: int = 5120,
        clip_num_attention_heads: int = 16,
        clip_hidden_act: str = "gelu",
        clip_layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        clip_config = CLIPVisionConfig(
            hidden_size=clip_hidden_size,
            intermediate_size=clip_intermediate_size,
            num_attention_heads=clip_num_attention_heads,
            hidden_act=clip_hidden_act,
            layer_norm_eps=clip_layer_norm_eps,
        )
        clip_config._attn_implementation = "sdpa"
        self.encoder_layers = nn.ModuleList(
            [CLIPEncoderLayer(clip_config) for _ in range(num_encoder_layers)]
        )
        self.post_layernorm = nn.LayerNorm(clip_hidden_size, eps=clip_layer_norm_eps)
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_dim, output_dim),
        )

    @classmethod
    def for_encoders(cls, vision_config, text_hidden_size: int, num_vstar: int) -> InversionAdapter:
        """The adapter LaDI-VTON's hubconf builds for a CLIP vision config and a text encoder width."""
        return cls(
            input_dim=vision_config.hidden_size,
            hidden_dim=vision_config.hidden_size * 4,
            output_dim=text_hidden_size * num_vstar,
            num_encoder_layers=1,
            clip_hidden_size=vision_config.hidden_size,
            clip_intermediate_size=vision_config.intermediate_size,
            clip_num_attention_heads=vision_config.num_attention_heads,
            clip_hidden_act=vision_config.hidden_act,
            clip_layer_norm_eps=vision_config.layer_norm_eps,
        )

    def forward(self, clip_features: torch.Tensor) -> torch.Tensor:
        """[B, tokens, clip_hidden] CLIP last hidden state -> [B, output_dim] (flat pseudo-word embeddings)."""
        x = clip_features
        for layer in self.encoder_layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple
        x = self.post_layernorm(x[:, 0, :])
        return self.layers(x)

    def pseudo_words(self, clip_features: torch.Tensor, num_vstar: int) -> torch.Tensor:
        """[B, num_vstar, text_hidden]: the embeddings that replace the prompt's '$' placeholders."""
        flat = self(clip_features)
        return flat.reshape(flat.shape[0], num_vstar, -1)
