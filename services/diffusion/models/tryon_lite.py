"""tryon-lite: a compact try-on generator that learns from scratch, CP-VTON+'s try-on module in a modern U-Net.

Inputs at the trained size (256x192 or 512x384), channels-first, batched:
- `masked_person` [3] in [-1, 1]: the person with the region to repaint at 0 (LaDI-VTON's `im_mask`);
- `agnostic_mask` [1] in {0, 1}: 1 = the region to repaint;
- `warped_garment` [3] in [-1, 1] and `warped_mask` [1] in [0, 1]: the warp stage's output;
- `pose_map` [18] in [0, 1]: the pose stage's Gaussian keypoint maps;
- `parse` [H, W] LIP labels, only when the config groups some (`parse_groups`): each group becomes one channel,
  kept outside the agnostic region only (inside it the labels trace the old garment, which would teach the
  network to copy a shape it never sees at serving time).

The U-Net renders a person `rendered` and a composition mask `m`; the try-on is `m * warped + (1 - m) * rendered`
(CP-VTON+): the garment's texture comes through the warp unchanged where the mask says so, and the network only
paints what the warp cannot give (arms, skin, the neckline, seams). `paste` puts it into the person: outside the
agnostic region the person's own pixels.

Files (diffusers' convention): `config.json` (the `TryOnLiteConfig` fields plus `_class_name`) and
`diffusion_pytorch_model.safetensors` (the state dict). Plain torch and safetensors: the training scripts run it on
machines without the serving stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from vton.runtime.checkpoints import NetworkConfig
from vton.runtime.vocab import CATEGORIES

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# The inputs every configuration takes, in the order they are stacked, with their channels.
INPUT_CHANNELS = {
    "masked_person": 3,
    "agnostic_mask": 1,
    "warped_garment": 3,
    "warped_mask": 1,
    "pose_map": 18,
}
BASE_INPUT_CHANNELS = sum(INPUT_CHANNELS.values())


@dataclass(frozen=True)
class TryOnLiteConfig(NetworkConfig):
    """The network's sizes and the resolution it was trained at (height, width)."""

    height: int = 256
    width: int = 192
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # one per level; the first is full resolution
    norm_groups: int = 8
    parse_groups: tuple[tuple[int, ...], ...] = field(default_factory=tuple)  # LIP labels per parse channel
    # The garment category it dresses: the network has no category input, so a generator learns one (VITON's
    # pairs are all upper body) and the backend refuses the others.
    category: str = "upper_body"

    def __post_init__(self) -> None:
        down = 2 ** (len(self.channels) - 1)
        if len(self.channels) < 2:
            raise ValueError("a U-Net needs at least two levels (channels has one entry per level)")
        if self.height % down or self.width % down:
            raise ValueError(
                f"height and width must be multiples of {down} for {len(self.channels)} levels, "
                f"got {self.height}x{self.width}"
            )
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, not {self.category!r}")
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"every level's channels must be a multiple of norm_groups={self.norm_groups}")

    @property
    def in_channels(self) -> int:
        return BASE_INPUT_CHANNELS + len(self.parse_groups)

    def to_dict(self) -> dict:
        return {"_class_name": "TryOnLite", **super().to_dict()}


