"""SCHP full backend: the CE2P network's layout against the released checkpoints, and SCHP's test-time transform.

Weights here are random (tiny config via vton_config.json, same code as the published network); nothing
asserts what a trained model would say, only shapes, layouts, ranges and the geometry of the transform.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from services.parsing.backends.schp import (
    DATASETS,
    SCHPBackend,
    crop_affine,
    logits_to_photo,
    merge_flipped,
    mirror_permutation,
    person_center_scale,
)
from services.parsing.models.schp import (
    CE2P,
    ActivatedBatchNorm,
    CE2PConfig,
    CE2POutput,
    official_to_module_keys,
)
from services.parsing.testing import TINY_CONFIG, calibrate_batch_norms, save_random
from vton.runtime.checkpoints import WeightsMismatch
from vton.runtime.errors import InvalidInput, WeightsMissing

# --- the released layout, read off SCHP's networks/AugmentCE2P.py (all norms were InPlaceABNSync: 4 tensors) ---
# state-dict entries per top-level name of the published ResNet-101 CE2P: a bottleneck holds 3 convs and
# 3 norms (15 entries), a stage's first block adds a downsample conv + norm (5 more).
PUBLISHED_ENTRIES = {
    "conv1": 1,
    "bn1": 4,
    "conv2": 1,
    "bn2": 4,
    "conv3": 1,
    "bn3": 4,
    "layer1": 3 * 15 + 5,
    "layer2": 4 * 15 + 5,
    "layer3": 23 * 15 + 5,
    "layer4": 3 * 15 + 5,
    "context_encoding": 4 * 5 + 5,
    "edge": 3 * 5 + 2 + 2,
    "decoder": 5 + 5 + 10 + 2,
    "fushion": 5 + 2,
}
# Head convolutions: weight shape, and whether the conv has a bias (LIP: 20 classes).
HEAD_CONVS = {
    **{f"context_encoding.stages.{i}.1": ((512, 2048, 1, 1), False) for i in range(4)},
    "context_encoding.bottleneck.0": ((512, 2048 + 4 * 512, 3, 3), False),
    # the edge branch reads the outputs of layers 1 to 3
    **{f"edge.conv{i}.0": ((256, width, 1, 1), False) for i, width in enumerate((256, 512, 1024), start=1)},
    "edge.conv4": ((2, 256, 3, 3), True),
    "edge.conv5": ((2, 6, 1, 1), True),
    "decoder.conv1.0": ((256, 512, 1, 1), False),
    "decoder.conv2.0": ((48, 256, 1, 1), False),
    "decoder.conv3.0": ((256, 304, 1, 1), False),
    "decoder.conv3.2": ((256, 256, 1, 1), False),
    "decoder.conv4": ((20, 256, 1, 1), True),
    "fushion.0": ((256, 1024, 1, 1), False),
    "fushion.3": ((20, 256, 1, 1), True),
}
# Head norms (InPlaceABNSync with LeakyReLU) and their widths.
HEAD_NORMS = {
    **{f"context_encoding.stages.{i}.2": 512 for i in range(4)},
    "context_encoding.bottleneck.1": 512,
    "edge.conv1.1": 256,
    "edge.conv2.1": 256,
    "edge.conv3.1": 256,
    "decoder.conv1.1": 256,
    "decoder.conv2.1": 48,
    "decoder.conv3.1": 256,
    "decoder.conv3.3": 256,
    "fushion.1": 256,
}
# Byte sizes of the released files (Hugging Face mirror zhengchong/CatVTON, SCHP/): LIP and ATR differ only in
# their 20 vs 18 class channels, so the tensor bytes of our published-size networks must differ by the same.
RELEASED_BYTES = {"lip": 267_449_349, "atr": 267_445_237}

HEAD_PREFIXES = ("context_encoding", "edge", "decoder", "fushion")


def published_state_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = CE2P(CE2PConfig(num_classes=num_classes))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_head_shapes() -> dict[str, tuple[int, ...]]:
    expected = {}
    for name, (shape, has_bias) in HEAD_CONVS.items():
        expected[f"{name}.weight"] = shape
        if has_bias:
            expected[f"{name}.bias"] = (shape[0],)
    for name, width in HEAD_NORMS.items():
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            expected[f"{name}.{tensor}"] = (width,)
    return expected


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from vton_cli.examples import fetch_examples

    return np.asarray(Image.open(fetch_examples() / "avatars" / "1.png").convert("RGB"))


def test_published_network_has_the_released_key_layout():
    shapes = published_state_shapes(20)
    counts: dict[str, int] = {}
    for key in shapes:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    assert counts == PUBLISHED_ENTRIES
    assert not any(k.endswith("num_batches_tracked") for k in shapes)
    head = {k: v for k, v in shapes.items() if k.startswith(HEAD_PREFIXES)}
    assert head == expected_head_shapes()
    # ResNet-101 trunk: deep stem 64-64-128, stage widths 256/512/1024/2048, dilated stage 4
    assert shapes["conv3.weight"] == (128, 64, 3, 3)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 128, 1, 1)
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1)


def test_published_sizes_match_the_released_file_sizes():
    tensor_bytes = {
        name: 4 * sum(int(np.prod(s)) for s in published_state_shapes(DATASETS[name].num_classes).values())
        for name in RELEASED_BYTES
    }
    overhead = {name: RELEASED_BYTES[name] - tensor_bytes[name] for name in RELEASED_BYTES}
    assert overhead["lip"] == overhead["atr"]  # the same container around different class counts
    assert 0 < overhead["lip"] < 200 * 603  # zip entry per tensor, no missing or extra weights


def test_tiny_forward_gives_parsing_fusion_and_edge_logits():
    torch.manual_seed(0)
    model = CE2P(CE2PConfig.from_json({**TINY_CONFIG.to_json(), "num_classes": 20})).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 65, 49))
    assert isinstance(out, CE2POutput)
    assert out.parsing.shape == out.fusion.shape == (2, 20, 17, 13)  # stride 4, rounding up
    assert out.edge.shape == (2, 2, 17, 13)
    assert all(torch.isfinite(t).all() for t in out)


def test_save_random_writes_the_official_layout_and_round_trips(tmp_path: Path):
    path = save_random(tmp_path, "lip")
    assert path.name == "exp-schp-201908261155-lip.pth"
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["state_dict"]
    assert all(k.startswith("module.") for k in raw["state_dict"])
    assert json.loads((tmp_path / "vton_config.json").read_text())["layers"] == [1, 1, 1, 1]

    backend = SCHPBackend.from_pretrained(tmp_path, dataset="lip")
    loaded = backend.model.state_dict()
    expected = official_to_module_keys(raw["state_dict"])
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in loaded)

    fresh = CE2P(backend.model.config).eval()
    fresh.load_state_dict(expected)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x).fusion, backend.model(x).fusion)


def test_checkpoint_resaved_with_batchnorm_counters_still_loads(tmp_path: Path):
    path = save_random(tmp_path, "pascal")
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["module.bn1.num_batches_tracked"] = torch.tensor(7)
    torch.save(raw, path)
    assert SCHPBackend.from_pretrained(tmp_path, dataset="pascal").model.config.num_classes == 7


def test_an_absent_checkpoint_is_weights_missing(tmp_path: Path):
    with pytest.raises(WeightsMissing, match="exp-schp-201908301523-atr.pth"):
        SCHPBackend.from_pretrained(tmp_path, dataset="atr")


@pytest.mark.parametrize("damage", ["missing", "renamed"])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_file_and_the_keys(tmp_path: Path, damage: str):
    path = save_random(tmp_path, "atr")
    raw = torch.load(path, weights_only=True)
    tensor = raw["state_dict"].pop("module.fushion.3.bias")
    if damage == "renamed":
        raw["state_dict"]["module.fushion.3.b"] = tensor
    torch.save(raw, path)
    with pytest.raises(WeightsMismatch) as error:
        SCHPBackend.from_pretrained(tmp_path, dataset="atr")
    message = str(error.value)
    assert str(path) in message and "missing keys [fushion.3.bias]" in message
    assert ("unexpected keys [fushion.3.b]" in message) == (damage == "renamed")


@pytest.mark.parametrize("activation", [True, False])
def test_norms_scale_by_the_absolute_weight_plus_eps_as_inplace_abn(activation: bool):
    """InPlaceABN(Sync) computes (x - mean) / sqrt(var + eps) * (|weight| + eps) + bias, then its activation."""
    torch.manual_seed(0)
    norm = ActivatedBatchNorm(4, activation=activation).eval()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, -0.7, 0.0, -2.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        norm.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
        norm.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.25]))
    x = torch.randn(2, 4, 5, 3)
    view = (1, 4, 1, 1)
    expected = (x - norm.running_mean.view(view)) / torch.sqrt(norm.running_var.view(view) + 1e-5)
    expected = expected * (norm.weight.abs() + 1e-5).view(view) + norm.bias.view(view)
    if activation:
        expected = torch.nn.functional.leaky_relu(expected, 0.01)
    with torch.no_grad():
        torch.testing.assert_close(norm(x), expected)


def test_the_sign_of_a_stored_norm_weight_does_not_change_the_parse():
    torch.manual_seed(0)
    model = CE2P(CE2PConfig.from_json({**TINY_CONFIG.to_json(), "num_classes": 20})).eval()
    x = torch.randn(1, 3, 65, 49)
    with torch.no_grad():
        before = model(x).fusion
        for norm in model.modules():
            if isinstance(norm, ActivatedBatchNorm):
                norm.weight.neg_()
        torch.testing.assert_close(model(x).fusion, before)


@pytest.mark.parametrize("dataset", ["lip", "atr", "pascal"])
def test_parse_real_photo_returns_labels_at_photo_size(tmp_path: Path, photo: np.ndarray, dataset: str):
    save_random(tmp_path, dataset)
    backend = SCHPBackend.from_pretrained(tmp_path, dataset=dataset, flip=True, scales=(1.0, 0.75))
    result = backend.parse(photo)
    assert result.labels.shape == photo.shape[:2]
    assert result.labels.dtype == np.uint8
    assert int(result.labels.max()) < DATASETS[dataset].num_classes
    assert result.label_set == dataset
    assert result.people_detected == 1


def test_parse_rejects_non_images(tmp_path: Path):
    save_random(tmp_path, "lip")
    backend = SCHPBackend.from_pretrained(tmp_path, dataset="lip")
    with pytest.raises(InvalidInput):
        backend.parse(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("size", [(1376, 768), (600, 900), (512, 512)])
def test_crop_affine_is_schp_three_point_transform(size: tuple[int, int]):
    """Same matrix as SCHP's get_affine_transform(center, scale, 0, input_size) built from its 3 point pairs."""
    height, width = size
    center, scale = person_center_scale(width, height, 1.0)
    in_h, in_w = 473, 473
    # SCHP: centre, centre + (0, -scale_w / 2), and a third point turned 90 degrees from the second
    src_second = center + [0, -scale[0] * 0.5]
    src = np.float32([center, src_second, src_second + [-scale[0] * 0.5, 0]])
    mid = np.array([(in_w - 1) * 0.5, (in_h - 1) * 0.5])
    dst_second = mid + [0, -(in_w - 1) * 0.5]
    dst = np.float32([mid, dst_second, dst_second + [-(in_w - 1) * 0.5, 0]])
    reference = cv2.getAffineTransform(src, dst)
    assert np.allclose(crop_affine(center, scale, (in_h, in_w)), reference, atol=1e-4)
    # the whole photo fits in the crop, its longer side spanning the input exactly
    corners = (
        np.array([[0, 0, 1], [width - 1, height - 1, 1]], np.float64)
        @ crop_affine(center, scale, (in_h, in_w)).T
    )
    assert corners.min() > -1e-6 and corners.max() < in_w - 1 + 1e-6
    assert np.isclose(max(corners[1] - corners[0]), in_w - 1)


