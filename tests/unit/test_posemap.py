"""The one pose map the pose, warp and diffusion stages use: LaDI-VTON's Gaussian heatmaps per COCO-18 keypoint."""

from __future__ import annotations

import numpy as np
import pytest

from vton.runtime.posemap import pose_heatmaps, pose_map, pose_sigma


def release_heatmap(x: float, y: float, width: int, height: int, sigma: float) -> np.ndarray:
    """LaDI-VTON's kpoint_to_heatmap as its dataset code calls it: over the whole map, divided by its maximum."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    heatmap = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / sigma**2)
    return heatmap / (heatmap.max() + np.finfo("float32").eps)


def keypoints_with(*points: tuple[int, float, float, float]) -> np.ndarray:
    keypoints = np.zeros((18, 3), np.float32)
    for part, x, y, confidence in points:
        keypoints[part] = (x, y, confidence)
    return keypoints


def test_on_the_released_512x384_maps_it_is_the_releases_heatmap_with_sigma_9():
    assert pose_sigma(512) == 9.0
    keypoints = keypoints_with((1, 100.3, 50.6, 0.9), (4, 370.0, 500.0, 0.4))
    maps = pose_heatmaps(keypoints, 384, 512)
    assert maps.shape == (18, 512, 384) and maps.dtype == np.float32
    for part in (1, 4):
        x, y = keypoints[part, :2]
        # beyond 4 sigma the release's values are below exp(-16); here they are 0
        np.testing.assert_allclose(maps[part], release_heatmap(x, y, 384, 512, 9.0), rtol=0, atol=2e-7)
    assert not np.delete(maps, [1, 4], axis=0).any()


def test_sigma_is_the_same_fraction_of_any_map_height():
    """9 px on 512 rows is what the released weights saw; a map drawn at another size keeps that proportion, so
    resizing it to the working size gives the same Gaussian."""
    assert pose_sigma(1024) == 18.0 and pose_sigma(256) == 4.5
    maps = pose_heatmaps(keypoints_with((0, 200.0, 300.0, 1.0)), 768, 1024)
    assert maps[0, 300, 200] == pytest.approx(1.0)
    assert maps[0, 300, 218] == pytest.approx(np.exp(-1.0))  # exp(-d²/sigma²) at d = sigma = 18 px


def test_missing_keypoints_give_zero_maps_as_in_the_release():
    keypoints = keypoints_with((2, 40.0, 30.0, 0.0), (3, 0.0, 0.0, 0.8), (5, -6.0, 30.0, 0.7))
    maps = pose_heatmaps(keypoints, 64, 96)
    assert not maps[2].any()  # not found (OpenPose's 0, 0, 0 or a zero confidence)
    assert not maps[3].any()  # no coordinate above 0: the release's own test, np.any(kpoint > 0)
    # just outside the map: its edge peaks, as in the release (whose eps weighs on so faint a peak)
    assert maps[5, 30, 0] == maps[5].max() > 0.9
    np.testing.assert_allclose(
        maps[5], release_heatmap(-6.0, 30.0, 64, 96, pose_sigma(96)), rtol=1e-5, atol=1e-7
    )


def test_the_uint8_map_is_the_heatmap_at_peak_255():
    keypoints = keypoints_with((7, 20.4, 33.2, 0.9))
    heatmaps = pose_heatmaps(keypoints, 48, 64)
    quantised = pose_map(keypoints, 48, 64)
    assert quantised.dtype == np.uint8 and quantised.max() == 255
    np.testing.assert_array_equal(quantised, np.round(heatmaps * 255).astype(np.uint8))


def test_keypoints_must_be_coco_18():
    with pytest.raises(ValueError, match=r"\[18, 3\]"):
        pose_heatmaps(np.zeros((17, 3)), 48, 64)