@dataclass
class TryOnLiteOutput:
    tryon: torch.Tensor  # [B, 3, H, W] in [-1, 1]: m * warped + (1 - m) * rendered
    rendered: torch.Tensor  # [B, 3, H, W] in [-1, 1]: what the network paints
    composition_mask: torch.Tensor  # [B, 1, H, W] in [0, 1]: where the warped garment is taken as it is


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a residual path (a 1x1 conv where the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TryOnLite(nn.Module):
    """The U-Net: a stem, one residual block and a stride-2 convolution per level down, one residual block at the
    bottom, nearest upsampling, the skip concatenated and one residual block per level up, and a head giving 3
    colour channels and a mask logit. The default sizes: 7.2M parameters, 14 GMAC at 256x192."""

    def __init__(self, config: TryOnLiteConfig | None = None):
        super().__init__()
        self.config = cfg = config or TryOnLiteConfig()
        ch, g = cfg.channels, cfg.norm_groups
        self.stem = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(ResBlock(ch[i], ch[i], g) for i in range(len(ch) - 1))
        self.downsamples = nn.ModuleList(
            nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1) for i in range(len(ch) - 1)
        )
        self.middle = ResBlock(ch[-1], ch[-1], g)
        self.up_convs = nn.ModuleList(
            nn.Conv2d(ch[i + 1], ch[i], 3, padding=1) for i in reversed(range(len(ch) - 1))
        )
        self.up_blocks = nn.ModuleList(ResBlock(2 * ch[i], ch[i], g) for i in reversed(range(len(ch) - 1)))
        self.head_norm = nn.GroupNorm(g, ch[0])
        self.head = nn.Conv2d(ch[0], 4, 3, padding=1)
        # A near-zero head: training starts from m = 0.5 over a grey rendering, so the first gradients reach the
        # rendering and the mask alike.
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        masked_person: torch.Tensor,
        agnostic_mask: torch.Tensor,
        warped_garment: torch.Tensor,
        warped_mask: torch.Tensor,
        pose_map: torch.Tensor,
        parse: torch.Tensor | None = None,
    ) -> TryOnLiteOutput:
        parts = {
            "masked_person": masked_person,
            "agnostic_mask": agnostic_mask,
            "warped_garment": warped_garment,
            "warped_mask": warped_mask,
            "pose_map": pose_map,
        }
        x = self.stack_inputs(parts, parse)
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples, strict=True):
            h = block(h)
            skips.append(h)
            h = down(h)
        h = self.middle(h)
        for conv, block in zip(self.up_convs, self.up_blocks, strict=True):
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = block(torch.cat([h, skips.pop()], 1))
        out = self.head(F.silu(self.head_norm(h))).float()
        rendered = torch.tanh(out[:, :3])
        mask = torch.sigmoid(out[:, 3:4])
        warped = warped_garment.float()
        return TryOnLiteOutput(mask * warped + (1 - mask) * rendered, rendered, mask)

    def stack_inputs(self, parts: dict[str, torch.Tensor], parse: torch.Tensor | None) -> torch.Tensor:
        """The input tensor [B, in_channels, H, W], checking every part's shape against the config."""
        cfg = self.config
        for name, channels in INPUT_CHANNELS.items():
            tensor = parts[name]
            if (
                tensor.ndim != 4
                or tensor.shape[1] != channels
                or tuple(tensor.shape[2:]) != (cfg.height, cfg.width)
            ):
                raise ValueError(
                    f"{name} must be [B, {channels}, {cfg.height}, {cfg.width}], got {tuple(tensor.shape)}"
                )
        tensors = [parts[name] for name in INPUT_CHANNELS]
        if cfg.parse_groups:
            if parse is None:
                raise ValueError("this tryon-lite configuration takes the parse (parse_groups is set)")
            tensors.append(parse_channels(parse, parts["agnostic_mask"], cfg.parse_groups))
        dtype = self.stem.weight.dtype
        return torch.cat([t.to(dtype) for t in tensors], 1)

    # -- files -------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write config.json and diffusion_pytorch_model.safetensors (float32) into `folder`; returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().float().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> TryOnLite:
        """The network saved by `save_pretrained` in `folder`, in eval mode on `device` in `dtype`."""
        folder = Path(folder)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{folder / name} is missing (a tryon-lite folder holds {CONFIG_NAME} and {WEIGHTS_NAME})"
                )
        config = TryOnLiteConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
        return model.to(device=device, dtype=dtype).eval()


def parse_channels(
    parse: torch.Tensor, agnostic_mask: torch.Tensor, groups: tuple[tuple[int, ...], ...]
) -> torch.Tensor:
    """[B, len(groups), H, W]: 1 where a pixel's LIP label is in the group, outside the agnostic region only."""
    if parse.ndim != 3:
        raise ValueError(f"parse must be [B, H, W] labels, got {tuple(parse.shape)}")
    keep = 1.0 - agnostic_mask[:, 0].float()
    channels = [torch.isin(parse, torch.tensor(g, device=parse.device)).float() * keep for g in groups]
    return torch.stack(channels, 1)


def paste(tryon: torch.Tensor, person: torch.Tensor, agnostic_mask: torch.Tensor) -> torch.Tensor:
    """The try-on inside the agnostic region, the person outside it (the masked person there is the same)."""
    return agnostic_mask * tryon + (1 - agnostic_mask) * person
