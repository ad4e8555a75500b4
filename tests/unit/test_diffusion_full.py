"""LaDI-VTON's full try-on backend, built from a tiny random configuration of the same code.

Every network is written in the official file format (save_random), loaded back through from_pretrained, run
forward on the CPU, and its outputs checked for the shapes and ranges the next stage takes, and against the
reference where this code once differed from it (the CLIP input, concurrent calls, damaged files).
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from services.diffusion.backends.ladi_vton import (
    CLIP_DIR,
    SD_DIR,
    SIZE_ENV,
    LadiVtonBackend,
    make_scheduler,
)
from services.diffusion.models.emasc import emasc_channels
from services.diffusion.models.ladi_unet import INPUT_LAYOUT
from services.diffusion.models.published_configs import SD2_VAE
from services.diffusion.models.text_encoding import PLACEHOLDER_TOKEN, encode_with_pseudo_words, tokenize
from services.diffusion.pipelines.ladi_vton import CLIP_MEAN, CLIP_STD, clip_processor_pixels
from services.diffusion.testing import TINY_CONFIG, legacy_vae_keys, save_random
from services.diffusion.types import TryOnInputs
from vton.runtime.checkpoints import WeightsMismatch
from vton.runtime.errors import InvalidInput, WeightsMissing
from vton.runtime.posemap import pose_heatmaps

FIXTURES = Path(__file__).parents[1] / "fixtures"

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
    _assert_same(legacy_vae_keys(pipe.vae.state_dict()), load(f"{SD_DIR}/vae/diffusion_pytorch_model.bin"))
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


def test_clip_pixels_are_what_transformers_4_27_3_makes_of_a_float_image():
    """The fixture is transformers 4.27.3's CLIPImageProcessor run on float images in [0, 1] (see its script):
    8-bit truncation, one rescale by 1/255, CLIP's normalisation."""
    folder = FIXTURES / "clip_processor_4_27_3"
    fixture = {name: np.load(folder / f"{name}.npy") for name in ("images", "pixel_values")}
    pixels = clip_processor_pixels(torch.from_numpy(fixture["images"]))
    np.testing.assert_allclose(pixels.numpy(), fixture["pixel_values"], rtol=0, atol=1e-5)
    assert (
        fixture["pixel_values"].min() < -1.7 and fixture["pixel_values"].max() > 2.0
    )  # a [0, 1] image to CLIP


def test_clip_sees_the_garment_in_zero_to_one_truncated_to_8_bits(backend):
    pipe = backend.pipeline
    size = pipe.vision_encoder.config.image_size
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    for garment, value in (
        (1.0, 1.0),
        (-1.0, 0.0),
        (0.0, 127 / 255),
    ):  # grey 0.5 * 255 = 127.5 truncates to 127
        pixels = pipe.clip_pixels(torch.full((1, 3, HEIGHT, WIDTH), garment))
        assert pixels.shape == (1, 3, size, size)
        torch.testing.assert_close(pixels[0, :, 0, 0], (value - mean) / std)


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


def test_a_plain_text_forward_during_a_splice_in_another_thread_gets_no_pseudo_words(backend):
    """Concurrent calls share the text encoder: while one call's prompt is being encoded with its pseudo-words,
    another thread's forward (the unconditional prompt of classifier-free guidance) must see none of them."""
    te, tok = backend.pipeline.text_encoder, backend.pipeline.tokenizer
    ids = tokenize(tok, ["a photo of a model wearing a dress " + " $ " * 16])
    placeholder = tok.convert_tokens_to_ids(PLACEHOLDER_TOKEN)
    with torch.no_grad():
        plain = te(ids).last_hidden_state
    splicing, plain_done = threading.Event(), threading.Event()
    splicer = threading.current_thread()

    def pause_the_splicing_call(_module, _args):
        if threading.current_thread() is splicer:
            splicing.set()
            assert plain_done.wait(30)

    def plain_forward() -> torch.Tensor:
        assert splicing.wait(30)
        with torch.no_grad():
            out = te(ids).last_hidden_state
        plain_done.set()
        return out

    handle = te.get_submodule("encoder").register_forward_pre_hook(pause_the_splicing_call)
    try:
        with ThreadPoolExecutor(1) as pool:
            meanwhile = pool.submit(plain_forward)
            with torch.no_grad():
                spliced = encode_with_pseudo_words(
                    te, ids, torch.randn(1, 16, te.config.hidden_size), placeholder
                )
            during = meanwhile.result()
    finally:
        handle.remove()
    torch.testing.assert_close(during, plain)
    assert not torch.allclose(spliced, plain)


