"""The embedded pose backend and the OpenPose-format outputs: JSON, skeleton picture, LaDI-VTON's pose map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.pose.backends.blazepose import BlazePoseBackend
from services.pose.openpose_format import (
    COLORS,
    LIMBS,
    draw_skeleton,
    from_openpose_json,
    pose_map,
    to_openpose_json,
)
from services.pose.types import PoseEstimate
from vton.runtime.errors import NoPersonFound
from vton.runtime.images import read_rgb


@pytest.fixture(scope="module")
def backend(blazepose) -> BlazePoseBackend:
    return BlazePoseBackend(blazepose)


@pytest.fixture(scope="module")
def estimate(backend, examples) -> tuple[PoseEstimate, np.ndarray]:
    image = read_rgb(examples / "avatars" / "1.png")
    return backend.estimate(image), image


def test_backend_estimates_coco18(estimate):
    pose, image = estimate
    assert isinstance(pose, PoseEstimate)
    assert pose.keypoints.shape == (18, 3) and pose.keypoints.dtype == np.float32
    assert pose.people_detected == 1
    found = pose.keypoints[:, 2] > 0
    assert found.sum() >= 14
    height, width = image.shape[:2]
    assert (pose.keypoints[found, 0] < width).all() and (pose.keypoints[found, 1] < height).all()


def test_backend_refuses_an_empty_photo(backend):
    with pytest.raises(NoPersonFound, match="no person found"):
        backend.estimate(np.full((512, 384, 3), 240, np.uint8))


def test_openpose_json_round_trips_in_the_datasets_layout(estimate):
    keypoints = estimate[0].keypoints
    document = to_openpose_json(keypoints)
    parsed = json.loads(document)
    assert parsed["version"] == 1.3
    (person,) = parsed["people"]
    assert person["person_id"] == [-1]
    assert len(person["pose_keypoints_2d"]) == 54
    assert person["face_keypoints_2d"] == []
    np.testing.assert_allclose(from_openpose_json(document), keypoints, atol=1e-3)
    # Missing joints stay 0, 0, 0 through the round trip.
    missing = keypoints.copy()
    missing[4] = 0
    assert (from_openpose_json(to_openpose_json(missing))[4] == 0).all()


def test_pose_map_is_the_heatmap_at_255_with_sigma_scaled_to_the_height(estimate):
    keypoints = estimate[0].keypoints.copy()
    keypoints[10] = 0  # a missing joint
    for width, height in ((384, 512), (768, 1024)):
        scaled = keypoints.copy()
        scaled[:, :2] *= (width / estimate[1].shape[1], height / estimate[1].shape[0])
        channels = pose_map(scaled, width, height)
        assert channels.shape == (18, height, width) and channels.dtype == np.uint8
        assert channels[10].max() == 0
        found = np.nonzero(scaled[:, 2] > 0)[0]
        assert (channels[found].reshape(len(found), -1).max(1) == 255).all()
        # At one sigma (9 px of a 512-px-high image, scaled) from the peak the value is exp(-1) of it.
        i = int(found[0])
        x, y = int(round(scaled[i, 0])), int(round(scaled[i, 1]))
        sigma = 9 * height / 512
        expected = np.exp(-((x + sigma - scaled[i, 0]) ** 2 + (y - scaled[i, 1]) ** 2) / sigma**2) * 255
        if x + int(sigma) < width:
            assert abs(int(channels[i, y, x + int(round(sigma))]) - expected) < 12


def test_pose_map_peaks_at_each_keypoint(estimate):
    keypoints = estimate[0].keypoints.copy()
    keypoints[3] = 0
    height, width = estimate[1].shape[:2]
    maps = pose_map(keypoints, width, height)
    assert maps.shape == (18, height, width) and maps.dtype == np.uint8
    assert maps[3].max() == 0
    for i in np.nonzero(keypoints[:, 2] > 0)[0]:
        # uint8 rounding makes a small plateau of 255 around the peak: its centre is the keypoint.
        ys, xs = np.nonzero(maps[i] == 255)
        assert abs(xs.mean() - keypoints[i, 0]) <= 1 and abs(ys.mean() - keypoints[i, 1]) <= 1


def _full_heatmap(keypoints: np.ndarray, width: int, height: int, sigma: float) -> np.ndarray:
    """LaDI-VTON's kpoint_to_heatmap over the whole image, peak 1: the reference the windowed map must equal."""
    out = np.zeros((18, height, width), np.float32)
    xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    for i, (x, y, confidence) in enumerate(keypoints):
        if confidence > 0:
            channel = np.outer(np.exp(-((ys - y) ** 2) / sigma**2), np.exp(-((xs - x) ** 2) / sigma**2))
            out[i] = channel / (channel.max() + np.finfo(np.float32).eps)
    return out


def test_skeleton_is_drawn_in_openpose_colours(estimate):
    keypoints, image = estimate[0], estimate[1]
    keypoints = keypoints.keypoints
    height, width = image.shape[:2]
    picture = draw_skeleton(keypoints, width, height)
    assert picture.shape == (height, width, 3) and picture.dtype == np.uint8
    assert picture[0, 0].tolist() == [0, 0, 0]
    # The right upper arm (limb 2, RShoulder -> RElbow) carries its palette colour at the limb's middle.
    a, b = LIMBS[2]
    middle = (keypoints[a, :2] + keypoints[b, :2]) / 2
    pixel = picture[int(middle[1]), int(middle[0])].astype(int)
    expected = np.array(COLORS[2]) * 0.6
    assert np.abs(pixel - expected).max() <= 40, (pixel, expected)
    # Nothing is drawn for a person with no joints.
    assert draw_skeleton(np.zeros((18, 3), np.float32), 64, 48).max() == 0


def test_pose_map_windowed_gaussians_equal_the_full_heatmap(estimate):
    keypoints = estimate[0].keypoints.copy()
    keypoints[4, 0] = -12.0  # a point just outside the image still lights its edge
    height, width = estimate[1].shape[:2]
    full = _full_heatmap(keypoints, width, height, sigma=9 * height / 512)
    np.testing.assert_array_equal(pose_map(keypoints, width, height), np.round(full * 255).astype(np.uint8))
