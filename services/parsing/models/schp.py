"""SCHP's parsing network: a dilated ResNet-101 with the CE2P head (context, edge, decoder, fusion).

Self-Correction for Human Parsing (Li et al., TPAMI 2020) trains CE2P ("Context Embedding with Edge
Perceiving"): a ResNet-101 whose last stage is dilated (output stride 16), a pyramid pooling context module on
its output, a decoder that mixes the context with stage-1 features, an edge branch on stages 1-3, and a fusion
layer over decoder and edge features whose logits are the parse SCHP's own tools read.

Module and attribute names follow the reference `networks/AugmentCE2P.py` exactly (including its spelling
`fushion`), so the released checkpoints load with `strict=True` once the DataParallel `module.` prefix is gone.
Every batch norm of the released checkpoints was mapillary's InPlaceABNSync (the backbone's with no activation,
the head's with LeakyReLU 0.01), which stores weight, bias, running_mean and running_var and no
`num_batches_tracked`; `ActivatedBatchNorm` keeps exactly those four tensors so the state dict's key set is
the released one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_FILE = "vton_config.json"


@dataclass(frozen=True)
class CE2PConfig:
    """Network sizes. The defaults are the published ResNet-101 CE2P; tests shrink them via vton_config.json."""

    num_classes: int = 20
    layers: tuple[int, ...] = (3, 4, 23, 3)  # bottleneck blocks per ResNet stage
    stem_width: int = 64  # the deep stem's first two 3x3 convs; the third gives 2 * stem_width
    base_planes: int = 64  # bottleneck width of stage 1; stages 2-4 double it, outputs are 4x wider
    context_features: int = 512  # pyramid pooling branch and output width
    pool_sizes: tuple[int, ...] = (1, 2, 3, 6)
    edge_features: int = 256
    decoder_features: int = 256
    decoder_skip_features: int = 48  # stage-1 features squeezed before joining the context
    fusion_features: int = 256

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CE2PConfig:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in _FIELDS}
        return cls(**values)


_FIELDS = set(CE2PConfig.__dataclass_fields__)
EXPANSION = 4


def load_config(folder: Path, num_classes: int) -> CE2PConfig:
    """The published sizes for `num_classes`, overridden by `folder/vton_config.json` where it exists."""
    path = folder / CONFIG_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("num_classes", num_classes)
    return CE2PConfig.from_json(data)


class ActivatedBatchNorm(nn.Module):
    """Batch norm followed by LeakyReLU (slope 0.01) or nothing: InPlaceABNSync's behaviour.

    InPlaceABN scales by |weight| + eps, not by the weight (its kernels, `inplace_abn_cpu.cpp` and
    `inplace_abn_cuda.cu`: y = (x - mean) / sqrt(var + eps) * (|weight| + eps) + bias), so a channel whose stored
    weight is negative keeps its sign; the released checkpoints were trained and are read that way.
    It holds the same four tensors InPlaceABNSync saved (no `num_batches_tracked`), so names and key count
    match the released checkpoints.
    """

    def __init__(self, num_features: int, activation: bool = True, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.activation = activation
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight.abs() + self.eps,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )
        return F.leaky_relu(x, negative_slope=0.01) if self.activation else x


def plain_bn(num_features: int) -> ActivatedBatchNorm:
    """The backbone's batch norm (the reference's `BatchNorm2d = partial(InPlaceABNSync, activation='none')`)."""
    return ActivatedBatchNorm(num_features, activation=False)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv (no bias) + activated batch norm: the head's repeated unit, indices 0 and 1 as in the reference."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False),
        ActivatedBatchNorm(out_channels),
    )


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = plain_bn(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = plain_bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = plain_bn(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class PyramidPooling(nn.Module):
    """PSP context module (the reference's `context_encoding`)."""

    def __init__(self, in_features: int, out_features: int, sizes: tuple[int, ...]):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(size),
                nn.Conv2d(in_features, out_features, 1, bias=False),
                ActivatedBatchNorm(out_features),
            )
            for size in sizes
        )
        self.bottleneck = conv_bn(in_features + len(sizes) * out_features, out_features, 3, padding=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        size = (feats.shape[2], feats.shape[3])
        priors = [upsample_to(stage(feats), size) for stage in self.stages] + [feats]
        return self.bottleneck(torch.cat(priors, 1))


class EdgeBranch(nn.Module):
    """Edge logits (2 classes) from stages 1-3, plus their features for the fusion layer."""

    def __init__(self, in_features: tuple[int, int, int], mid_features: int, out_features: int = 2):
        super().__init__()
        self.conv1 = conv_bn(in_features[0], mid_features)
        self.conv2 = conv_bn(in_features[1], mid_features)
        self.conv3 = conv_bn(in_features[2], mid_features)
        self.conv4 = nn.Conv2d(mid_features, out_features, 3, padding=1, bias=True)  # shared by all three
        self.conv5 = nn.Conv2d(out_features * 3, out_features, 1, bias=True)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = (x1.shape[2], x1.shape[3])
        feats = [self.conv1(x1), self.conv2(x2), self.conv3(x3)]
        edges = [self.conv4(f) for f in feats]
        feats = [feats[0]] + [upsample_to(f, size) for f in feats[1:]]
        edges = [edges[0]] + [upsample_to(e, size) for e in edges[1:]]
        return self.conv5(torch.cat(edges, 1)), torch.cat(feats, 1)


class ParsingDecoder(nn.Module):
    """Context features upsampled onto stage-1 features -> parsing logits and decoder features."""

    def __init__(self, context: int, low_level: int, skip: int, features: int, num_classes: int):
        super().__init__()
        self.conv1 = conv_bn(context, features)
        self.conv2 = conv_bn(low_level, skip)
        self.conv3 = nn.Sequential(*conv_bn(features + skip, features), *conv_bn(features, features))
        self.conv4 = nn.Conv2d(features, num_classes, 1, bias=True)

    def forward(self, context: torch.Tensor, low_level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = (low_level.shape[2], low_level.shape[3])
        x = torch.cat([upsample_to(self.conv1(context), size), self.conv2(low_level)], 1)
        x = self.conv3(x)
        return self.conv4(x), x


class CE2POutput(NamedTuple):
    """All at 1/4 of the input resolution. `fusion` is the parse SCHP's extractor and evaluation read."""

    parsing: torch.Tensor  # [B, num_classes, h, w] decoder logits
    fusion: torch.Tensor  # [B, num_classes, h, w] fused parsing + edge logits
    edge: torch.Tensor  # [B, 2, h, w] edge logits


class CE2P(nn.Module):
    """ResNet-101 (deep stem, dilated stage 4) + CE2P head, named as SCHP's `AugmentCE2P.ResNet`."""

    def __init__(self, config: CE2PConfig = CE2PConfig()):
        super().__init__()
        self.config = config
        stem = config.stem_width
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = plain_bn(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, padding=1, bias=False)
        self.bn2 = plain_bn(stem)
        self.conv3 = nn.Conv2d(stem, stem * 2, 3, padding=1, bias=False)
        self.bn3 = plain_bn(stem * 2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self._inplanes = stem * 2
        widths = [config.base_planes * m for m in (1, 2, 4, 8)]
        self.layer1 = self._make_layer(widths[0], config.layers[0])
        self.layer2 = self._make_layer(widths[1], config.layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], config.layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], config.layers[3], dilation=2)

        outs = [w * EXPANSION for w in widths]
        self.context_encoding = PyramidPooling(outs[3], config.context_features, config.pool_sizes)
        self.edge = EdgeBranch((outs[0], outs[1], outs[2]), config.edge_features)
        self.decoder = ParsingDecoder(
            config.context_features,
            outs[0],
            config.decoder_skip_features,
            config.decoder_features,
            config.num_classes,
        )
        self.fushion = nn.Sequential(
            nn.Conv2d(
                config.decoder_features + 3 * config.edge_features, config.fusion_features, 1, bias=False
            ),
            ActivatedBatchNorm(config.fusion_features),
            nn.Dropout2d(0.1),
            nn.Conv2d(config.fusion_features, config.num_classes, 1, bias=True),
        )

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * EXPANSION:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * EXPANSION, 1, stride=stride, bias=False),
                plain_bn(planes * EXPANSION),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, dilation, downsample)]
        self._inplanes = planes * EXPANSION
        layers += [Bottleneck(self._inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> CE2POutput:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        x2 = self.layer1(x)
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        x5 = self.layer4(x4)
        parsing, parsing_feats = self.decoder(self.context_encoding(x5), x2)
        edge, edge_feats = self.edge(x2, x3, x4)
        fusion = self.fushion(torch.cat([parsing_feats, edge_feats], 1))
        return CE2POutput(parsing, fusion, edge)


def official_to_module_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The one remap between a released SCHP checkpoint and `CE2P`: drop DataParallel's `module.` prefix.

    `num_batches_tracked` entries (present only in files re-saved with torch's BatchNorm2d backbone of later
    SCHP code) carry no inference information and are dropped too.
    """
    out = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if not name.endswith("num_batches_tracked"):
            out[name] = value
    return out


def module_to_official_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `official_to_module_keys`, for writing files in the released layout."""
    return {f"module.{key}": value for key, value in state_dict.items()}