# diffusers' DPM-Solver code on numpy 2
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("scheduler", ["ddim", "dpm-solver++"])
def test_pipeline_runs_two_steps_on_the_calls_own_scheduler(backend, scheduler):
    pipe = backend.pipeline
    own = make_scheduler(scheduler, backend.scheduler_config)
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
        generator=torch.Generator().manual_seed(0),
        scheduler=own,
    )
    assert len(own.timesteps) == 2
    assert (
        pipe.scheduler.timesteps is None or len(pipe.scheduler.timesteps) != 2
    )  # the shared one is untouched
    assert out.shape == (1, 3, HEIGHT, WIDTH)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_the_scheduler_is_a_per_request_option(backend, inputs):
    ddim = backend.try_on(inputs)
    inputs.scheduler = "dpm-solver++"
    assert not np.array_equal(backend.try_on(inputs), ddim)
    inputs.scheduler = "ddim"
    assert np.array_equal(backend.try_on(inputs), ddim)  # "" is DDIM, the release's sampler
    inputs.scheduler = "euler"
    with pytest.raises(InvalidInput, match="euler"):
        backend.try_on(inputs)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_concurrent_calls_give_what_the_same_calls_give_one_after_the_other(backend, inputs):
    """Two DPM-Solver++ try-ons with different step counts, held in lockstep so that every step of one runs
    between two steps of the other: each must get exactly its image of a call made alone."""
    first = TryOnInputs(**{**vars(inputs), "steps": 3, "seed": 1, "scheduler": "dpm-solver++"})
    second = TryOnInputs(**{**vars(inputs), "steps": 5, "seed": 2, "scheduler": "dpm-solver++"})
    alone = [backend.try_on(first), backend.try_on(second)]

    lockstep = threading.Barrier(2, timeout=60)

    def interleaved(call: TryOnInputs) -> np.ndarray:
        steps_done = 0

        def on_step() -> None:
            nonlocal steps_done
            steps_done += 1
            if steps_done <= first.steps:  # while both run: no call may take two steps in a row
                lockstep.wait()

        return backend.try_on(TryOnInputs(**{**vars(call), "on_step": on_step}))

    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(interleaved, [first, second]))
    np.testing.assert_array_equal(together[0], alone[0])
    np.testing.assert_array_equal(together[1], alone[1])


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


def test_without_a_pose_map_the_keypoints_draw_it_at_the_working_size(backend, inputs):
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[1] = (35, 20, 0.9)  # person pixels (90x70); the working size is 64x48
    keypoints[5] = (50, 30, 0.8)
    inputs.pose_map, inputs.keypoints = None, keypoints
    pose = backend.pose_map(inputs, (HEIGHT, WIDTH))
    scaled = keypoints.copy()
    scaled[:, :2] *= (WIDTH / 70, HEIGHT / 90)
    np.testing.assert_allclose(pose[0].numpy(), pose_heatmaps(scaled, WIDTH, HEIGHT), atol=1e-5)
    with_keypoints = backend.try_on(inputs)
    inputs.keypoints = None  # neither: the UNet gets an empty pose map
    assert not np.array_equal(backend.try_on(inputs), with_keypoints)
    inputs.keypoints = np.zeros((17, 3), np.float32)
    with pytest.raises(InvalidInput, match="keypoints"):
        backend.try_on(inputs)


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


def test_the_working_size_is_a_setting_of_the_stage(folder, backend, monkeypatch):
    assert backend.size == (HEIGHT, WIDTH)  # the first resolution: 512x384 for the released checkpoints
    h, w = TINY_CONFIG["resolutions"][1]
    monkeypatch.setenv(SIZE_ENV, f"{h}x{w}")
    assert LadiVtonBackend.from_pretrained(folder).size == (h, w)
    monkeypatch.setenv(SIZE_ENV, f"{w}x{h}")  # width first: not a size this backend runs at
    with pytest.raises(ValueError, match=f"{SIZE_ENV}=.*{h}x{w}"):
        LadiVtonBackend.from_pretrained(folder)


def test_missing_files_are_named(tmp_path):
    folder = save_random(tmp_path / "ladi-vton-vitonhd")
    (folder / "emasc_vitonhd.pth").unlink()
    with pytest.raises(WeightsMissing, match="emasc_vitonhd.pth"):
        LadiVtonBackend.from_pretrained(folder)


def _state_file(path: Path, change) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    change(state)
    torch.save(state, path)


def _drop(key: str):
    return lambda state: state.pop(key)


def _rename(key: str, new: str):
    return lambda state: state.__setitem__(new, state.pop(key))


# (file, a key it holds) for every file the backend loads weights from
WEIGHT_FILES = [
    ("unet_vitonhd.pth", "conv_in.weight"),
    ("emasc_vitonhd.pth", "conv.0.0.weight"),
    ("inversion_adapter_vitonhd.pth", "post_layernorm.weight"),
    (f"{SD_DIR}/text_encoder/pytorch_model.bin", "text_model.final_layer_norm.weight"),
    (f"{SD_DIR}/vae/diffusion_pytorch_model.bin", "decoder.conv_in.weight"),
    (f"{CLIP_DIR}/pytorch_model.bin", "vision_model.post_layernorm.weight"),
]


@pytest.fixture(scope="module")
def damaged_copies(folder, tmp_path_factory):
    """A copy of the tiny folder per (file, damage), damaged once for the module."""
    root = tmp_path_factory.mktemp("damaged")
    copies = {}
    for name, key in WEIGHT_FILES:
        for damage, change in (("missing", _drop(key)), ("renamed", _rename(key, key + "_renamed"))):
            copy = root / f"{len(copies)}" / "ladi-vton-vitonhd"
            shutil.copytree(folder, copy)
            _state_file(copy / name, change)
            copies[(name, damage)] = copy
    return copies


@pytest.mark.parametrize("name, key", WEIGHT_FILES)
def test_a_file_without_a_key_is_refused_naming_the_file_and_the_key(damaged_copies, name, key):
    with pytest.raises(WeightsMismatch) as error:
        LadiVtonBackend.from_pretrained(damaged_copies[(name, "missing")])
    message = str(error.value)
    assert name in message and "missing keys" in message
    assert key.removeprefix("text_model.") in message  # transformers names the text tower's keys without it


@pytest.mark.parametrize("name, key", WEIGHT_FILES)
def test_a_file_with_a_renamed_key_is_refused_naming_both_keys(damaged_copies, name, key):
    with pytest.raises(WeightsMismatch) as error:
        LadiVtonBackend.from_pretrained(damaged_copies[(name, "renamed")])
    message = str(error.value)
    assert name in message
    assert (
        key.removeprefix("text_model.") in message and key.removeprefix("text_model.") + "_renamed" in message
    )
