"""LaDI-VTON's warping module with random weights, for tests (tiny, written in the release's file format) and GPU
benchmarks (published size, in memory). Nothing here is used to serve a request."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from services.warp.backends.ladi_vton import CONFIG_FILE, LadiVtonWarpBackend, checkpoint_name
from services.warp.models import ConvNetTPS, RefinementConfig, RefinementUNet, TPSConfig

TINY_TPS = TPSConfig(ngf=4, max_channels=32, regression_channels=(16, 16, 8, 8))
TINY_REFINEMENT = RefinementConfig(base_channels=4)


def save_random(
    folder: Path,
    dataset: str = "vitonhd",
    tps_config: TPSConfig = TINY_TPS,
    refinement_config: RefinementConfig = TINY_REFINEMENT,
    seed: int = 0,
) -> Path:
    """Write random weights in the release's format (`warping_{dataset}.pth` = {"tps": ..., "refinement": ...})
    plus `vton_config.json` with the sizes; returns the checkpoint's path. Tiny sizes by default.

    The TPS regressor gets small random weights on top of the official identity initialisation, so a random
    network warps (mildly) instead of returning the identity grid.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        tps, refinement = ConvNetTPS(tps_config), RefinementUNet(refinement_config)
        for module in (tps, refinement):
            for name, tensor in module.state_dict().items():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 1.5)
                elif name.endswith("running_mean"):
                    tensor.normal_(0, 0.1)
        linear = tps.loc_net.regression.linear
        linear.weight.normal_(0, 0.5 / linear.in_features**0.5)
    path = folder / checkpoint_name(dataset)
    torch.save({"tps": tps.state_dict(), "refinement": refinement.state_dict()}, path)
    config = {"tps": tps_config.to_dict(), "refinement": refinement_config.to_dict()}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return path


def build_full_size_random(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, dataset: str = "vitonhd"
) -> LadiVtonWarpBackend:
    """A LadiVtonWarpBackend with the published network sizes and random weights, touching no file.

    Returns the backend itself (networks on `device`, TPS in float32, refinement U-Net in `dtype`), ready for
    `warp(WarpInputs)` or for timing `sampling_grid` / `refine` directly: same compute and memory as the release.
    """
    return LadiVtonWarpBackend(ConvNetTPS(), RefinementUNet(), dataset, device, dtype)
