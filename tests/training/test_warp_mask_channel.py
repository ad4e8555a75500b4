"""A refinement U-Net trained here with a fourth output channel predicts the warp's mask, and the warp stage returns
that mask instead of the garment mask warped by the TPS grid (services/warp/backends/ladi_vton.py: why)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.warp.backends.ladi_vton import LadiVtonWarpBackend
from services.warp.models import ConvNetTPS, RefinementConfig, RefinementUNet
from services.warp.testing import TINY_REFINEMENT, TINY_TPS
from tests.training.conftest import tiny_config
from tests.training.test_working_size import _warp_inputs
from training.batches import to_device
from training.data.sample import collate
from training.loop import WEIGHTS, train
from training.trainers import make_trainer

MASKED_REFINEMENT = {**TINY_REFINEMENT.to_dict(), "out_channels": 4}
SCRATCH_OPTIONS = {"tps": TINY_TPS.to_dict(), "refinement": MASKED_REFINEMENT}


def _backend(mask_bias: float | None) -> LadiVtonWarpBackend:
    """Tiny random networks; with `mask_bias`, a fourth output channel that says `mask_bias` everywhere."""
    channels = 3 if mask_bias is None else 4
    refinement = RefinementUNet(
        RefinementConfig.from_dict({**TINY_REFINEMENT.to_dict(), "out_channels": channels})
    )
    if mask_bias is not None:
        with torch.no_grad():
            refinement.outc.conv.weight[3].zero_()
            refinement.outc.conv.bias[3] = mask_bias
    return LadiVtonWarpBackend(ConvNetTPS(TINY_TPS), refinement, size=(64, 48))


@pytest.mark.parametrize(("bias", "expected"), [(20.0, 255), (-20.0, 0)])
def test_the_warp_stage_returns_the_mask_the_refinement_network_predicts(synthetic, bias, expected):
    inputs = _warp_inputs(synthetic(1, 128, 96)[0])
    out = _backend(bias).warp(inputs)
    assert out.warped_mask.shape == (128, 96)
    assert np.all(out.warped_mask == expected)
    assert out.warped_garment.shape == (128, 96, 3)


def test_a_released_three_channel_network_keeps_the_tps_grids_mask(synthetic):
    inputs = _warp_inputs(synthetic(1, 128, 96)[0])
    mask = _backend(None).warp(inputs).warped_mask
    assert 0 < np.count_nonzero(mask) < mask.size, (
        "the garment mask warped by the grid: neither empty nor full"
    )


def test_the_mask_channel_learns_the_garment_region_and_is_served(synthetic, tmp_path):
    options = {"tps_steps": 0, **SCRATCH_OPTIONS}
    config = tiny_config(None, 25, learning_rate=1e-2, init="scratch", options=options)
    dataset = synthetic(2, 64, 48)
    batch = to_device(collate([dataset[0], dataset[1]]), torch.device("cpu"))

    def mask_loss(trainer) -> float:
        trainer.step = 0
        trainer.train_mode()
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            return trainer.loss(batch)["mask_bce"].item()

    before_trainer = make_trainer("warp", config)
    before_trainer.setup(torch.device("cpu"), torch.float32)
    before = mask_loss(before_trainer)
    trainer = make_trainer("warp", config)
    train(trainer, dataset, tmp_path, log=lambda *_: None)
    after = mask_loss(trainer)
    assert after <= before / 2, f"mask loss {before:.4f} -> {after:.4f}"

    backend = LadiVtonWarpBackend.from_pretrained(tmp_path / WEIGHTS / "ladi-vton-warp-vitonhd")
    assert backend.refinement.config.out_channels == 4
    assert backend.warp(_warp_inputs(dataset[0])).warped_mask.shape == (64, 48)
