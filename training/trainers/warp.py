"""LaDI-VTON's warping module (src/train_tps.py): the TPS regression network, then the refinement U-Net.

Two phases in one run, as the reference trains them one after the other:
1. steps [0, tps_steps): the TPS network at its own 256x192, on the garment and [masked person, pose map]; the
   garment warped by its grid is compared (L1) with the person's own garment on white (`im_cloth`), plus
   `const_weight` times the grid regularisers (rx + ry + cx + cy + rg + cg), plus `mask_weight` times the L1 of the
   garment's mask warped by the same grid against the person's garment region (not in the reference, whose L1 on
   pixels alone lets a white garment on a white target, or one the grid pushes out of the frame, cost little:
   from scratch on VITON that loss alone left 168 of 2,032 test warps empty);
2. the remaining steps: the TPS network frozen, its grid resized to the working size warps the garment, and the
   refinement U-Net on [masked person, pose map, warped garment] is trained with `l1_weight` L1 +
   `vgg_weight` VGG (skipped without the VGG file); a network given a fourth output channel
   (`refinement: {out_channels: 4}`, not in the reference) also learns the garment's mask on the person, with a
   binary cross-entropy against the person's garment region, and the warp stage returns that mask.
Adam with betas (0.5, 0.99) and lr 1e-4, as the reference. Starts from the official `warping_{dataset}.pth` or, as
the paper's own training does, from scratch. The export is that same file ({"tps", "refinement"}) plus
vton_config.json with the network sizes and the working size it trained at (the backend's default size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.warp.backends.ladi_vton import CONFIG_FILE, checkpoint_name
from services.warp.models import ConvNetTPS, RefinementConfig, RefinementUNet, TPSConfig
from services.warp.models.tps_regression import predict_grid
from training.data.sample import TryOnSample
from training.losses.vgg import perceptual_loss
from training.trainers.base import ModuleTrainer
from training.trainers.common import cpu_state_dict, garment_region, person_garment


@dataclass(frozen=True)
class WarpOptions:
    tps_steps: int | None = None  # steps of phase 1; default: half the run
    const_weight: float = 0.01
    mask_weight: float = 0.0  # the reference's loss; from scratch, 1.0 (see the module's docstring)
    l1_weight: float = 1.0
    vgg_weight: float = 0.25
    tps: dict = field(default_factory=dict)  # TPSConfig sizes when starting from scratch (default: published)
    refinement: dict = field(default_factory=dict)  # RefinementConfig sizes when starting from scratch


class WarpTrainer(ModuleTrainer):
    name = "warp"
    options_class = WarpOptions
    learning_rate = 1e-4
    optimizer_settings = {"betas": (0.5, 0.99), "weight_decay": 0.0}

    @property
    def tps_steps(self) -> int:
        """The steps of phase 1: the option's, or half the run."""
        return self.options.tps_steps if self.options.tps_steps is not None else self.config.steps // 2

    @property
    def backend(self) -> str:
        return f"ladi-vton-warp-{self.config.dataset}"

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        if self.config.init == "official":
            tps, refinement = self.sources.warping_module()
        else:
            tps = ConvNetTPS(TPSConfig.from_dict(self.options.tps))
            refinement = RefinementUNet(RefinementConfig.from_dict(self.options.refinement))
        self.trainable = {"tps": tps.to(device), "refinement": refinement.to(device)}
        self.vgg = (
            perceptual_loss(self.config.vgg_weights, device, self.note) if self.options.vgg_weight else None
        )
        self.note(
            f"phase 1 trains the TPS network for {self.tps_steps} steps, phase 2 the refinement U-Net for "
            f"{max(self.config.steps - self.tps_steps, 0)}"
        )

    def in_tps_phase(self) -> bool:
        return self.step < self.tps_steps

    def train_mode(self) -> None:
        tps_phase = self.in_tps_phase()
        self.trainable["tps"].train(tps_phase)  # frozen in phase 2: its batch norms keep their statistics
        self.trainable["refinement"].train(not tps_phase)

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        self.train_mode()  # the phase may have changed since the last step
        region = garment_region(batch.parse, batch.category)
        target = person_garment(batch.person, region)
        body = torch.cat([batch.masked_person, batch.pose_map], 1)
        if self.in_tps_phase():
            return self._tps_loss(batch.garment, batch.garment_mask, body, target, region)
        return self._refinement_loss(batch, target, region)

    def _tps_loss(
        self,
        cloth: torch.Tensor,
        cloth_mask: torch.Tensor,
        body: torch.Tensor,
        target: torch.Tensor,
        region: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        tps = self.trainable["tps"]
        low = (self.tps_size[0], self.tps_size[1])

        def resized(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x.float(), size=low, mode="bilinear", antialias=True, align_corners=False)

        low_cloth = resized(cloth)
        with torch.autocast(cloth.device.type, enabled=False):  # the TPS geometry in float32, as at inference
            grid, _, regularisers = tps(low_cloth, resized(body), with_regularisers=True)
            warped = F.grid_sample(low_cloth, grid, padding_mode="border", align_corners=False)
            l1 = F.l1_loss(warped, resized(target))
            const = regularisers.total()
            losses = {"l1": l1, "tps_const": const}
            total = l1 + self.options.const_weight * const
            if self.options.mask_weight:
                # zeros outside, as the warp stage samples the mask
                warped_mask = F.grid_sample(
                    resized(cloth_mask), grid, padding_mode="zeros", align_corners=False
                )
                losses["mask_l1"] = F.l1_loss(warped_mask, resized(region))
                total = total + self.options.mask_weight * losses["mask_l1"]
        return {"loss": total, **losses}

    def _refinement_loss(self, batch: TryOnSample, target: torch.Tensor, region: torch.Tensor) -> dict:
        output, _ = self.warp(batch.garment, batch.masked_person, batch.pose_map)
        refined = output[:, :3]
        l1 = F.l1_loss(refined, target)
        losses = {"l1": l1}
        total = self.options.l1_weight * l1
        if (
            output.shape[1] > 3
        ):  # a fourth channel: the garment's mask (services/warp/backends/ladi_vton.py: why)
            losses["mask_bce"] = F.binary_cross_entropy_with_logits(output[:, 3:4].float(), region.float())
            total = total + losses["mask_bce"]  # the channel's only loss
        if self.vgg is not None:
            losses["vgg"] = self.vgg(refined.float(), target.float())
            total = total + self.options.vgg_weight * losses["vgg"]
        losses["loss"] = total
        return losses

    def warp(self, cloth, masked_person, pose_map) -> tuple[torch.Tensor, torch.Tensor]:
        """(refinement output, TPS-warped garment) at the working size; the TPS part without gradients."""
        return warp_garment(self._plain_tps(), self.trainable["refinement"], cloth, masked_person, pose_map)

    def _plain_tps(self) -> nn.Module:
        """The TPS network without its DDP wrapper: frozen calls must not take part in gradient sync."""
        tps = self.trainable["tps"]
        return getattr(tps, "module", tps)

    @property
    def tps_size(self) -> tuple[int, int]:
        tps = self._plain_tps()
        return tps.height, tps.width

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        target = person_garment(batch.person, garment_region(batch.parse, batch.category))
        output, warped = self.warp(batch.garment, batch.masked_person, batch.pose_map)
        return [batch.person, batch.garment, target, warped, output[:, :3].clamp(-1, 1)]

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        tps, refinement = modules["tps"], modules["refinement"]
        path = folder / checkpoint_name(self.config.dataset)
        torch.save({"tps": cpu_state_dict(tps), "refinement": cpu_state_dict(refinement)}, path)
        sizes = {
            "tps": tps.config.to_dict(),
            "refinement": refinement.config.to_dict(),
            "working_size": [self.config.height, self.config.width],  # what the backend runs at by default
        }
        config_path = folder / CONFIG_FILE
        config_path.write_text(json.dumps(sizes, indent=2) + "\n")
        return [path, config_path]


def warp_garment(
    tps: nn.Module,
    refinement: nn.Module,
    cloth: torch.Tensor,
    masked_person: torch.Tensor,
    pose_map: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LaDI-VTON's warping at the inputs' size: (refinement output (unclamped; the garment, then a mask logit where
    the network has 4 output channels), TPS-warped garment). The TPS grid is computed without gradients (it is
    frozen whenever the refinement network is used)."""
    with torch.no_grad():
        grid, _ = predict_grid(tps, cloth, torch.cat([masked_person, pose_map], 1))
        warped = F.grid_sample(cloth.float(), grid, padding_mode="border", align_corners=False).to(
            cloth.dtype
        )
    return refinement(torch.cat([masked_person, pose_map, warped], 1)), warped
