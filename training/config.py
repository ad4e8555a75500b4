"""A training run's settings: the shared loop's (steps, batch, precision, checkpoints, logs) and the trainer's own.

`vton train MODULE --config FILE` reads a YAML or JSON mapping; every key is checked, so a typo fails with the key's
name instead of being ignored. Keys of the mapping's `options:` block belong to the trainer (each trainer lists its
own, with defaults from the paper it follows).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

MIXED_PRECISIONS = ("no", "fp16", "bf16")
INITS = ("official", "scratch")
DATASETS = ("vitonhd", "dresscode")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = (
        4  # per process and micro-batch; the effective batch is batch * processes * accumulation
    )
    gradient_accumulation: int = 1
    learning_rate: float | None = None  # None: the trainer's (the paper's) own
    warmup_steps: int = 0  # linear warm-up, then constant (LaDI-VTON's constant_with_warmup)
    max_grad_norm: float = 1.0  # 0 turns clipping off
    mixed_precision: str = "bf16"
    seed: int = 1234
    checkpoint_every: int = 500  # also exports the service's weight files
    keep_checkpoints: int = 2
    log_every: int = 10
    sample_every: int = 500  # a grid of inputs and outputs in TensorBoard
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights and export it
    num_workers: int = 0
    height: int = 512  # the dataset's working size
    width: int = 384
    dataset: str = "vitonhd"  # whose checkpoint names to read and write (LaDI-VTON's modules)
    init: str = "official"  # official: fine-tune the backend's released files; scratch: start from random
    models_dir: str | None = None  # where the official files are; default VTON_MODELS_DIR
    vgg_weights: str | None = None  # torchvision's vgg19 file for the perceptual losses; absent: skipped
    device: str | None = None  # "cpu" forces the CPU; default: what Accelerate finds
    weights_license: str | None = (
        None  # the licence of the trained weights, recorded in the export's provenance
    )
    options: dict = field(default_factory=dict)  # the trainer's own settings

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "gradient_accumulation", "checkpoint_every", "keep_checkpoints")
        for name in positive + ("log_every", "sample_every", "height", "width"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise ConfigError("warmup_steps and num_workers must be >= 0")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, not {self.learning_rate!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), not {self.ema_decay!r}")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm must be >= 0, not {self.max_grad_norm!r}")
        for name, allowed in (("mixed_precision", MIXED_PRECISIONS), ("init", INITS), ("dataset", DATASETS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.device not in (None, "cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, not {self.device!r}")
        if not isinstance(self.options, dict):
            raise ConfigError("options must be a mapping of the trainer's settings")

    @classmethod
    def from_mapping(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings")
        return cls.from_mapping(data)

    def with_overrides(self, **changes) -> TrainConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


def trainer_options(cls, options: dict):
    """The trainer's options dataclass `cls` from the config's `options:` block, unknown keys refused."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; this trainer knows: {', '.join(sorted(known))}"
        )
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
