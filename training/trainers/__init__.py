"""One trainer per module, by the MODULE name `vton train` takes; each is imported only when asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the trainers import torch and the networks: `vton --help` should not wait for them
    from training.config import TrainConfig
    from training.trainers.base import ModuleTrainer


def _warp() -> type[ModuleTrainer]:
    from training.trainers.warp import WarpTrainer

    return WarpTrainer


def _emasc() -> type[ModuleTrainer]:
    from training.trainers.emasc import EmascTrainer

    return EmascTrainer


def _inversion() -> type[ModuleTrainer]:
    from training.trainers.inversion import InversionTrainer

    return InversionTrainer


def _unet() -> type[ModuleTrainer]:
    from training.trainers.unet import UnetTrainer

    return UnetTrainer


def _pose() -> type[ModuleTrainer]:
    from training.trainers.pose import PoseTrainer

    return PoseTrainer


def _parsing() -> type[ModuleTrainer]:
    from training.trainers.parsing import ParsingTrainer

    return ParsingTrainer


def _tryon_lite() -> type[ModuleTrainer]:
    from training.trainers.tryon_lite import TryOnLiteTrainer

    return TryOnLiteTrainer


# MODULE -> the trainer class, imported on demand (the diffusion trainers pull in diffusers and transformers)
TRAINERS: dict[str, Callable[[], type[ModuleTrainer]]] = {
    "warp": _warp,
    "emasc": _emasc,
    "inversion": _inversion,
    "unet": _unet,
    "pose": _pose,
    "parsing": _parsing,
    "tryon-lite": _tryon_lite,
}


def make_trainer(module: str, config: TrainConfig) -> ModuleTrainer:
    if module not in TRAINERS:
        raise ValueError(f"unknown module {module!r}; choose one of {', '.join(TRAINERS)}")
    return TRAINERS[module]()(config)
