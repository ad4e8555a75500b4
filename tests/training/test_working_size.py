"""The size a module trained at is the size its backend serves at, unless a request names another.

A warping module trained at 64x48 is run at 64x48 by the warp backend (the release's 512x384 is the default only for
files that record no size); tryon-lite runs at its trained size, or at the size a request names.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from services.diffusion.backends.tryon_lite import TryOnLiteBackend
from services.diffusion.models.tryon_lite import TryOnLite, TryOnLiteConfig
from services.diffusion.types import TryOnInputs
from services.warp.backends.ladi_vton import DEFAULT_SIZE, LadiVtonWarpBackend, checkpoint_name
from services.warp.models import ConvNetTPS, RefinementConfig, RefinementUNet, TPSConfig
from services.warp.testing import save_random
from services.warp.types import WarpInputs
from tests.training.conftest import tiny_config
from tests.unit.test_tryon_lite import tryon_inputs
from training.loop import WEIGHTS, train
from training.trainers import make_trainer
from vton.runtime.errors import InvalidInput


def _uint8(image: torch.Tensor) -> np.ndarray:
    return ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def _warp_inputs(sample, height: int = 0, width: int = 0) -> WarpInputs:
    return WarpInputs(
        garment=_uint8(sample.garment),
        person=_uint8(sample.person),
        masked_person=_uint8(sample.masked_person),
        agnostic_mask=(sample.agnostic_mask[0].numpy() * 255).astype(np.uint8),
        keypoints=sample.keypoints.numpy(),
        labels=sample.parse.numpy().astype(np.uint8),
        category="upper_body",
        garment_mask=(sample.garment_mask[0].numpy() * 255).astype(np.uint8),
        height=height,
        width=width,
    )


def test_the_warp_backend_serves_a_trained_module_at_the_size_it_trained_at(tiny_models, synthetic, tmp_path):
    config = tiny_config(tiny_models, 2, height=64, width=48, init="scratch", options={"tps_steps": 1})
    train(make_trainer("warp", config), synthetic(2, 64, 48), tmp_path, log=lambda *_: None)
    backend = LadiVtonWarpBackend.from_pretrained(tmp_path / WEIGHTS / "ladi-vton-warp-vitonhd")
    assert backend.size == (64, 48)

    sample = synthetic(1, 128, 96)[0]
    default = backend.warp(_warp_inputs(sample)).warped_garment
    trained_size = backend.warp(_warp_inputs(sample, 64, 48)).warped_garment
    named = backend.warp(_warp_inputs(sample, 128, 96)).warped_garment
    assert np.array_equal(default, trained_size), "a request naming no size runs at the trained size"
    assert not np.array_equal(default, named), "a request naming a size runs at it"
    with pytest.raises(
        InvalidInput, match="120x96 is not usable: each side must be a positive multiple of 16"
    ):
        backend.warp(_warp_inputs(sample, 120, 96))


def test_a_warping_module_that_records_no_size_runs_at_the_releases(tmp_path):
    save_random(tmp_path)  # tiny networks whose vton_config.json records their sizes but no working size
    assert LadiVtonWarpBackend.from_pretrained(tmp_path).size == DEFAULT_SIZE == (512, 384)


def test_the_official_warping_module_runs_at_its_published_size(tmp_path, synthetic):
    """The release's own layout: `warping_vitonhd.pth` alone (published network sizes, no vton_config.json)."""
    tps, refinement = ConvNetTPS(TPSConfig()), RefinementUNet(RefinementConfig())
    checkpoint = {"tps": tps.state_dict(), "refinement": refinement.state_dict()}
    torch.save(checkpoint, tmp_path / checkpoint_name("vitonhd"))
    backend = LadiVtonWarpBackend.from_pretrained(tmp_path)
    assert backend.size == (512, 384)

    class Seen(Exception):
        """Raised with the size the refinement U-Net is given, sparing the CPU its run at full size."""

    def stop(module, args):
        raise Seen(tuple(args[0].shape[-2:]))

    backend.refinement.register_forward_pre_hook(stop)
    with pytest.raises(Seen) as seen:
        backend.warp(_warp_inputs(synthetic(1, 64, 48)[0]))
    assert seen.value.args == ((512, 384),)


def _tryon_inputs(height: int = 0, width: int = 0) -> TryOnInputs:
    return dataclasses.replace(tryon_inputs(), height=height, width=width)


def test_tryon_lite_runs_at_its_trained_size_unless_the_request_names_another(tmp_path):
    torch.manual_seed(0)
    model = TryOnLite(TryOnLiteConfig(height=64, width=48, channels=(8, 16, 32)))
    with torch.no_grad():  # a head of real size, so the rendering depends on what the network sees
        torch.nn.init.normal_(model.head.weight, std=0.2)
    backend = TryOnLiteBackend.from_pretrained(model.save_pretrained(tmp_path / "tryon-lite"))
    assert backend.size == (64, 48)

    default = backend.try_on(_tryon_inputs())
    assert np.array_equal(default, backend.try_on(_tryon_inputs(64, 48)))
    named = backend.try_on(_tryon_inputs(128, 96))
    assert named.shape == default.shape and not np.array_equal(named, default)
    # the same weights, not a second network: the trained one at the named size gives the same image
    direct = TryOnLiteBackend(TryOnLite(dataclasses.replace(backend.model.config, height=128, width=96)))
    direct.model.load_state_dict(backend.model.state_dict())
    assert np.array_equal(named, direct.try_on(_tryon_inputs()))
    assert backend.model.config.height == 64, "the trained network itself keeps its size"

    with pytest.raises(InvalidInput, match="cannot run at 50x64 .*multiples of 4"):
        backend.try_on(_tryon_inputs(64, 50))
    with pytest.raises(InvalidInput, match="1024x768 pixels at most"):
        backend.try_on(_tryon_inputs(2048, 1536))
