"""LaDI-VTON's VGG perceptual loss (src/utils/vgg_loss.py): L1 between VGG-19 features of output and target.

The network is torchvision's `vgg19().features` up to relu5_1, in plain torch with torchvision's parameter names
(`features.0.weight`, ...), so torchvision's ImageNet file `vgg19-dcabb325.pth` loads as it is. Its weights are not
shipped here: the loss is built only when a run names that file (`vgg_weights:`), else the run says it is skipped.
Both images are resized to 256 on their short side, mapped from [-1, 1] to ImageNet's normalisation, and the
five relu outputs compared with weights 1/32, 1/16, 1/8, 1/4, 1 (the target's features detached).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# VGG-19's convolution widths up to conv5_1; "M" is a 2x2 max pool (torchvision's cfg "E").
_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Indices in `features` after which the slices end: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_SLICE_ENDS = (2, 7, 12, 21, 30)
WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class VGGPerceptualLoss(nn.Module):
    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @classmethod
    def from_file(cls, path: str | Path) -> VGGPerceptualLoss:
        """torchvision's vgg19 state dict (only its `features.*` tensors are used)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vgg_weights: {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = vgg19_features()
        wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        wanted = {k: v for k, v in wanted.items() if int(k.split(".")[0]) < len(features)}
        missing, _ = features.load_state_dict(wanted, strict=False)
        if missing:
            raise ValueError(f"{path} is not torchvision's vgg19 file: missing {', '.join(missing)}")
        return cls(features)

    def _relu_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs, start = [], 0
        for end in _SLICE_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            outputs.append(x)
            start = end
        return outputs

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        scale = 256 / min(h, w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out_features = self._relu_outputs(self._prepare(output))
        with torch.no_grad():
            target_features = self._relu_outputs(self._prepare(target))
        return sum(
            w * F.l1_loss(o, t) for w, o, t in zip(WEIGHTS, out_features, target_features, strict=True)
        )


def perceptual_loss(weights_file: str | None, device: torch.device, note) -> VGGPerceptualLoss | None:
    """The VGG loss on `device` when its weights file is given; otherwise None, and `note` says it is skipped."""
    if not weights_file:
        note("VGG perceptual loss skipped: no vgg_weights file given (torchvision's vgg19-dcabb325.pth)")
        return None
    return VGGPerceptualLoss.from_file(weights_file).to(device)
