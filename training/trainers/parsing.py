"""Fine-tuning SCHP (ResNet-101 CE2P) on the dataset's LIP parse maps (SCHP's train.py and LIPDataSet).

Each person photo is fitted into the network's square input (473x473 for LIP) the way the backend fits it, with
SCHP's augmentations drawn per sample: scale x N(1, 0.25) clipped to [0.75, 1.25], rotation N(0, 30 deg) clipped
to +-60 deg on 60% of the samples, and a mirror (left/right labels swapped) on half of them; pixels outside the
photo are black in the image and ignored in the labels. Loss: SCHP's (training/losses/parsing.py) on the parsing,
fusion and edge logits. SGD with momentum 0.9 and weight decay 5e-4 as SCHP; lr 7e-3 is SCHP's from-ImageNet rate,
so fine-tuning usually sets a lower one.

SCHP's self-correction, when `self_correction_start` is set: from that step on, every `cycle_steps` steps the
trained weights are averaged into an aggregated model (weight 1 / (cycles + 1), SCHP's online model aggregation),
whose batch-norm statistics are then re-estimated on the next `bn_batches` batches (cumulative averages, SCHP's
`bn_re_estimate`); from its first completed cycle on, the labels are refined with its predictions (the
cross-entropies become KL divergences to softmax((1 - a) * its logits + a * one-hot), a = 1 / (cycles + 1)), and the
export is the aggregated model, which is what SCHP releases. SCHP's own schedule starts at 2/3 of the run with
cycles of 1/15 of it. Starts from the released `exp-schp-201908261155-lip.pth`. Export: that
file in its released layout ({"state_dict": {"module." + name: tensor}}) plus vton_config.json with the sizes.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.parsing.models.schp import CE2P, ActivatedBatchNorm, CE2PConfig, module_to_official_keys
from training.data.sample import TryOnSample
from training.losses.parsing import IGNORE, schp_losses
from training.trainers.base import ModuleTrainer
from training.trainers.common import cpu_state_dict

DATASET = "lip"  # the platform's label set (vton.runtime.vocab.Lip)


@dataclass(frozen=True)
class ParsingOptions:
    input_size: int = 473
    scale_factor: float = 0.25
    rotation_factor: float = 30.0
    rotation_probability: float = 0.6
    flip_probability: float = 0.5
    network: dict = field(default_factory=dict)  # CE2PConfig sizes when starting from scratch
    self_correction_start: int | None = (
        None  # the step of the first model aggregation; None: no self-correction
    )
    cycle_steps: int = 1000
    bn_batches: int = 50  # batches that re-estimate the aggregated model's batch-norm statistics


class SelfCorrection:
    """SCHP's aggregated model and where its cycle stands (saved in every checkpoint)."""

    def __init__(self, model: CE2P, bn_batches: int):
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.bn_batches = bn_batches
        self.cycles = 0  # completed cycles: aggregation and statistics both done
        self.pending = 0  # batches left to re-estimate the statistics of the latest aggregation
        self.seen = 0  # samples those statistics already average
        self.aggregated_at = -1  # the step of the latest aggregation

    def aggregate(self, trained: nn.Module, step: int) -> None:
        alpha = 1.0 / (self.cycles + 1)
        with torch.no_grad():
            for average, current in zip(self.model.parameters(), trained.parameters(), strict=True):
                average.mul_(1 - alpha).add_(current.detach(), alpha=alpha)
        for norm in self._norms():
            norm.running_mean.zero_()
            norm.running_var.fill_(1)
        self.pending, self.seen, self.aggregated_at = self.bn_batches, 0, step

    def reestimate(self, image: torch.Tensor) -> None:
        """One batch of the statistics' cumulative average (momentum b / (seen + b))."""
        norms = self._norms()
        momenta = [n.momentum for n in norms]
        for norm in norms:
            norm.momentum = len(image) / (self.seen + len(image))
        self.model.train()
        with torch.no_grad():
            self.model(image)
        self.model.eval()
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        self.seen += len(image)
        self.pending -= 1
        if self.pending == 0:
            self.cycles += 1

    def _norms(self) -> list[ActivatedBatchNorm]:
        return [m for m in self.model.modules() if isinstance(m, ActivatedBatchNorm)]

    def state_dict(self) -> dict:
        counters = {
            "cycles": self.cycles,
            "pending": self.pending,
            "seen": self.seen,
            "at": self.aggregated_at,
        }
        return {"model": self.model.state_dict(), **counters}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.cycles, self.pending, self.seen = int(state["cycles"]), int(state["pending"]), int(state["seen"])
        self.aggregated_at = int(state["at"])


