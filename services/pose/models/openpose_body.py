"""The OpenPose body network (COCO-18, CMU's `pose_iter_440000` converted to torch as `body_pose_model.pth`).

A VGG-19 front (conv1_1 .. conv4_2, then conv4_3_CPM and conv4_4_CPM down to 128 channels at 1/8 resolution) feeds
six stages of two branches: L1 predicts the 38 part affinity fields (19 limbs x (x, y)), L2 the 19 heatmaps (18
parts + background). Each stage after the first sees [L1, L2, VGG features] (38 + 19 + 128 = 185 channels). Every
convolution but a stage's output is followed by a ReLU, and so is the last stage's heatmap output (see
`RELU_ON_LAST_HEATMAPS`).
The network expects BGR input scaled to [-0.5, 0.5) (pixel / 256 - 0.5), as the Caffe original.

Module names are those of the torch port every user of the file builds (`model0.conv1_1`, `model1_1.conv5_1_CPM_L1`,
`model2_2.Mconv1_stage2_L2`, ...). The checkpoint itself stores the layer names WITHOUT the block prefix
(`conv1_1.weight`, `Mconv1_stage2_L1.weight`: the Caffe layer names, unique across the network); the ports load it
by stripping the first name component of their own keys. `module_key_from_checkpoint` / `checkpoint_key_from_module`
are that one mapping.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from vton.runtime.checkpoints import NetworkConfig

NUM_STAGES = 6
# pytorch-openpose's `bodypose_model` (which every user of body_pose_model.pth runs) lists `Mconv7_stage6_L1`
# twice in its `no_relu_layers` and never `Mconv7_stage6_L2`, so it applies a ReLU to the final heatmaps (stage 6,
# branch L2); the Caffe original does not. The released file has been used with the ReLU, so it is kept.
RELU_ON_LAST_HEATMAPS = (NUM_STAGES, 2)


@dataclass(frozen=True)
class OpenPoseConfig(NetworkConfig):
    """Channel widths; the defaults are the published network's."""

    vgg_channels: tuple[int, int, int, int] = (64, 128, 256, 512)  # conv1_*, conv2_*, conv3_*, conv4_1/4_2
    cpm_channels: tuple[int, int] = (256, 128)  # conv4_3_CPM, conv4_4_CPM (the features every stage sees)
    stage1_hidden: int = 512  # conv5_4_CPM_L*
    stage_channels: int = 128  # the 3x3 (stage 1) and 7x7 (stages 2-6) convolutions
    num_pafs: int = 38
    num_heatmaps: int = 19


# Layers as (name, in, out, kernel, padding); a name alone is a 2x2 max pool.
def _vgg_layers(cfg: OpenPoseConfig) -> list[tuple]:
    c1, c2, c3, c4 = cfg.vgg_channels
    p1, p2 = cfg.cpm_channels
    return [
        ("conv1_1", 3, c1, 3, 1),
        ("conv1_2", c1, c1, 3, 1),
        ("pool1_stage1",),
        ("conv2_1", c1, c2, 3, 1),
        ("conv2_2", c2, c2, 3, 1),
        ("pool2_stage1",),
        ("conv3_1", c2, c3, 3, 1),
        ("conv3_2", c3, c3, 3, 1),
        ("conv3_3", c3, c3, 3, 1),
        ("conv3_4", c3, c3, 3, 1),
        ("pool3_stage1",),
        ("conv4_1", c3, c4, 3, 1),
        ("conv4_2", c4, c4, 3, 1),
        ("conv4_3_CPM", c4, p1, 3, 1),
        ("conv4_4_CPM", p1, p2, 3, 1),
    ]


def _stage1_layers(cfg: OpenPoseConfig, branch: int, outputs: int) -> list[tuple]:
    f, s, hidden = cfg.cpm_channels[1], cfg.stage_channels, cfg.stage1_hidden
    return [
        (f"conv5_1_CPM_L{branch}", f, s, 3, 1),
        (f"conv5_2_CPM_L{branch}", s, s, 3, 1),
        (f"conv5_3_CPM_L{branch}", s, s, 3, 1),
        (f"conv5_4_CPM_L{branch}", s, hidden, 1, 0),
        (f"conv5_5_CPM_L{branch}", hidden, outputs, 1, 0),
    ]


