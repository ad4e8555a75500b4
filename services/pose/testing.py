"""OpenPose with random weights, for tests (tiny, written in the release's file format) and GPU benchmarks
(published size, in memory). Nothing here is used to serve a request."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from services.pose.backends.openpose import CHECKPOINT, CONFIG_FILE, OpenPoseBackend
from services.pose.models.openpose_body import BodyPoseModel, OpenPoseConfig, checkpoint_from_module

TINY_CONFIG = OpenPoseConfig(
    vgg_channels=(4, 8, 8, 16), cpm_channels=(16, 8), stage1_hidden=16, stage_channels=8
)


def save_random(folder: Path, config: OpenPoseConfig = TINY_CONFIG, seed: int = 0) -> Path:
    """Random weights in the official file's layout (`body_pose_model.pth`, Caffe layer names without the block
    prefix, a plain state dict saved with torch.save) plus `vton_config.json`; returns the checkpoint's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BodyPoseModel(config)
    path = folder / CHECKPOINT
    torch.save(checkpoint_from_module(model), path)
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
    return path


def build_full_size_random(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **kwargs
) -> OpenPoseBackend:
    """An OpenPoseBackend with the published network (52.3 M parameters) and random weights, touching no file.

    Returns the backend itself (model on `device` in `dtype`, the four default scales unless `scales=` is given):
    `network_maps(image)` has the release's compute and memory; `estimate` runs but a random network finds nobody.
    """
    return OpenPoseBackend(BodyPoseModel(), device, dtype, **kwargs)
