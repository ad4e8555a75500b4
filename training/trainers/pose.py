"""Fine-tuning OpenPose body (COCO-18) on the dataset's keypoints: heatmap and PAF targets, every stage supervised.

The network (services/pose/models/openpose_body.py) sees the person as the backend feeds it (BGR, pixel / 256 -
0.5); its six stages each predict the 38 part affinity fields and 19 heatmaps at 1/8 resolution, and, as in
OpenPose's training, every stage's outputs are compared with the targets (training/openpose_targets.py): the loss
is the sum over stages of the mean squared error of both branches. Adam, lr 1e-4. Starts from the official
`body_pose_model.pth` (or from random weights, which only a large dataset can train). Export: that file, in its
Caffe-named layout (`checkpoint_from_module`), plus vton_config.json with the network's widths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.pose.models.openpose_body import (
    NUM_STAGES,
    BodyPoseModel,
    OpenPoseConfig,
    checkpoint_from_module,
)
from training.data.sample import TryOnSample
from training.openpose_targets import heatmap_targets, paf_targets
from training.trainers.base import ModuleTrainer

CHECKPOINT = "body_pose_model.pth"
CONFIG_FILE = "vton_config.json"


@dataclass(frozen=True)
class PoseOptions:
    network: dict = field(default_factory=dict)  # OpenPoseConfig widths when starting from scratch


class EveryStage(nn.Module):
    """The body network run stage by stage, returning every stage's (PAFs, heatmaps) for intermediate supervision.

    It holds the network as `.body` and is what the loop wraps (DDP must see the forward that uses the weights).
    """

    def __init__(self, body: BodyPoseModel):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        body = self.body
        features = body.model0(x)
        outputs = [(body.model1_1(features), body.model1_2(features))]
        for stage in range(2, NUM_STAGES + 1):
            stage_input = torch.cat([*outputs[-1], features], 1)
            outputs.append(
                (getattr(body, f"model{stage}_1")(stage_input), getattr(body, f"model{stage}_2")(stage_input))
            )
        return outputs


def network_input(person: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> what OpenPose was trained on: BGR pixel values / 256 - 0.5."""
    pixels = (person + 1) * 127.5
    return pixels.flip(1) / 256 - 0.5


class PoseTrainer(ModuleTrainer):
    name = "pose"
    options_class = PoseOptions
    learning_rate = 1e-4
    optimizer_settings = {"weight_decay": 0.0}

    @property
    def backend(self) -> str:
        return "openpose-body"

    def setup(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        if self.config.init == "official":
            body = self.sources.openpose()
        else:
            body = BodyPoseModel(OpenPoseConfig.from_dict(self.options.network))
        self.trainable = {"pose": EveryStage(body.float()).to(device)}

    def loss(self, batch: TryOnSample) -> dict[str, torch.Tensor]:
        height, width = batch.person.shape[-2:]
        config = self._body().config
        heat_target = heatmap_targets(batch.keypoints, height, width, config.num_heatmaps)
        paf_target = paf_targets(batch.keypoints, height, width, config.num_pafs)
        stages = self.trainable["pose"](network_input(batch.person))
        paf_loss = sum(F.mse_loss(pafs.float(), paf_target) for pafs, _ in stages)
        heat_loss = sum(F.mse_loss(heat.float(), heat_target) for _, heat in stages)
        return {"loss": paf_loss + heat_loss, "paf": paf_loss, "heatmap": heat_loss}

    def _body(self) -> BodyPoseModel:
        wrapper = self.trainable["pose"]
        return getattr(wrapper, "module", wrapper).body

    def samples(self, batch: TryOnSample) -> list[torch.Tensor]:
        pafs, heatmaps = self.trainable["pose"](network_input(batch.person))[-1]
        size = batch.person.shape[-2:]
        parts = F.interpolate(heatmaps[:, :-1].amax(1, keepdim=True), size=size, mode="bilinear")
        fields = F.interpolate(pafs.abs().amax(1, keepdim=True), size=size, mode="bilinear")
        return [batch.person, batch.pose_map, parts * 2 - 1, fields.clamp(0, 1) * 2 - 1]

    def export(self, modules: dict[str, nn.Module], folder: Path) -> list[Path]:
        body = modules["pose"].body
        path = folder / CHECKPOINT
        torch.save({k: v.detach().float().cpu() for k, v in checkpoint_from_module(body).items()}, path)
        config_path = folder / CONFIG_FILE
        config_path.write_text(json.dumps(body.config.to_dict(), indent=2) + "\n")
        return [path, config_path]