def test_flip_merge_swaps_left_and_right_classes():
    lip = DATASETS["lip"]
    perm = mirror_permutation(20, lip.mirror_pairs)
    assert [perm[i] for i in (14, 15, 16, 17, 18, 19)] == [15, 14, 17, 16, 19, 18]
    assert perm[:14] == list(range(14))
    assert mirror_permutation(18, DATASETS["atr"].mirror_pairs)[9:16] == [10, 9, 11, 13, 12, 15, 14]
    assert mirror_permutation(7, DATASETS["pascal"].mirror_pairs) == list(range(7))

    logits = torch.zeros(20, 2, 3)
    flipped = torch.zeros(20, 2, 3)
    flipped[14, :, 0] = 4.0  # "left arm" at the mirror image's left column = the photo's right column
    flipped[5, 1, 1] = 2.0  # an unsided class stays itself, mirrored
    logits[13, 0, 0] = 6.0
    merged = merge_flipped(logits, flipped, perm)
    assert torch.equal(merged[15, :, 2], torch.tensor([2.0, 2.0]))
    assert merged[14].abs().sum() == 0
    assert merged[5, 1, 1] == 1.0 and merged[13, 0, 0] == 3.0


class _LeftHalfIsLeftArm(torch.nn.Module):
    """A stand-in network that calls whatever is in the left half of its input "left arm" (LIP 14)."""

    def __init__(self):
        super().__init__()
        self.config = CE2PConfig(num_classes=20)

    def forward(self, x: torch.Tensor) -> CE2POutput:
        b, _, h, w = x.shape
        logits = torch.zeros(b, 20, h, w)
        logits[:, 14, :, : w // 2] = 1.0
        return CE2POutput(logits, logits, torch.zeros(b, 2, h, w))


def test_flip_averaging_in_the_backend_labels_both_sides():
    backend = SCHPBackend(_LeftHalfIsLeftArm(), "lip", flip=True)
    labels = backend.parse(np.full((120, 80, 3), 128, np.uint8)).labels
    # without flip everything left would be 14 and the right background; the mirror pass adds 15 on the right
    assert (labels[:, :30] == 14).all() and (labels[:, 50:] == 15).all()
    no_flip = SCHPBackend(_LeftHalfIsLeftArm(), "lip", flip=False).parse(np.full((120, 80, 3), 128, np.uint8))
    assert (no_flip.labels[:, 50:] == 0).all()


def test_logits_go_back_to_the_photo_like_schp_transform_logits():
    """Same values as SCHP's per-channel cv2.warpAffine through the inverse crop transform."""
    height, width = 300, 170
    center, scale = person_center_scale(width, height, 1.0)
    affine = crop_affine(center, scale, (97, 97))
    logits = torch.randn(20, 97, 97)
    ours = logits_to_photo(logits, affine, width, height).permute(1, 2, 0).numpy()
    inverse = cv2.invertAffineTransform(affine)
    reference = np.stack(
        [
            cv2.warpAffine(
                c, inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            for c in logits.numpy()
        ],
        axis=2,
    )
    assert ours.shape == reference.shape == (height, width, 20)
    assert np.abs(ours - reference).max() < 1e-3  # logits ~ N(0, 1)
    assert (ours.argmax(2) == reference.argmax(2)).mean() > 0.999


def test_batch_norm_calibration_normalises_random_activations():
    torch.manual_seed(0)
    model = CE2P(CE2PConfig.from_json({**TINY_CONFIG.to_json(), "num_classes": 20}))
    with torch.no_grad():
        model.conv1.weight.mul_(50.0)  # activations far from unit scale, as in an untrained deep network
    images = torch.randn(2, 3, 64, 64)
    calibrate_batch_norms(model, images)
    assert not model.training
    with torch.no_grad():
        normed = model.bn1(model.conv1(images))
    assert normed.mean().abs() < 0.05 and (normed.std() - 1.0).abs() < 0.05