def augmentation_grids(
    batch: int, height: int, width: int, size: int, options: ParsingOptions, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid [B, size, size, 2] for grid_sample with align_corners=True, mirrored [B] bool): the photo's
    whole-image box fitted into the square, scaled, rotated and mirrored by SCHP's random draws."""
    box = max(width - 1, height - 1)  # the box padded to the square's aspect, as SCHP's _box2cs
    scale = (torch.randn(batch) * options.scale_factor + 1).clamp(
        1 - options.scale_factor, 1 + options.scale_factor
    )
    rotate = torch.rand(batch) <= options.rotation_probability
    angle = (torch.randn(batch) * options.rotation_factor).clamp(
        -2 * options.rotation_factor, 2 * options.rotation_factor
    )
    angle = torch.where(rotate, angle, torch.zeros_like(angle)) * math.pi / 180
    mirrored = torch.rand(batch) < options.flip_probability
    ticks = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    v, u = torch.meshgrid(ticks, ticks, indexing="ij")
    k = (box * scale / (size - 1))[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    x = (cos * u - sin * v) * k + (width - 1) / 2
    y = (sin * u + cos * v) * k + (height - 1) / 2
    x = torch.where(mirrored[:, None, None], (width - 1) - x, x)
    grid = torch.stack([x * 2 / (width - 1) - 1, y * 2 / (height - 1) - 1], dim=-1)
    return grid.to(device), mirrored.to(device)


class ParsingTrainer(ModuleTrainer):
    name = "parsing"
    options_class = ParsingOptions
    learning_rate = 7e-3
    optimizer_class = torch.optim.SGD
    optimizer_settings = {"momentum": 0.9, "weight_decay": 5e-4}

    @property
    def backend(self) -> str:
        return f"schp-{DATASET}"

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        from services.parsing.backends.schp import BGR_MEAN, BGR_STD, dataset_spec, mirror_permutation

        spec = dataset_spec(DATASET)
        self.checkpoint = spec.checkpoint
        self.permutation = torch.tensor(
            mirror_permutation(spec.num_classes, spec.mirror_pairs), device=device
        )
        if self.config.init == "official":
            model = self.sources.schp(DATASET)
        else:
            model = CE2P(CE2PConfig.from_json({**self.options.network, "num_classes": spec.num_classes}))
        self.trainable = {"parsing": model.float().to(device)}
        self.correction = None
        if self.options.self_correction_start is not None:
            self.correction = SelfCorrection(self.trainable["parsing"], self.options.bn_batches)
            self.note(
                f"self-correction: aggregation at step {self.options.self_correction_start}, then every "
                f"{self.options.cycle_steps} steps"
            )
        self.mean = torch.tensor(BGR_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(BGR_STD, device=device).view(1, 3, 1, 1)

    def network_batch(self, batch: TryOnSample) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised BGR crops [B, 3, S, S], labels [B, S, S] with IGNORE outside the photo), augmented."""
        height, width = batch.person.shape[-2:]
        size = self.options.input_size
        grid, mirrored = augmentation_grids(
            len(batch.person), height, width, size, self.options, batch.person.device
        )
        bgr = ((batch.person.float() + 1) / 2).flip(1)
        image = F.grid_sample(bgr, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        shifted = (batch.parse + 1).float()[:, None]  # 0 marks "outside the photo" after zero padding
        labels = (
            F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=True)[
                :, 0
            ].long()
            - 1
        )
        labels = torch.where(mirrored[:, None, None], self.permutation[labels.clamp(min=0)], labels)
        labels = labels.masked_fill(labels < 0, IGNORE)
        return (image - self.mean) / self.std, labels

    def checkpoint_state(self) -> list:
        return [self.correction] if self.correction is not None else []

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        image, labels = self.network_batch(batch)
        soft, cycles = self._self_correction(image)
        output = self.trainable["parsing"](image)
        losses = schp_losses(output.parsing, output.fusion, output.edge, labels, soft, cycles)
        if self.correction is not None:
            losses["self_correction_cycles"] = torch.tensor(float(self.correction.cycles))
        return losses

    def _self_correction(self, image: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, int]:
        """Aggregate at a cycle's step, re-estimate statistics while pending; the refined-label logits once a cycle
        is complete."""
        correction = self.correction
        if correction is None:
            return None, 0
        start, every = self.options.self_correction_start, self.options.cycle_steps
        at_cycle = self.step >= start and (self.step - start) % every == 0
        if at_cycle and correction.aggregated_at != self.step:
            trained = self.trainable["parsing"]
            correction.aggregate(getattr(trained, "module", trained), self.step)
        if correction.pending:
            correction.reestimate(image)
        if correction.cycles == 0:
            return None, 0
        with torch.no_grad():
            output = correction.model(image)
        return (output.fusion, output.edge), correction.cycles

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        image, labels = self.network_batch(batch)
        fusion = self.trainable["parsing"](image).fusion
        predicted = F.interpolate(
            fusion.float(), size=labels.shape[-2:], mode="bilinear", align_corners=True
        ).argmax(1)
        shown = (image * self.std + self.mean).flip(1) * 2 - 1
        return [shown, _grey_labels(labels), _grey_labels(predicted)]

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        corrected = self.correction is not None and self.correction.cycles > 0
        model = self.correction.model if corrected else modules["parsing"]
        path = folder / self.checkpoint
        torch.save({"state_dict": module_to_official_keys(cpu_state_dict(model))}, path)
        config_path = folder / "vton_config.json"
        config_path.write_text(json.dumps(model.config.to_json(), indent=2) + "\n")
        return [path, config_path]


def _grey_labels(labels: torch.Tensor) -> torch.Tensor:
    """[B, H, W] labels as a [B, 1, H, W] grey picture in [-1, 1] (IGNORE shown white)."""
    return (labels.clamp(max=19).float()[:, None] / 19) * 2 - 1
