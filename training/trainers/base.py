"""What a module trainer gives the shared loop: its networks, its loss on a batch, sample images, its export.

A trainer is a small class: `setup` builds or loads the networks (from the service's own model code and, for
fine-tuning, its official files), `loss` computes the paper's losses on one batch of TryOnSample, `export` writes
the trained weights in exactly the files the stage's backend loads. Everything else (devices, mixed precision,
accumulation, distribution, checkpoints, resume, logs, EMA) is the loop's (training/loop.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from training.config import ConfigError, TrainConfig, trainer_options
from training.data.sample import TryOnSample
from training.trainers.sources import OfficialFiles


class ModuleTrainer(ABC):
    name: str  # the MODULE of `vton train MODULE`
    learning_rate: float  # the paper's, when the config sets none
    # The paper's optimizer and its settings but the rate (the loop gives the rate).
    optimizer_class: type[torch.optim.Optimizer] = torch.optim.AdamW
    optimizer_settings: dict[str, object] = {"weight_decay": 1e-2}
    options_class: type | None = None  # the dataclass of the config's `options:` block; None: it takes none

    def __init__(self, config: TrainConfig):
        self.config = config
        if self.options_class is not None:
            self.options = trainer_options(self.options_class, config.options)
        elif config.options:
            raise ConfigError(f"the {self.name} trainer takes no options, got {', '.join(config.options)}")
        # The networks the optimizer updates, by name; the loop replaces each with its prepared (device,
        # mixed-precision, DDP) wrapper, so `loss` must reach them through this dict.
        self.trainable: dict[str, nn.Module] = {}
        self.notes: list[str] = []  # what the run should say once (a skipped loss, a frozen part)
        self.step = 0  # the optimizer step being computed, set by the loop (trainers with phases read it)
        self.sources = OfficialFiles(config)  # where `init: official` networks come from

    @property
    @abstractmethod
    def backend(self) -> str:
        """The backend (models-directory folder) whose files `export` writes."""

    @abstractmethod
    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        """Build or load the networks on `device`; frozen helpers may be cast to `weight_dtype`."""

    @abstractmethod
    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        """The losses of one batch; "loss" is the total that is back-propagated, the others are logged."""

    @abstractmethod
    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        """Write `modules` (unwrapped, float32 on any device) as the backend's files into `folder`."""

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        """Rows of a picture for TensorBoard: [B, 3, H, W] tensors in [-1, 1] (inputs, outputs, targets)."""
        return [batch.person, batch.garment]

    def parameters(self) -> list[nn.Parameter]:
        return [p for module in self.trainable.values() for p in module.parameters() if p.requires_grad]

    def optimizer(self, learning_rate: float) -> torch.optim.Optimizer:
        return self.optimizer_class(self.parameters(), lr=learning_rate, **self.optimizer_settings)

    def train_mode(self) -> None:
        """Put the trainable networks in training mode (frozen helpers stay in eval)."""
        for module in self.trainable.values():
            module.train()

    def checkpoint_state(self) -> list:
        """Objects (with state_dict/load_state_dict) the trainer keeps beyond its networks, saved in checkpoints."""
        return []

    def note(self, message: str) -> None:
        self.notes.append(message)
