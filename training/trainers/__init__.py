"""One trainer per module, by the MODULE name `vton train` takes; each is imported only when asked for."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the trainers import torch and the networks: `vton --help` should not wait for them
    from training.config import TrainConfig
    from training.trainers.base import ModuleTrainer

# MODULE -> (the module under training.trainers, its trainer class), imported on demand (the diffusion
# trainers pull in diffusers and transformers)
TRAINERS: dict[str, tuple[str, str]] = {
    "warp": ("warp", "WarpTrainer"),
    "emasc": ("emasc", "EmascTrainer"),
    "inversion": ("inversion", "InversionTrainer"),
    "unet": ("unet", "UnetTrainer"),
    "pose": ("pose", "PoseTrainer"),
    "parsing": ("parsing", "ParsingTrainer"),
    "tryon-lite": ("tryon_lite", "TryOnLiteTrainer"),
}


def make_trainer(module: str, config: TrainConfig) -> ModuleTrainer:
    if module not in TRAINERS:
        raise ValueError(f"unknown module {module!r}; choose one of {', '.join(TRAINERS)}")
    file, name = TRAINERS[module]
    trainer: type[ModuleTrainer] = getattr(import_module(f"training.trainers.{file}"), name)
    return trainer(config)
