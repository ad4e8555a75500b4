"""tryon-lite's trainer (`vton train tryon-lite`): the compact generator from scratch on a paired dataset.

Each person is dressed in their own garment, warped by a trained warping module, so the photo is the target.
The losses compare the try-on pasted into the person (outside the agnostic region the person's own pixels) with
the photo, averaged over the agnostic region, as CP-VTON+'s try-on module is trained but without a network
that cannot be downloaded here:
- L1 (`l1_weight`) and 1 - SSIM (`ssim_weight`; an 11x11 Gaussian window of sigma 1.5, the metric's);
- the composition-mask regulariser (`mask_weight`): L1 between the mask and the warped garment's mask, so the
  garment's texture comes from the warp wherever the warp put it;
- VGG-19 perceptual (`vgg_weight`) only when the run names torchvision's file (`vgg_weights:`), else skipped.

The warped garments come with the batch where the data caches them (`TryOnSample.warped_garment`, as the VITON
recipe does on the GPU) or are computed here, without gradients, by the trained warping module named by the
`warp` option (a folder the warp trainer exported: `OUT/weights/ladi-vton-warp-vitonhd`), through the warp
backend's own networks, exactly as the warp stage serves them. The export is the backend's folder: config.json
and diffusion_pytorch_model.safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.diffusion.models.tryon_lite import CONFIG_NAME, WEIGHTS_NAME, TryOnLite, TryOnLiteConfig, paste
from training.data.sample import TryOnSample
from training.losses.vgg import perceptual_loss
from training.trainers.base import ModuleTrainer

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # K1, K2 of the metric, for images in [0, 1]


@dataclass(frozen=True)
class TryOnLiteOptions:
    channels: tuple[int, ...] = TryOnLiteConfig.channels  # one width per U-Net level
    parse_groups: tuple[tuple[int, ...], ...] = ()  # LIP labels per parse channel (none: no parse input)
    category: str = "upper_body"  # the category the generator dresses (VITON's pairs are all upper body)
    l1_weight: float = 1.0
    ssim_weight: float = 1.0
    mask_weight: float = 1.0
    vgg_weight: float = 1.0  # CP-VTON+'s; used only when the run gives the VGG file
    warp: str | None = None  # a trained warping module's folder, for data without cached warps


class TryOnLiteTrainer(ModuleTrainer):
    name = "tryon-lite"
    options_class = TryOnLiteOptions
    learning_rate = 3e-4
    optimizer_settings = {"betas": (0.9, 0.99), "weight_decay": 0.0}

    def __init__(self, config):
        super().__init__(config)
        self.warp_backend = None
        self.vgg = None

    @property
    def backend(self) -> str:
        return "tryon-lite"

    def network_config(self) -> TryOnLiteConfig:
        o = self.options
        return TryOnLiteConfig.from_dict(
            {
                "height": self.config.height,
                "width": self.config.width,
                "channels": o.channels,
                "parse_groups": o.parse_groups,
                "category": o.category,
            }
        )

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        if self.config.init == "official":
            # No published weights: "official" continues from the tryon-lite folder of the models directory.
            generator = TryOnLite.from_pretrained(self.sources.folder(self.backend))
            if (generator.config.height, generator.config.width) != (self.config.height, self.config.width):
                raise ValueError(
                    f"the tryon-lite weights were trained at {generator.config.height}x{generator.config.width}; "
                    f"set height and width to it, not {self.config.height}x{self.config.width}"
                )
        else:
            generator = TryOnLite(self.network_config())
        self.trainable = {"generator": generator.to(device)}
        if self.options.warp:
            from services.warp.backends.ladi_vton import LadiVtonWarpBackend

            self.warp_backend = LadiVtonWarpBackend.from_pretrained(Path(self.options.warp), device=device)
        if self.options.vgg_weight:
            self.vgg = perceptual_loss(self.config.vgg_weights, device, self.note)

    def warps(self, batch: TryOnSample) -> tuple[torch.Tensor, torch.Tensor]:
        """(warped garment [-1, 1], its mask {0, 1}) of the batch: cached, or by the trained warping module."""
        if batch.warped_garment is not None and batch.warped_mask is not None:
            return batch.warped_garment, batch.warped_mask
        if self.warp_backend is None:
            raise ValueError(
                "this data carries no warped garments: name a trained warping module's folder in the "
                "`warp` option (the warp trainer's OUT/weights/ladi-vton-warp-<dataset>)"
            )
        return warp_batch(self.warp_backend, batch)

    def forward(self, batch: TryOnSample):
        self._check_category(batch)
        warped, warped_mask = self.warps(batch)
        generator = self.trainable["generator"]
        parse = batch.parse if self.options.parse_groups else None
        out = generator(batch.masked_person, batch.agnostic_mask, warped, warped_mask, batch.pose_map, parse)
        return out, warped, warped_mask

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        out, _, warped_mask = self.forward(batch)
        region = batch.agnostic_mask.float()
        person = batch.person.float()
        result = paste(out.tryon, person, region)
        area = region.sum().clamp_min(1.0)
        l1 = ((result - person).abs().mean(1, keepdim=True) * region).sum() / area
        ssim = (ssim_map(result, person) * region).sum() / area
        mask = ((out.composition_mask - warped_mask.float()).abs() * region).sum() / area
        o = self.options
        losses = {"l1": l1, "ssim": ssim, "mask": mask}
        total = o.l1_weight * l1 + o.ssim_weight * (1 - ssim) + o.mask_weight * mask
        if self.vgg is not None:
            losses["vgg"] = self.vgg(result, person)
            total = total + o.vgg_weight * losses["vgg"]
        losses["loss"] = total
        return losses

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        out, warped, _ = self.forward(batch)
        result = paste(out.tryon, batch.person.float(), batch.agnostic_mask.float())
        mask = out.composition_mask * 2 - 1
        return [batch.masked_person, warped, mask, out.rendered, result, batch.person]

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        modules["generator"].save_pretrained(folder)
        return [folder / CONFIG_NAME, folder / WEIGHTS_NAME]

    def _check_category(self, batch: TryOnSample) -> None:
        other = sorted(set(batch.category) - {self.options.category})
        if other:
            raise ValueError(
                f"this run trains a {self.options.category} generator, but the data holds {', '.join(other)} "
                "pairs: choose the category's split, or set the `category` option"
            )


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W]: the SSIM of each pixel's 11x11 Gaussian window (sigma 1.5), the mean over the channels, of
    two images in [-1, 1]; the borders reflected so the map lines up with a region mask."""
    channels = a.shape[1]
    coords = torch.arange(SSIM_WINDOW, device=a.device, dtype=torch.float32) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    pad = SSIM_WINDOW // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), kernel, groups=channels)

    # Variances as differences of means cancel badly in bfloat16: float32 whatever the run's mixed precision.
    with torch.autocast(a.device.type, enabled=False):
        a, b = (a.float() + 1) / 2, (b.float() + 1) / 2
        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a**2
        var_b = blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
        den = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
        return (num / den).mean(1, keepdim=True)


@torch.no_grad()
def warp_batch(backend, batch: TryOnSample) -> tuple[torch.Tensor, torch.Tensor]:
    """The warp stage's output for a batch at its own size, computed as `LadiVtonWarpBackend.warp` does for one
    photo, in its precision whatever the run's: the TPS grid, the garment sampled with border padding and its
    mask with zeros, then the refinement U-Net, clamped. Returns (warped garment [-1, 1], its mask {0, 1}): the
    refinement network's own mask where it predicts one, else the garment mask warped by the grid."""
    device = next(backend.refinement.parameters()).device
    with torch.autocast(device.type, enabled=False):
        garment = batch.garment.to(device, torch.float32)
        masked = batch.masked_person.to(device, torch.float32)
        pose = batch.pose_map.to(device, torch.float32)
        grid = backend.sampling_grid(garment, masked, pose)
        warped = F.grid_sample(garment, grid, mode="bilinear", padding_mode="border", align_corners=False)
        cloth_mask = batch.garment_mask.to(device, torch.float32)
        mask = F.grid_sample(cloth_mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        refined, refined_mask = backend.refine(masked, pose, warped)
        return refined, ((refined_mask if refined_mask is not None else mask) > 0.5).float()
