"""tryon-lite: the generator's files and shapes, and the backend's behaviour on what the diffusion stage sends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from services.diffusion.backends import BACKENDS
from services.diffusion.backends.tryon_lite import TryOnLiteBackend
from services.diffusion.models.tryon_lite import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    TryOnLite,
    TryOnLiteConfig,
    parse_channels,
)
from services.diffusion.types import TryOnInputs
from vton.runtime.backend import select_backend
from vton.runtime.errors import InvalidInput, WeightsMissing

TINY = TryOnLiteConfig(height=64, width=48, channels=(8, 16, 32))


def tiny(seed: int = 0, config: TryOnLiteConfig = TINY) -> TryOnLite:
    torch.manual_seed(seed)
    model = TryOnLite(config)
    with torch.no_grad():  # a head of real size, so outputs differ from one input to another
        model.head.weight.normal_(0, 0.05)
    return model.eval()


def network_inputs(config: TryOnLiteConfig = TINY, batch: int = 2, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = config.height, config.width
    agnostic = (torch.rand(batch, 1, h, w, generator=g) > 0.5).float()
    person = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    return [
        person * (1 - agnostic),
        agnostic,
        torch.rand(batch, 3, h, w, generator=g) * 2 - 1,
        (torch.rand(batch, 1, h, w, generator=g) > 0.5).float(),
        torch.rand(batch, 18, h, w, generator=g),
    ]


def test_try_on_blends_the_warped_garment_and_the_rendering_by_the_composition_mask():
    model = tiny()
    inputs = network_inputs()
    with torch.no_grad():
        out = model(*inputs)
    warped = inputs[2]
    assert out.tryon.shape == (2, 3, 64, 48) and out.composition_mask.shape == (2, 1, 64, 48)
    assert out.composition_mask.min() >= 0 and out.composition_mask.max() <= 1
    expected = out.composition_mask * warped + (1 - out.composition_mask) * out.rendered
    torch.testing.assert_close(out.tryon, expected)


def test_save_pretrained_writes_config_and_safetensors_that_load_to_the_same_network(tmp_path):
    model = tiny(3)
    folder = model.save_pretrained(tmp_path / "tryon-lite")
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["_class_name"] == "TryOnLite" and config["channels"] == [8, 16, 32]
    assert set(load_file(str(folder / WEIGHTS_NAME))) == set(model.state_dict())
    loaded = TryOnLite.from_pretrained(folder)
    assert loaded.config == model.config
    inputs = network_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs).tryon, model(*inputs).tryon)


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"height": 62}, "multiples of 4"),
        ({"channels": (8,)}, "at least two levels"),
        ({"channels": (8, 12)}, "multiple of norm_groups"),
        ({"category": "hats"}, "category must be one of"),
    ],
)
def test_a_config_that_cannot_work_is_refused_naming_the_field(fields, needle):
    base = {"height": 64, "width": 48, "channels": (8, 16, 32)}
    with pytest.raises(ValueError, match=needle):
        TryOnLiteConfig(**{**base, **fields})


def test_an_unknown_config_field_is_named():
    with pytest.raises(ValueError, match="unknown TryOnLiteConfig field.*colour"):
        TryOnLiteConfig.from_dict({"height": 64, "colour": 3})


def test_inputs_of_the_wrong_size_name_the_input():
    inputs = network_inputs()
    inputs[4] = inputs[4][:, :17]
    with pytest.raises(ValueError, match=r"pose_map must be \[B, 18, 64, 48\]"):
        tiny()(*inputs)


def test_parse_groups_are_channels_outside_the_agnostic_region_only():
    parse = torch.tensor([[[5, 14, 2], [14, 0, 5]]])
    agnostic = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])
    channels = parse_channels(parse, agnostic, ((14, 15), (2,)))
    # label 5 (the old garment) is in no group; the arm at (0, 1) lies inside the region and is dropped
    assert channels[0, 0].tolist() == [[0, 1, 0], [1, 0, 0]]
    assert channels[0, 1].tolist() == [[0, 0, 1], [0, 0, 0]]
    config = TryOnLiteConfig(height=64, width=48, channels=(8, 16, 32), parse_groups=((14, 15), (2,)))
    model = tiny(config=config)
    assert model.stem.in_channels == 26 + 2
    with pytest.raises(ValueError, match="takes the parse"):
        model(*network_inputs(config))
    labels = torch.randint(0, 20, (2, 64, 48))
    assert model(*network_inputs(config), parse=labels).tryon.shape == (2, 3, 64, 48)


# -- the backend ---------------------------------------------------------------------------------------------


def tryon_inputs(h: int = 150, w: int = 100, category: str = "upper_body", seed: int = 2) -> TryOnInputs:
    rng = np.random.default_rng(seed)
    person = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    agnostic = np.zeros((h, w), np.uint8)
    agnostic[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    warped_mask = np.zeros((h, w), np.uint8)
    warped_mask[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 255
    return TryOnInputs(
        person=person,
        masked_person=np.where(agnostic[..., None] > 0, 128, person).astype(np.uint8),
        agnostic_mask=agnostic,
        warped_garment=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        warped_mask=warped_mask,
        garment=rng.integers(0, 256, (80, 60, 3), dtype=np.uint8),
        labels=rng.integers(0, 20, (h, w), dtype=np.uint8),
        category=category,
        pose_map=rng.integers(0, 256, (18, h, w), dtype=np.uint8),
    )


def test_backend_returns_the_person_sized_image_unchanged_outside_the_mask():
    backend = TryOnLiteBackend(tiny())
    inputs = tryon_inputs()
    result = backend.try_on(inputs)
    assert result.shape == inputs.person.shape and result.dtype == np.uint8
    outside = inputs.agnostic_mask == 0
    assert np.array_equal(result[outside], inputs.person[outside])
    inside = ~outside
    assert np.abs(result[inside].astype(int) - inputs.person[inside]).mean() > 10
    assert np.array_equal(backend.try_on(inputs), result), "the same inputs give the same image"


def test_where_the_composition_mask_is_one_the_full_size_warped_garment_shows_through():
    model = tiny()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]))  # mask logit 30: sigmoid = 1
    inputs = tryon_inputs(h=300, w=200)
    result = TryOnLiteBackend(model).try_on(inputs)
    inside = inputs.agnostic_mask > 0
    # bit for bit at the person's size: the warp's resolution is kept, not the network's 64x48
    assert np.abs(result[inside].astype(int) - inputs.warped_garment[inside]).max() <= 1


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"category": "lower_body"}, "dresses upper_body garments only"),
        ({"width": 50, "height": 64}, "cannot run at 50x64"),
        ({"pose_map": np.zeros((17, 150, 100), np.uint8)}, "pose_map must be"),
        ({"warped_mask": np.zeros((10, 10), np.uint8)}, "warped_mask is 10x10"),
    ],
)
def test_bad_requests_are_invalid_input_naming_the_problem(change, needle):
    inputs = tryon_inputs()
    for key, value in change.items():
        setattr(inputs, key, value)
    with pytest.raises(InvalidInput, match=needle):
        TryOnLiteBackend(tiny()).try_on(inputs)


def test_the_registry_loads_it_only_when_its_files_are_present(tmp_path, monkeypatch):
    monkeypatch.setenv("VTON_MODELS_DIR", str(tmp_path))
    with pytest.raises(WeightsMissing, match="diffusion_pytorch_model.safetensors.*vton train tryon-lite"):
        select_backend(BACKENDS, "tryon-lite")
    assert select_backend(BACKENDS, "auto")[0].name == "composite"
    tiny().save_pretrained(tmp_path / "tryon-lite")
    info, backend = select_backend(BACKENDS, "auto")
    assert info.name == "tryon-lite" and info.kind == "full"
    assert backend.try_on(tryon_inputs()).shape == (150, 100, 3)
