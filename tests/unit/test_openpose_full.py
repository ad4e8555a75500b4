"""OpenPose body backend: the network's layout against the official checkpoint's, round trips through the official
file format, and the postprocessing (peaks, PAF scoring, assembly) recovering known skeletons from synthetic maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from services.pose.backends.openpose import CHECKPOINT, LIMBS, OpenPoseBackend, people_from_maps
from services.pose.models.openpose_body import BodyPoseModel, checkpoint_from_module
from services.pose.testing import TINY_CONFIG, save_random
from services.pose.types import PoseEstimate
from vton.runtime.checkpoints import WeightsMismatch
from vton.runtime.errors import InvalidInput, NoPersonFound
from vton_cli.examples import fetch_examples

# The official body_pose_model.pth (lllyasviel/Annotators, sha256 25a948c1...) is a plain state dict of 184 tensors
# named by the Caffe layers, without the torch port's block prefix (the ports strip it from their own keys with
# '.'.join(name.split('.')[1:]) before loading). Derived from Hzzone/pytorch-openpose src/model.py + src/util.py,
# whose layer tables `official_layout` follows.
OFFICIAL_KEY_COUNT = 184
OFFICIAL_NUMBERS = 52_311_446  # the 209,267,595-byte file of float32
# The trunk: VGG-19's 3x3 convolutions up to conv4_2 and the CPM's two, by block (pooled between blocks), each
# convolution named with its output channels and taking the previous one's.
TRUNK = [
    [("conv1_1", 64), ("conv1_2", 64)],
    [("conv2_1", 128), ("conv2_2", 128)],
    [("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256)],
    [("conv4_1", 512), ("conv4_2", 512), ("conv4_3_CPM", 256), ("conv4_4_CPM", 128)],
]
# What each branch of the six stages predicts: L1 the part affinity fields (x and y of 19 limbs), L2 the heatmaps
# (18 parts and the background).
BRANCH_OUTPUTS = {"L1": 38, "L2": 19}
# CMU's limb table as the reference demo writes it: 1-based part pairs, and the heatmap-stack channel (PAFs start
# at 19) of each limb's x and y field.
OFFICIAL_LIMB_PAIRS_1BASED = [
    [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13], [13, 14],
    [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18],
]  # fmt: skip
OFFICIAL_MAP_INDEX = [
    [31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22], [23, 24], [25, 26], [27, 28],
    [29, 30], [47, 48], [49, 50], [53, 54], [51, 52], [55, 56], [37, 38], [45, 46],
]  # fmt: skip


def official_layout() -> dict[str, tuple[int, ...]]:
    """Every tensor of the official file and its shape: each convolution has a weight and a bias."""
    convs: list[tuple[str, int, int, int]] = []  # name, input channels, output channels, kernel size
    inputs = 3
    for block in TRUNK:
        for name, outputs in block:
            convs.append((name, inputs, outputs, 3))
            inputs = outputs
    features = inputs
    for branch, outputs in BRANCH_OUTPUTS.items():
        # stage 1 reads the trunk's features
        convs += [(f"conv5_{i}_CPM_{branch}", features, 128, 3) for i in (1, 2, 3)]
        convs += [(f"conv5_4_CPM_{branch}", 128, 512, 1), (f"conv5_5_CPM_{branch}", 512, outputs, 1)]
        for stage in range(2, 7):
            # stages 2 to 6 read the features and both branches' previous predictions (128 + 38 + 19 = 185)
            suffix = f"_stage{stage}_{branch}"
            convs.append((f"Mconv1{suffix}", features + sum(BRANCH_OUTPUTS.values()), 128, 7))
            convs += [(f"Mconv{i}{suffix}", 128, 128, 7) for i in (2, 3, 4, 5)]
            convs += [(f"Mconv6{suffix}", 128, 128, 1), (f"Mconv7{suffix}", 128, outputs, 1)]
    layout = {}
    for name, inputs, outputs, kernel in convs:
        layout[f"{name}.weight"] = (outputs, inputs, kernel, kernel)
        layout[f"{name}.bias"] = (outputs,)
    return layout


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("openpose-body")
    save_random(folder)
    return folder


@pytest.fixture(scope="module")
def person_photo() -> np.ndarray:
    path = fetch_examples() / "avatars" / "1.png"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_the_layer_tables_give_the_official_files_count_of_tensors_and_numbers():
    layout = official_layout()
    assert len(layout) == OFFICIAL_KEY_COUNT
    assert sum(int(np.prod(shape)) for shape in layout.values()) == OFFICIAL_NUMBERS


def test_full_size_network_has_the_official_checkpoint_layout():
    checkpoint = checkpoint_from_module(BodyPoseModel())
    assert {key: tuple(tensor.shape) for key, tensor in checkpoint.items()} == official_layout()


def test_limb_table_matches_the_reference_demo():
    assert [[a + 1, b + 1] for a, b, _, _ in LIMBS] == OFFICIAL_LIMB_PAIRS_1BASED
    assert [[x + 19, y + 19] for _, _, x, y in LIMBS] == OFFICIAL_MAP_INDEX


def test_tiny_forward_gives_38_pafs_and_19_heatmaps_at_one_eighth():
    model = BodyPoseModel(TINY_CONFIG).eval()
    with torch.no_grad():
        pafs, heatmaps = model(torch.rand(2, 3, 64, 48) - 0.5)
    assert pafs.shape == (2, 38, 8, 6)
    assert heatmaps.shape == (2, 19, 8, 6)
    assert torch.isfinite(pafs).all() and torch.isfinite(heatmaps).all()


def test_final_heatmaps_go_through_a_relu_as_in_the_torch_port_and_pafs_do_not():
    """pytorch-openpose applies a ReLU after Mconv7_stage6_L2 (its no_relu_layers names Mconv7_stage6_L1 twice),
    which is how body_pose_model.pth has been used; the PAFs of Mconv7_stage6_L1 stay signed."""
    torch.manual_seed(0)
    model = BodyPoseModel(TINY_CONFIG).eval()
    raw = {}
    for name in ("Mconv7_stage6_L1", "Mconv7_stage6_L2"):
        layer = model.get_submodule(f"model6_{name[-1]}.{name}")
        layer.register_forward_hook(lambda _m, _i, out, name=name: raw.__setitem__(name, out.clone()))
    with torch.no_grad():
        pafs, heatmaps = model(torch.rand(2, 3, 64, 48) - 0.5)
    assert (raw["Mconv7_stage6_L2"] < 0).any()  # the layer's own output is signed ...
    torch.testing.assert_close(
        heatmaps, raw["Mconv7_stage6_L2"].clamp(min=0)
    )  # ... the heatmaps are its ReLU
    assert (pafs < 0).any()
    torch.testing.assert_close(pafs, raw["Mconv7_stage6_L1"])


@pytest.mark.parametrize("damage", ["missing", "renamed"])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_file_and_the_keys(
    tiny_folder, tmp_path, damage
):
    checkpoint = torch.load(tiny_folder / CHECKPOINT, weights_only=True)
    tensor = checkpoint.pop("Mconv7_stage6_L2.weight")
    if damage == "renamed":
        checkpoint["Mconv7_stage6_L2.weights"] = tensor
    folder = tmp_path / "openpose-body"
    save_random(folder)
    torch.save(checkpoint, folder / CHECKPOINT)
    with pytest.raises(WeightsMismatch) as error:
        OpenPoseBackend.from_pretrained(folder)
    message = str(error.value)
    assert str(folder / CHECKPOINT) in message and "missing keys [Mconv7_stage6_L2.weight]" in message
    assert ("unexpected keys [Mconv7_stage6_L2.weights]" in message) == (damage == "renamed")


def test_save_random_round_trips_through_the_official_file_format(tiny_folder, person_photo):
    saved = torch.load(tiny_folder / CHECKPOINT, weights_only=True)
    assert not any(key.startswith("model") for key in saved)  # Caffe names, as in the official file
    assert saved.keys() == official_layout().keys()
    first = OpenPoseBackend.from_pretrained(tiny_folder, scales=(0.5,))
    second = OpenPoseBackend.from_pretrained(tiny_folder, scales=(0.5,))
    assert first.model.config == TINY_CONFIG
    for key, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, saved[key.split(".", 1)[1]]), key
    image = cv2.resize(person_photo, (96, 172))
    maps_a, maps_b = first.network_maps(image), second.network_maps(image)
    np.testing.assert_array_equal(maps_a[0], maps_b[0])
    np.testing.assert_array_equal(maps_a[1], maps_b[1])


def test_backend_runs_on_a_real_photo_with_random_tiny_weights(tiny_folder, person_photo):
    backend = OpenPoseBackend.from_pretrained(tiny_folder, scales=(0.5, 1.0))
    image = cv2.resize(person_photo, (192, 344))
    heatmaps, pafs = backend.network_maps(image)
    assert heatmaps.shape == (344, 192, 19) and heatmaps.dtype == np.float32
    assert pafs.shape == (344, 192, 38)
    try:  # random weights carry no pose: either answer is valid, but it must have the contract's shape
        estimate = backend.estimate(image)
    except NoPersonFound as exc:
        assert str(exc) == "no person found"
    else:
        assert estimate.keypoints.shape == (18, 3) and estimate.people_detected >= 1


def test_estimate_rejects_what_is_not_an_rgb_image(tiny_folder):
    backend = OpenPoseBackend.from_pretrained(tiny_folder)
    with pytest.raises(InvalidInput):
        backend.estimate(np.zeros((64, 64), np.uint8))


# --- postprocessing on synthetic network maps -------------------------------------------------------------------


def skeleton(cx: int, top: int, scale: float) -> np.ndarray:
    """COCO-18 (x, y) of a person standing and facing the camera (their right on the image's left)."""
    offsets = [
        (0, 20), (0, 50), (-30, 50), (-40, 95), (-45, 135), (30, 50), (40, 95), (45, 135), (-18, 140),
        (-20, 195), (-22, 245), (18, 140), (20, 195), (22, 245), (-7, 12), (7, 12), (-15, 18), (15, 18),
    ]  # fmt: skip
    return np.array([(round(cx + dx * scale), round(top + dy * scale)) for dx, dy in offsets], np.float64)


def synthetic_maps(people: list[np.ndarray], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (Gaussian peaks of 1 at the parts) and PAFs (unit vectors along each limb, 3 px either side),
    what a perfect network would output for these people; NaN rows in a skeleton are missing parts."""
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    heatmaps = np.zeros((height, width, 19), np.float32)
    pafs = np.zeros((height, width, 38), np.float32)
    for points in people:
        for part, (x, y) in enumerate(points):
            if not np.isnan(x):
                heatmaps[:, :, part] = np.maximum(
                    heatmaps[:, :, part], np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 32)
                )
        for a, b, cx, cy in LIMBS:
            if np.isnan(points[a, 0]) or np.isnan(points[b, 0]):
                continue
            vector = points[b] - points[a]
            length = np.hypot(*vector)
            unit = vector / length
            along = (xs - points[a, 0]) * unit[0] + (ys - points[a, 1]) * unit[1]
            across = np.abs((xs - points[a, 0]) * unit[1] - (ys - points[a, 1]) * unit[0])
            on_limb = (along >= -1) & (along <= length + 1) & (across <= 3)
            pafs[on_limb, cx], pafs[on_limb, cy] = unit[0], unit[1]
    heatmaps[:, :, 18] = 1 - heatmaps[:, :, :18].max(axis=2)
    return heatmaps, pafs


def test_assembly_recovers_two_known_skeletons_exactly():
    tall = skeleton(cx=90, top=40, scale=1.0)
    short = skeleton(cx=240, top=120, scale=0.7)
    short[7] = short[17] = np.nan  # left wrist and left ear hidden
    heatmaps, pafs = synthetic_maps([short, tall], height=320, width=320)

    found = people_from_maps(heatmaps, pafs)

    assert len(found) == 2
    np.testing.assert_array_equal(found[0][:, :2], tall)  # largest first
    np.testing.assert_allclose(found[0][:, 2], 1.0, atol=1e-6)
    visible = ~np.isnan(short[:, 0])
    np.testing.assert_array_equal(found[1][visible, :2], short[visible])
    assert not found[1][~visible].any()  # missing parts are zeros


def test_estimate_returns_the_largest_person_and_counts_everyone(tiny_folder, monkeypatch):
    tall, short = skeleton(cx=230, top=30, scale=1.0), skeleton(cx=80, top=100, scale=0.6)
    maps = synthetic_maps([short, tall], height=300, width=320)
    backend = OpenPoseBackend.from_pretrained(tiny_folder)
    monkeypatch.setattr(backend, "network_maps", lambda image: maps)

    estimate = backend.estimate(np.zeros((300, 320, 3), np.uint8))

    assert isinstance(estimate, PoseEstimate)
    assert estimate.people_detected == 2
    assert estimate.keypoints.dtype == np.float32
    np.testing.assert_array_equal(estimate.keypoints[:, :2], tall)


def test_estimate_scales_keypoints_back_from_a_reduced_map_size(tiny_folder, monkeypatch):
    person = skeleton(cx=100, top=20, scale=1.0)
    maps = synthetic_maps([person], height=300, width=200)
    backend = OpenPoseBackend.from_pretrained(tiny_folder, max_map_side=300)
    monkeypatch.setattr(
        backend, "network_maps", lambda image: maps if image.shape[:2] == (300, 200) else None
    )

    estimate = backend.estimate(np.zeros((600, 400, 3), np.uint8))

    np.testing.assert_allclose(estimate.keypoints[:, :2], person * 2)


def test_limbs_without_field_support_make_no_person(tiny_folder, monkeypatch):
    heatmaps, pafs = synthetic_maps([skeleton(cx=100, top=20, scale=1.0)], height=300, width=200)
    backend = OpenPoseBackend.from_pretrained(tiny_folder)
    monkeypatch.setattr(backend, "network_maps", lambda image: (heatmaps, np.zeros_like(pafs)))

    with pytest.raises(NoPersonFound, match="no person found"):
        backend.estimate(np.zeros((300, 200, 3), np.uint8))
