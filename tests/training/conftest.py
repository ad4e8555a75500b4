"""Fixtures of the trainer tests: tiny random networks in the official file layouts, and synthetic samples.

The tiny network configurations and the writers of their files are imported here and nowhere else in the trainer
tests, so moving them (services/<stage>/testing.py) means changing these imports only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from services.diffusion.backends.ladi_vton import SD_DIR
from services.diffusion.testing import save_random as save_random_diffusion
from services.parsing.testing import TINY_CONFIG as TINY_SCHP
from services.parsing.testing import save_random as save_random_schp
from services.pose.testing import TINY_CONFIG as TINY_OPENPOSE
from services.pose.testing import save_random as save_random_openpose
from services.warp.testing import TINY_REFINEMENT, TINY_TPS
from services.warp.testing import save_random as save_random_warp
from training.config import TrainConfig
from training.data.sample import TryOnSample
from vton.runtime.vocab import Lip

__all__ = ["TINY_OPENPOSE", "TINY_REFINEMENT", "TINY_SCHP", "TINY_TPS"]


def _gaussians(points: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    maps = [torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / sigma**2) for x, y in points.tolist()]
    return torch.stack(maps)


class SyntheticTryOn(Dataset):
    """Person photos of a coloured torso on a smooth background, their garment flat on white, the LIP parse, an
    upright COCO-18 skeleton, its pose map and LaDI-VTON's masks: every field of TryOnSample, deterministic per
    index, so a test can overfit a fixed batch or check that a resumed run saw the same samples."""

    def __init__(self, count: int, height: int = 64, width: int = 48, seed: int = 0):
        self.count, self.height, self.width, self.seed = count, height, width, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> TryOnSample:
        h, w = self.height, self.width
        g = torch.Generator().manual_seed(self.seed * 1000 + index)
        background = torch.nn.functional.interpolate(
            torch.rand(1, 3, 4, 3, generator=g) * 2 - 1, size=(h, w), mode="bilinear", align_corners=False
        )[0]
        colour = torch.rand(3, 1, 1, generator=g) * 1.6 - 0.8
        cx = w * (0.45 + 0.1 * torch.rand(1, generator=g).item())
        top, bottom = round(h * 0.3), round(h * 0.65)
        left, right = round(cx - w * 0.22), round(cx + w * 0.22)
        parse = torch.zeros(h, w, dtype=torch.int64)
        parse[round(h * 0.1) : top, round(cx - w * 0.1) : round(cx + w * 0.1)] = Lip.FACE
        parse[top:bottom, left:right] = Lip.UPPER_CLOTHES
        parse[bottom : round(h * 0.95), left + 2 : right - 2] = Lip.PANTS
        person = background.clone()
        person[:, parse == Lip.FACE] = 0.6
        person[:, parse == Lip.PANTS] = -0.5
        person = torch.where(parse == Lip.UPPER_CLOTHES, colour.expand(3, h, w), person)
        garment = torch.ones(3, h, w)
        garment_mask = torch.zeros(1, h, w)
        gt, gb, gl, gr = round(h * 0.2), round(h * 0.8), round(w * 0.2), round(w * 0.8)
        garment[:, gt:gb, gl:gr] = colour
        garment_mask[:, gt:gb, gl:gr] = 1
        keypoints = torch.zeros(18, 3)
        joints = {
            0: (cx, h * 0.18), 1: (cx, top), 2: (left, top), 5: (right, top), 3: (left - 2, h * 0.45),
            6: (right + 2, h * 0.45), 4: (left - 2, h * 0.6), 7: (right + 2, h * 0.6), 8: (cx - 5, bottom),
            11: (cx + 5, bottom), 9: (cx - 5, h * 0.8), 12: (cx + 5, h * 0.8), 10: (cx - 5, h * 0.93),
            13: (cx + 5, h * 0.93), 14: (cx - 2, h * 0.15), 15: (cx + 2, h * 0.15), 16: (cx - 4, h * 0.16),
            17: (cx + 4, h * 0.16),
        }  # fmt: skip
        for part, (x, y) in joints.items():
            keypoints[part] = torch.tensor([x, y, 1.0])
        pose_map = _gaussians(keypoints[:, :2], h, w, sigma=max(2.0, 9.0 * h / 512))
        agnostic = torch.zeros(1, h, w)
        agnostic[:, top - 2 : bottom + 2, left - 3 : right + 3] = 1
        return TryOnSample(
            name=f"{index:05d}_00.jpg",
            garment_name=f"{index:05d}_00.jpg",
            category="upper_body",
            person=person,
            garment=garment,
            garment_mask=garment_mask,
            parse=parse,
            keypoints=keypoints,
            pose_map=pose_map,
            agnostic_mask=agnostic,
            masked_person=person * (1 - agnostic),
        )


@pytest.fixture
def synthetic():
    return SyntheticTryOn


# SD-2's trained UNet is steered by its prompt; a random one hardly is (its cross-attention adds little to the
# residual stream, and its output is a fraction of the noise's size), so no adapter could change its prediction
# much. The tiny SD-2 UNet has its cross-attention outputs scaled up, so the prompt carries most of the prediction,
# and its output layer scaled up, so the prediction has the size of the noise it predicts or more. Without the
# first (the output layer alone) the inversion adapter's loss falls by about 15%; with both, by about 60%.
PROMPT_GAIN = 10.0
OUTPUT_GAIN = 4.0


def write_sd2_inpainting_unet(diffusion_folder: Path) -> Path:
    """SD-2-inpainting's own 9-channel UNet weights beside a tiny diffusion folder's unet/config.json (the file the
    inversion adapter is trained against and the try-on UNet is widened from; the release's manifest lacks it),
    random but steered by its prompt (see PROMPT_GAIN)."""
    from diffusers import UNet2DConditionModel

    unet_dir = diffusion_folder / SD_DIR / "unet"
    config = json.loads((unet_dir / "config.json").read_text())
    with torch.random.fork_rng():
        torch.manual_seed(1)
        unet = UNet2DConditionModel.from_config(config)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if ".attn2.to_out." in name:  # attn2: the cross-attention over the prompt's states
                parameter.mul_(PROMPT_GAIN)
            elif name.startswith("conv_out."):
                parameter.mul_(OUTPUT_GAIN)
    path = unet_dir / "diffusion_pytorch_model.bin"
    torch.save(unet.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A models directory with every trainable backend's files at tiny size, in the official layouts."""
    root = tmp_path_factory.mktemp("models")
    save_random_warp(root / "ladi-vton-warp-vitonhd", "vitonhd")
    save_random_diffusion(root / "ladi-vton-vitonhd")
    write_sd2_inpainting_unet(root / "ladi-vton-vitonhd")
    save_random_openpose(root / "openpose-body")
    save_random_schp(root / "schp-lip", "lip")
    return root


def halved(losses: dict[int, dict[str, float]], key: str = "loss") -> tuple[float, float]:
    """(first, best of the last three) of a run's losses, for "falls by half or more"."""
    steps = sorted(losses)
    last = min(losses[s][key] for s in steps[-3:])
    assert all(math.isfinite(losses[s][key]) for s in steps)
    return losses[steps[0]][key], last


def tiny_config(models, steps: int, **changes) -> TrainConfig:
    """A CPU run on the tiny networks of `models` at 64x48, batch 2, checkpoint and export at the end."""
    settings = dict(
        steps=steps,
        batch_size=2,
        learning_rate=1e-3,
        mixed_precision="no",
        device="cpu",
        models_dir=str(models),
        height=64,
        width=48,
        checkpoint_every=steps,
    )
    return TrainConfig(**{**settings, **changes})
