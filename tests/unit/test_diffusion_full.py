"""LaDI-VTON's full try-on backend, built from a tiny random configuration of the same code.

Every network is written in the official file format (save_random), loaded back through from_pretrained, run
forward on the CPU, and its outputs checked for the shapes and ranges the next stage takes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.diffusion.backends.ladi_vton import (
    CLIP_DIR,
    SD_DIR,
    LadiVtonBackend,
    _legacy_vae_keys,
    save_random,
)
from services.diffusion.models.emasc import emasc_channels
from services.diffusion.models.ladi_unet import INPUT_LAYOUT
from services.diffusion.models.published_configs import SD2_VAE
from services.diffusion.models.text_encoding import PLACEHOLDER_TOKEN, encode_with_pseudo_words, tokenize
from services.diffusion.tiny import TINY_CONFIG
from services.diffusion.types import TryOnInputs
from vton.runtime.errors import InvalidInput, WeightsMissing

HEIGHT, WIDTH = TINY_CONFIG["resolutions"][0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_random(tmp_path_factory.mktemp("ladi-vton-vitonhd"))


@pytest.fixture(scope="module")
def backend(folder):
    return LadiVtonBackend.from_pretrained(folder)


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    h, w = 90, 70  # not the working size: the backend resizes in and out
    person = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[20:70, 12:58] = 255
    masked = person.copy()
    masked[mask > 0] = 128
    pose = np.zeros((18, h, w), np.uint8)
    pose[1, 15:25, 30:40] = 255
    return TryOnInputs(
        person=person,
        masked_person=masked,
        agnostic_mask=mask,
        warped_garment=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        warped_mask=mask,
        garment=rng.integers(0, 256, (64, 48, 3), dtype=np.uint8),
        labels=np.zeros((h, w), np.uint8),
        category="upper_body",
        pose_map=pose,
        seed=7,
        steps=2,
    )


def _assert_same(loaded: dict, stored: dict) -> None:
    assert set(loaded) == set(stored)
    for key, value in stored.items():
        assert torch.equal(loaded[key], value), key


def test_every_network_round_trips_through_the_official_files(folder, backend):
    pipe = backend.pipeline

    def load(path):
        return torch.load(folder / path, map_location="cpu", weights_only=True)

    _assert_same(pipe.unet.state_dict(), load("unet_vitonhd.pth"))
    _assert_same(pipe.emasc.state_dict(), load("emasc_vitonhd.pth"))
    _assert_same(pipe.inversion_adapter.state_dict(), load("inversion_adapter_vitonhd.pth"))
    # SD-2's VAE file uses the 2022 attention names; diffusers converts them on load
    _assert_same(_legacy_vae_keys(pipe.vae.state_dict()), load(f"{SD_DIR}/vae/diffusion_pytorch_model.bin"))
    text = load(f"{SD_DIR}/text_encoder/pytorch_model.bin")
    text = {k.removeprefix("text_model."): v for k, v in text.items() if not k.endswith("position_ids")}
    _assert_same(pipe.text_encoder.state_dict(), text)
    clip = load(f"{CLIP_DIR}/pytorch_model.bin")
    vision = {
        k: v
        for k, v in clip.items()
        if (k.startswith("vision_model.") or k.startswith("visual_projection"))
        and not k.endswith("position_ids")
    }
    _assert_same(pipe.vision_encoder.state_dict(), vision)


def test_extended_unet_takes_31_channels_in_the_official_order_and_predicts_4(backend):
    unet = backend.pipeline.unet
    assert [c for _, c in INPUT_LAYOUT] == [4, 1, 4, 18, 4]
    assert unet.config.in_channels == 31 and unet.conv_in.weight.shape[1] == 31
    hidden = backend.pipeline.text_encoder.config.hidden_size
    x = torch.randn(2, 31, 8, 6)
    with torch.no_grad():
        out = unet(x, 10, encoder_hidden_states=torch.randn(2, 77, hidden)).sample
    assert out.shape == (2, 4, 8, 6)
    with pytest.raises(RuntimeError):
        unet(torch.randn(1, 30, 8, 6), 10, encoder_hidden_states=torch.randn(1, 77, hidden))


def test_emasc_widths_are_the_releases_and_fit_the_decoder(backend):
    # the published VAE gives the hubconf's numbers
    assert emasc_channels(SD2_VAE, [1, 2, 3, 4, 5]) == ([128, 128, 128, 256, 512], [128, 256, 512, 512, 512])
    pipe = backend.pipeline
    x = torch.rand(1, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        dist, features = pipe.vae.encode_with_features(x)
        layers = pipe.config.emasc_int_layers
        skips = pipe.emasc([features[i] for i in layers])
        # each adapted feature has the size of the decoder point it is added to
        expected_sizes = [(HEIGHT, WIDTH), (HEIGHT, WIDTH), (HEIGHT // 2, WIDTH // 2)]
        expected_sizes += [(HEIGHT // 4, WIDTH // 4), (HEIGHT // 8, WIDTH // 8)]
        _, out_channels = emasc_channels(pipe.vae.config, layers)
        assert [tuple(s.shape[1:]) for s in skips] == [
            (c, *hw) for c, hw in zip(out_channels, expected_sizes, strict=True)
        ]
        z = dist.mode()
        plain = pipe.vae.decode_with_features(z)
        with_skips = pipe.vae.decode_with_features(z, skips, layers)
    assert with_skips.shape == plain.shape == (1, 3, HEIGHT, WIDTH)
    assert not torch.equal(with_skips, plain)


def test_vae_feature_paths_match_diffusers_own_encode_and_decode(backend):
    vae = backend.pipeline.vae
    x = torch.rand(2, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        dist, features = vae.encode_with_features(x)
        reference = vae.encode(x).latent_dist
        assert torch.allclose(dist.mean, reference.mean, atol=1e-6)
        assert torch.allclose(dist.std, reference.std, atol=1e-6)
        assert features[0] is x and len(features) == 2 + len(vae.encoder.down_blocks)
        z = dist.mode()
        assert torch.allclose(vae.decode_with_features(z), vae.decode(z).sample, atol=1e-6)


def test_inversion_adapter_gives_num_vstar_tokens_in_the_text_space(backend):
    pipe = backend.pipeline
    garment = torch.rand(3, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        words = pipe.pseudo_word_embeddings(garment)
    assert words.shape == (3, TINY_CONFIG["num_vstar"], pipe.text_encoder.config.hidden_size)
    assert torch.isfinite(words).all()


def test_clip_input_reproduces_the_official_double_rescale(backend):
    pipe = backend.pipeline
    white = torch.ones(1, 3, HEIGHT, WIDTH)
    pixels = pipe.clip_pixels(white)
    size = pipe.vision_encoder.config.image_size
    assert pixels.shape == (1, 3, size, size)
    # [0, 1] images divided by 255 once more (transformers 4.27's processor), then CLIP-normalised
    expected = (1 / 255 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711]
    )
    assert torch.allclose(pixels[0, :, 0, 0], expected, atol=1e-5)


def test_pseudo_words_replace_the_placeholders_and_nothing_before_them(backend):
    pipe = backend.pipeline
    te, tok = pipe.text_encoder, pipe.tokenizer
    ids = tokenize(tok, ["a photo of a model wearing a dress " + " $ " * 16])
    placeholder = tok.convert_tokens_to_ids(PLACEHOLDER_TOKEN)
    assert (ids == placeholder).sum() == 16
    first = int((ids[0] == placeholder).nonzero()[0])
    with torch.no_grad():
        plain = te(ids).last_hidden_state
        same = te.get_input_embeddings()(torch.full((1, 16), placeholder))
        # the '$' embedding itself in the placeholders' places changes nothing
        assert torch.allclose(encode_with_pseudo_words(te, ids, same, placeholder), plain, atol=1e-6)
        spliced = encode_with_pseudo_words(te, ids, torch.randn(1, 16, te.config.hidden_size), placeholder)
    # the text encoder is causal: tokens before the first placeholder are unchanged, the rest change
    assert torch.allclose(spliced[:, :first], plain[:, :first], atol=1e-6)
    assert not torch.allclose(spliced[:, first:], plain[:, first:])


# diffusers' DPM-Solver code on numpy 2
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("scheduler", ["ddim", "dpm++"])
def test_pipeline_runs_two_steps_with_either_scheduler(backend, scheduler):
    backend.use_scheduler(scheduler)
    try:
        pipe = backend.pipeline
        g = torch.Generator().manual_seed(0)
        image = torch.rand(1, 3, HEIGHT, WIDTH) * 2 - 1
        mask = torch.zeros(1, 1, HEIGHT, WIDTH)
        mask[..., 16:48, 8:40] = 1
        out = pipe(
            image=image,
            mask=mask,
            pose_map=torch.rand(1, 18, HEIGHT, WIDTH),
            warped_garment=torch.rand(1, 3, HEIGHT, WIDTH) * 2 - 1,
            garment=torch.rand(1, 3, HEIGHT, WIDTH) * 2 - 1,
            category="upper_body",
            num_inference_steps=2,
            guidance_scale=7.5,
            generator=g,
        )
        assert len(pipe.scheduler.timesteps) == 2
    finally:
        backend.use_scheduler("ddim")
    assert out.shape == (1, 3, HEIGHT, WIDTH)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_try_on_keeps_the_person_outside_the_mask(backend, inputs):
    out = backend.try_on(inputs)
    assert out.shape == inputs.person.shape and out.dtype == np.uint8
    outside = inputs.agnostic_mask == 0
    assert np.array_equal(out[outside], inputs.person[outside])
    assert (out[~outside] != inputs.person[~outside]).any()


def test_seed_decides_the_image(folder, backend, inputs):
    first = backend.try_on(inputs)
    # a second load of the same files gives the same image for the same seed
    assert np.array_equal(LadiVtonBackend.from_pretrained(folder).try_on(inputs), first)
    inputs.seed = 8
    assert not np.array_equal(backend.try_on(inputs), first)


def test_guidance_and_pose_change_the_image(backend, inputs):
    base = backend.try_on(inputs)
    inputs.guidance_scale = 1.0  # no classifier-free guidance: one UNet pass per step
    assert not np.array_equal(backend.try_on(inputs), base)
    inputs.guidance_scale = 0.0
    inputs.pose_map = None
    assert not np.array_equal(backend.try_on(inputs), base)


def test_bad_requests_are_refused(backend, inputs):
    inputs.width, inputs.height = 300, 200
    with pytest.raises(InvalidInput, match="300x200"):
        backend.try_on(inputs)
    inputs.width, inputs.height = 0, 0
    inputs.category = "dresses"  # the VITON-HD checkpoint is upper body only
    with pytest.raises(InvalidInput, match="upper_body"):
        backend.try_on(inputs)
    inputs.category = "hats"
    with pytest.raises(InvalidInput, match="category"):
        backend.try_on(inputs)


def test_second_resolution_is_honoured(backend, inputs):
    h, w = TINY_CONFIG["resolutions"][1]
    inputs.width, inputs.height = w, h
    out = backend.try_on(inputs)
    assert out.shape == inputs.person.shape


def test_missing_files_are_named(tmp_path):
    folder = save_random(tmp_path / "ladi-vton-vitonhd")
    (folder / "emasc_vitonhd.pth").unlink()
    with pytest.raises(WeightsMissing, match="emasc_vitonhd.pth"):
        LadiVtonBackend.from_pretrained(folder)
