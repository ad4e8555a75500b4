"""SCHP with random weights, for tests (tiny, written in the release's file format) and GPU benchmarks
(published size, in memory). Nothing here is used to serve a request."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from services.parsing.backends.schp import SCHPBackend, dataset_spec
from services.parsing.models.schp import (
    CE2P,
    CONFIG_FILE,
    ActivatedBatchNorm,
    CE2PConfig,
    module_to_official_keys,
)

# Small enough for a CPU test, same code path as the published network.
TINY_CONFIG = CE2PConfig(
    layers=(1, 1, 1, 1),
    stem_width=8,
    base_planes=8,
    context_features=16,
    edge_features=8,
    decoder_features=16,
    decoder_skip_features=8,
    fusion_features=16,
)


def save_random(folder: Path, dataset: str = "lip", config: CE2PConfig = TINY_CONFIG, seed: int = 0) -> Path:
    """Random weights in the released layout (`{'state_dict': {'module.' + key: tensor}}`) + vton_config.json."""
    spec = dataset_spec(dataset)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = CE2PConfig.from_json({**config.to_json(), "num_classes": spec.num_classes})
    torch.manual_seed(seed)
    model = CE2P(config)
    randomise_batch_norms(model)
    torch.save({"state_dict": module_to_official_keys(model.state_dict())}, folder / spec.checkpoint)
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return folder / spec.checkpoint


def randomise_batch_norms(model: CE2P) -> None:
    """Give every norm non-trivial statistics and weights of both signs, so round trips and outputs exercise all
    four tensors and InPlaceABN's |weight| + eps (a negative weight is what tells it from a plain batch norm)."""
    for name, tensor in model.state_dict().items():
        if name.endswith("running_var"):
            tensor.uniform_(0.5, 1.5)
        elif name.endswith(("running_mean", ".bias")) and tensor.dim() == 1:
            tensor.normal_(0.0, 0.1)
    for norm in model.modules():
        if isinstance(norm, ActivatedBatchNorm):
            with torch.no_grad():
                norm.weight.mul_(torch.where(torch.rand_like(norm.weight) < 0.5, -1.0, 1.0))


def calibrate_batch_norms(model: CE2P, images: torch.Tensor) -> None:
    """Set every norm's running statistics to those its inputs have on `images` (float32, batch >= 2).

    SCHP re-estimates batch norm statistics after averaging weights (`bn_re_estimate`); here it keeps a
    randomly initialised network's activations near unit scale, which half precision needs: untouched, a
    random ResNet-101 overflows float16 within a few stages.
    """
    norms = [m for m in model.modules() if isinstance(m, ActivatedBatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0  # running statistics := this batch's statistics
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def smooth_random_images(count: int, size: int, device: str | torch.device) -> torch.Tensor:
    """Normalised-range images with photo-like spatial correlation (white noise would understate how much
    pooled features vary between real images, and so their norms' variances)."""
    coarse = torch.randn(count, 3, 6, 6, device=device)
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return fine + 0.1 * torch.randn_like(fine)


def build_full_size_random(
    device: str | torch.device = "cuda",
    dtype: torch.dtype = torch.float16,
    dataset: str = "lip",
    seed: int = 0,
) -> SCHPBackend:
    """The published-size ResNet-101 CE2P with random weights (for GPU benchmarks without the checkpoint).

    Its parse means nothing and may be all background, so it never raises NoPersonFound.
    """
    spec = dataset_spec(dataset)
    torch.manual_seed(seed)
    model = CE2P(CE2PConfig(num_classes=spec.num_classes)).to(device)
    calibrate_batch_norms(model, smooth_random_images(8, 193, device))
    return SCHPBackend(model, dataset, device=device, dtype=dtype, require_person=False)
