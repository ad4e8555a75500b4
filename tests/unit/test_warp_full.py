"""LaDI-VTON warping backend: the networks' layout against the release's state dicts, the TPS geometry, round
trips through the release's file format, and the backend end to end on real photos with random tiny weights."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from services.warp.backends.ladi_vton import LadiVtonWarpBackend, checkpoint_name
from services.warp.models import ConvNetTPS, RefinementUNet, TPSGridGen
from services.warp.models.tps_grid import pixel_coordinates, regular_control_points
from services.warp.testing import TINY_REFINEMENT, TINY_TPS, save_random
from services.warp.types import WarpInputs
from vton.runtime.checkpoints import WeightsMismatch
from vton.runtime.errors import InvalidInput, NoPersonFound
from vton.runtime.posemap import pose_heatmaps, pose_map
from vton_cli.examples import fetch_examples

SHARED_DATA = Path(__file__).resolve().parents[2] / "../shared/data"

# The release's warping_{dataset}.pth = {"tps": ConvNet_TPS(256, 192, 21, 3).state_dict(),
# "refinement": UNetVanilla(n_channels=24, n_classes=3, bilinear=True).state_dict()} (hubconf.py of
# miccunifi/ladi-vton). Key counts and shapes derived from src/models/ConvNet_TPS.py, UNet.py and unet_parts.py.
OFFICIAL_TPS_KEY_COUNT = 107
OFFICIAL_TPS_SAMPLE = {
    "extractionA.model.0.weight": (64, 3, 4, 4),
    "extractionB.model.0.weight": (64, 21, 4, 4),
    "extractionA.model.2.running_var": (64,),
    "extractionB.model.9.weight": (512, 256, 4, 4),
    "extractionA.model.15.weight": (512, 512, 3, 3),
    "loc_net.regression.conv.0.weight": (512, 192, 4, 4),
    "loc_net.regression.conv.10.num_batches_tracked": (),
    "loc_net.regression.linear.weight": (50, 768),
    "gridGen.inverse_kernel": (28, 28),
    "gridGen.padding_matrix": (3, 2),
    "gridGen.target_coordinate_repr": (256 * 192, 28),
}
OFFICIAL_REFINEMENT_KEY_COUNT = 110
OFFICIAL_REFINEMENT_SAMPLE = {
    "inc.double_conv.0.weight": (64, 24, 3, 3),
    "inc.double_conv.1.running_mean": (64,),
    "down4.maxpool_conv.1.double_conv.0.weight": (512, 512, 3, 3),
    "up1.conv.double_conv.0.weight": (512, 1024, 3, 3),
    "up1.conv.double_conv.3.weight": (256, 512, 3, 3),
    "up4.conv.double_conv.4.weight": (64,),
    "outc.conv.weight": (3, 64, 1, 1),
    "outc.conv.bias": (3,),
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ladi-vton-warp-vitonhd")
    save_random(folder, dataset="vitonhd")
    return folder


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    root = fetch_examples()
    person = cv2.cvtColor(cv2.imread(str(root / "avatars" / "1.png")), cv2.COLOR_BGR2RGB)
    garment = cv2.cvtColor(cv2.imread(str(root / "clothes" / "shirts" / "1_front.jpg")), cv2.COLOR_BGR2RGB)
    return person, garment


def upper_body_inputs(person: np.ndarray, garment: np.ndarray, **kwargs) -> WarpInputs:
    """A try-on request for the avatar photo: torso keypoints and a torso-and-arms agnostic mask."""
    h, w = person.shape[:2]
    keypoints = np.zeros((18, 3), np.float32)
    for part, x, y in [(0, 384, 190), (1, 384, 300), (2, 270, 320), (3, 240, 480), (4, 230, 620), (5, 500, 320),
                       (6, 530, 480), (7, 540, 620), (8, 320, 720), (11, 450, 720)]:  # fmt: skip
        keypoints[part] = (x, y, 0.9)
    mask = np.zeros((h, w), np.uint8)
    mask[290:780, 200:570] = 255
    defaults = dict(
        garment=garment,
        person=person,
        masked_person=np.where(mask[..., None] > 0, 128, person).astype(np.uint8),
        agnostic_mask=mask,
        keypoints=keypoints,
        labels=np.zeros((h, w), np.uint8),
        category="upper_body",
    )
    return WarpInputs(**{**defaults, **kwargs})


def test_full_size_networks_have_the_release_layout():
    tps, refinement = ConvNetTPS().state_dict(), RefinementUNet().state_dict()
    assert len(tps) == OFFICIAL_TPS_KEY_COUNT
    assert len(refinement) == OFFICIAL_REFINEMENT_KEY_COUNT
    for key, shape in OFFICIAL_TPS_SAMPLE.items():
        assert tuple(tps[key].shape) == shape, key
    for key, shape in OFFICIAL_REFINEMENT_SAMPLE.items():
        assert tuple(refinement[key].shape) == shape, key


def test_tps_through_the_target_points_is_the_identity_and_reproduces_affine_maps():
    targets = regular_control_points(5, 0.9)
    generator = TPSGridGen(32, 24, targets)
    identity = generator(targets[None])[0]
    np.testing.assert_allclose(identity.numpy(), pixel_coordinates(32, 24).numpy(), atol=1e-4)
    affine = torch.tensor([[0.8, 0.1], [-0.2, 1.1]])
    moved = generator((targets @ affine.T + torch.tensor([0.05, -0.1]))[None])[0]
    expected = pixel_coordinates(32, 24).float() @ affine.T + torch.tensor([0.05, -0.1])
    np.testing.assert_allclose(moved.numpy(), expected.numpy(), atol=1e-4)


def test_tiny_networks_give_a_bounded_grid_and_a_three_channel_refinement():
    tps, refinement = ConvNetTPS(TINY_TPS).eval(), RefinementUNet(TINY_REFINEMENT).eval()
    with torch.no_grad():
        torch.nn.init.normal_(tps.loc_net.regression.linear.weight, std=0.05)
        grid, points = tps(torch.rand(2, 3, 256, 192) * 2 - 1, torch.rand(2, 21, 256, 192))
        refined = refinement(torch.rand(2, 24, 64, 48)).clamp(-1, 1)
    assert grid.shape == (2, 256, 192, 2) and points.shape == (2, 25, 2)
    assert points.abs().max() < 1  # tanh-bounded control points
    assert grid.abs().max() < 1.5
    assert refined.shape == (2, 3, 64, 48)


def test_save_random_round_trips_through_the_release_format(tiny_folder, photos):
    saved = torch.load(tiny_folder / "warping_vitonhd.pth", weights_only=True)
    assert set(saved) == {"tps", "refinement"}
    first = LadiVtonWarpBackend.from_pretrained(tiny_folder)
    second = LadiVtonWarpBackend.from_pretrained(tiny_folder)
    assert first.dataset == "vitonhd"
    for net, part in ((first.tps, "tps"), (first.refinement, "refinement")):
        state = net.state_dict()
        assert state.keys() == saved[part].keys()
        for key, tensor in saved[part].items():
            assert torch.equal(state[key], tensor), key
    inputs = upper_body_inputs(*photos, height=256, width=192)
    out_a, out_b = first.warp(inputs), second.warp(inputs)
    np.testing.assert_array_equal(out_a.warped_garment, out_b.warped_garment)
    np.testing.assert_array_equal(out_a.warped_mask, out_b.warped_mask)


def test_warp_on_real_photos_returns_the_garment_at_the_person_size(tiny_folder, photos):
    person, garment = photos
    backend = LadiVtonWarpBackend.from_pretrained(tiny_folder)

    out = backend.warp(upper_body_inputs(person, garment))

    assert out.warped_garment.shape == person.shape and out.warped_garment.dtype == np.uint8
    assert out.warped_mask.shape == person.shape[:2]
    assert set(np.unique(out.warped_mask)) <= {0, 255}
    assert out.garment_mask.shape == garment.shape[:2]
    assert 0.2 < (out.warped_mask > 0).mean() < 0.9  # a random TPS warps mildly: the garment stays in view
    assert out.warped_garment.std() > 1  # the U-Net's output, not a constant


def test_identity_tps_places_the_garment_mask_where_the_working_frame_puts_it(tmp_path, photos):
    person, garment = photos
    save_random(tmp_path, dataset="dresscode")
    backend = LadiVtonWarpBackend.from_pretrained(tmp_path)
    assert backend.dataset == "dresscode"
    backend.tps.loc_net.regression.linear.weight.data.zero_()  # the official initialisation: identity warp
    square = np.zeros(garment.shape[:2], np.uint8)
    square[200:800, 300:700] = 255

    out = backend.warp(upper_body_inputs(person, garment, garment_mask=square))

    # The 1024x1024 photo is padded to 3:4 (1365 rows, 170 above) and scaled to the 1376x768 person.
    expected = np.zeros(person.shape[:2], bool)
    sy, sx = person.shape[0] / 1365, person.shape[1] / 1024
    expected[round((200 + 170) * sy) : round((800 + 170) * sy), round(300 * sx) : round(700 * sx)] = True
    got = out.warped_mask > 0
    assert (got & expected).sum() / (got | expected).sum() > 0.97
    np.testing.assert_array_equal(out.garment_mask, square)


def test_pose_map_input_and_the_high_resolution_are_accepted(tiny_folder, photos):
    person, garment = photos
    inputs = upper_body_inputs(person, garment, height=1024, width=768)
    h, w = person.shape[:2]
    inputs.pose_map = pose_map(inputs.keypoints, w, h)
    out = LadiVtonWarpBackend.from_pretrained(tiny_folder).warp(inputs)
    assert out.warped_garment.shape == person.shape


def test_without_a_pose_map_the_keypoints_are_drawn_at_the_working_size(tiny_folder, photos, monkeypatch):
    """The release draws its Gaussians on the working-size map from the scaled keypoints: same here."""
    person, garment = photos
    inputs = upper_body_inputs(person, garment, height=256, width=192)
    backend = LadiVtonWarpBackend.from_pretrained(tiny_folder)
    seen = {}

    def refine(im_mask: torch.Tensor, pose: torch.Tensor, warped: torch.Tensor) -> tuple[torch.Tensor, None]:
        seen["pose"] = pose
        return warped, None

    monkeypatch.setattr(backend, "refine", refine)
    backend.warp(inputs)
    h, w = person.shape[:2]
    scaled = inputs.keypoints.copy()
    scaled[:, :2] *= np.array([192 / w, 256 / h], np.float32)
    np.testing.assert_array_equal(seen["pose"][0].numpy(), pose_heatmaps(scaled, 192, 256))


@pytest.mark.parametrize(
    "part, key", [("tps", "loc_net.regression.linear.weight"), ("refinement", "outc.conv.bias")]
)
@pytest.mark.parametrize("damage", ["missing", "renamed"])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_file_and_the_keys(tmp_path, part, key, damage):
    path = save_random(tmp_path, dataset="vitonhd")
    checkpoint = torch.load(path, weights_only=True)
    tensor = checkpoint[part].pop(key)
    if damage == "renamed":
        checkpoint[part][key + "_renamed"] = tensor
    torch.save(checkpoint, path)
    with pytest.raises(WeightsMismatch) as error:
        LadiVtonWarpBackend.from_pretrained(tmp_path)
    message = str(error.value)
    assert str(path) in message and f"`{part}` entry" in message and f"missing keys [{key}]" in message
    assert (f"unexpected keys [{key}_renamed]" in message) == (damage == "renamed")


def test_a_file_without_the_two_networks_is_refused(tmp_path):
    torch.save({"tps": ConvNetTPS(TINY_TPS).state_dict()}, tmp_path / checkpoint_name("vitonhd"))
    with pytest.raises(WeightsMismatch, match="refinement"):
        LadiVtonWarpBackend.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(height=500, width=384), "multiple of 16"),
        (dict(category="hats"), "unknown category"),
        (dict(agnostic_mask=np.zeros((10, 10), np.uint8)), "agnostic_mask"),
    ],
)
def test_bad_requests_are_refused(tiny_folder, photos, change, message):
    backend = LadiVtonWarpBackend.from_pretrained(tiny_folder)
    with pytest.raises(InvalidInput, match=message):
        backend.warp(upper_body_inputs(*photos, **change))


def test_a_blank_product_photo_has_no_garment(tiny_folder, photos):
    """Without a garment mask the backend runs the stage's garment analysis, which refuses a blank photo."""
    backend = LadiVtonWarpBackend.from_pretrained(tiny_folder)
    blank = np.full((300, 200, 3), 231, np.uint8)
    with pytest.raises(NoPersonFound, match="no garment found"):
        backend.warp(upper_body_inputs(photos[0], blank))
