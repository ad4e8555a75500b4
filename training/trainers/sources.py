"""Where a trainer's starting networks come from: the official files through each backend's own loader, or (for
benchmarks) random networks at the published sizes, with no file at all."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.trainers.common import official_folder


class OfficialFiles:
    """The backends' folders in the run's models directory (default: the platform's, VTON_MODELS_DIR)."""

    def __init__(self, config):
        self.config = config

    def folder(self, backend: str) -> Path:
        return official_folder(self.config.models_dir, backend)

    def diffusion(self):
        """The diffusion backend (LadiVtonBackend on the CPU in float32) of the run's dataset."""
        from services.diffusion.backends.ladi_vton import LadiVtonBackend

        folder = self.folder(f"ladi-vton-{self.config.dataset}")
        return LadiVtonBackend.from_pretrained(folder, device="cpu", dataset=self.config.dataset)

    def sd2_inpainting_unet(self) -> nn.Module:
        from training.trainers.diffusion_parts import load_sd2_inpainting_unet

        return load_sd2_inpainting_unet(self.folder(f"ladi-vton-{self.config.dataset}"))

    def warping_module(self) -> tuple[nn.Module, nn.Module]:
        """(TPS network, refinement U-Net) of `warping_{dataset}.pth`."""
        from services.warp.backends.ladi_vton import LadiVtonWarpBackend

        backend = LadiVtonWarpBackend.from_pretrained(self.folder(f"ladi-vton-warp-{self.config.dataset}"))
        return backend.tps, backend.refinement

    def openpose(self) -> nn.Module:
        from services.pose.backends.openpose import OpenPoseBackend

        return OpenPoseBackend.from_pretrained(self.folder("openpose-body")).model

    def schp(self, dataset: str) -> nn.Module:
        from services.parsing.backends.schp import SCHPBackend

        return SCHPBackend.from_pretrained(self.folder(f"schp-{dataset}"), dataset).model


class PublishedRandom:
    """Every network at its published size with random weights (the GPU benchmark's starting point), created
    directly on `device` (initialising two billion parameters on a CPU takes minutes)."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def folder(self, backend: str) -> None:
        return None  # nothing to link an export to

    def diffusion(self):
        from services.diffusion.testing import build_full_size_random

        return build_full_size_random(device=self.device, dtype=torch.float32)

    def sd2_inpainting_unet(self) -> nn.Module:
        from diffusers import UNet2DConditionModel

        from services.diffusion.models.published_configs import SD2_INPAINTING_UNET

        with self.device:
            return UNet2DConditionModel.from_config(SD2_INPAINTING_UNET)

    def warping_module(self) -> tuple[nn.Module, nn.Module]:
        from services.warp.models import ConvNetTPS, RefinementUNet

        with self.device:
            return ConvNetTPS(), RefinementUNet()

    def openpose(self) -> nn.Module:
        from services.pose.models.openpose_body import BodyPoseModel

        with self.device:
            return BodyPoseModel()

    def schp(self, dataset: str) -> nn.Module:
        from services.parsing.models.schp import CE2P, CE2PConfig

        with self.device:
            return CE2P(CE2PConfig())