def _refinement_stage_layers(cfg: OpenPoseConfig, stage: int, branch: int, outputs: int) -> list[tuple]:
    s = cfg.stage_channels
    stage_input = cfg.num_pafs + cfg.num_heatmaps + cfg.cpm_channels[1]
    layers = [(f"Mconv1_stage{stage}_L{branch}", stage_input, s, 7, 3)]
    layers += [(f"Mconv{i}_stage{stage}_L{branch}", s, s, 7, 3) for i in range(2, 6)]
    layers += [
        (f"Mconv6_stage{stage}_L{branch}", s, s, 1, 0),
        (f"Mconv7_stage{stage}_L{branch}", s, outputs, 1, 0),
    ]
    return layers


def _block(layers: list[tuple], relu_after_last: bool) -> nn.Sequential:
    """Convolutions (each followed by ReLU, except a stage's output) and pools, named as in the torch port."""
    modules: list[tuple[str, nn.Module]] = []
    for index, layer in enumerate(layers):
        name = layer[0]
        if len(layer) == 1:
            modules.append((name, nn.MaxPool2d(kernel_size=2, stride=2)))
            continue
        _, c_in, c_out, kernel, padding = layer
        modules.append((name, nn.Conv2d(c_in, c_out, kernel, 1, padding)))
        if relu_after_last or index < len(layers) - 1:
            modules.append((f"relu_{name}", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(modules))


class BodyPoseModel(nn.Module):
    """BGR image [B, 3, H, W] (pixel/256 - 0.5) -> (PAFs [B, 38, H/8, W/8], heatmaps [B, 19, H/8, W/8])."""

    def __init__(self, config: OpenPoseConfig | None = None):
        super().__init__()
        cfg = config or OpenPoseConfig()
        self.config = cfg
        self.model0 = _block(_vgg_layers(cfg), relu_after_last=True)
        # Registered in the torch port's order (all PAF branches, then all heatmap branches): same state-dict order.
        for branch, outputs in ((1, cfg.num_pafs), (2, cfg.num_heatmaps)):
            self.add_module(
                f"model1_{branch}", _block(_stage1_layers(cfg, branch, outputs), relu_after_last=False)
            )
            for stage in range(2, NUM_STAGES + 1):
                layers = _refinement_stage_layers(cfg, stage, branch, outputs)
                relu = (stage, branch) == RELU_ON_LAST_HEATMAPS
                self.add_module(f"model{stage}_{branch}", _block(layers, relu_after_last=relu))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model0(x)
        pafs = self.model1_1(features)
        heatmaps = self.model1_2(features)
        for stage in range(2, NUM_STAGES + 1):
            stage_input = torch.cat([pafs, heatmaps, features], 1)
            pafs = getattr(self, f"model{stage}_1")(stage_input)
            heatmaps = getattr(self, f"model{stage}_2")(stage_input)
        return pafs, heatmaps


def checkpoint_key_from_module(key: str) -> str:
    """`model0.conv1_1.weight` -> `conv1_1.weight` (the checkpoint's name)."""
    return key.split(".", 1)[1]


def module_key_from_checkpoint(model: BodyPoseModel) -> dict[str, str]:
    """{checkpoint key: module key} for every parameter of `model` (layer names are unique, so this is 1:1)."""
    mapping = {checkpoint_key_from_module(k): k for k in model.state_dict()}
    if len(mapping) != len(model.state_dict()):
        raise AssertionError("layer names are not unique across blocks")
    return mapping


def checkpoint_from_module(model: BodyPoseModel) -> OrderedDict[str, torch.Tensor]:
    """The module's weights in the checkpoint's layout (what `torch.save` wrote into body_pose_model.pth)."""
    return OrderedDict((checkpoint_key_from_module(k), v) for k, v in model.state_dict().items())
