"""One trainer per module, by the MODULE name `vton train` takes; each is imported only when asked for."""

from __future__ import annotations

import importlib

from training.config import TrainConfig
from training.trainers.base import ModuleTrainer

# MODULE -> "module:class"
TRAINERS: dict[str, str] = {
    "warp": "training.trainers.warp:WarpTrainer",
    "emasc": "training.trainers.emasc:EmascTrainer",
    "inversion": "training.trainers.inversion:InversionTrainer",
    "unet": "training.trainers.unet:UnetTrainer",
    "pose": "training.trainers.pose:PoseTrainer",
    "parsing": "training.trainers.parsing:ParsingTrainer",
}


def make_trainer(module: str, config: TrainConfig) -> ModuleTrainer:
    if module not in TRAINERS:
        raise ValueError(f"unknown module {module!r}; choose one of {', '.join(TRAINERS)}")
    path, _, name = TRAINERS[module].partition(":")
    return getattr(importlib.import_module(path), name)(config)
