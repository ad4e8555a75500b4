"""DensePose full backends: the chart -> IUV conversion, the TorchScript adapter, and detectron2's absence."""

from __future__ import annotations

import importlib.util
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from services.densepose.backends.rcnn import resized_shape
from services.densepose.backends.torchscript import EXPORT_FILE, DensePoseTorchScript
from services.densepose.iuv import (
    ChartOutput,
    chart_to_box_iuv,
    chart_to_image_iuv,
    int_box_xywh,
    largest_box_index,
)
from vton.runtime.checkpoints import WeightsMismatch
from vton.runtime.errors import InvalidInput, NoPersonFound, WeightsMissing


def one_hot_chart(parts: np.ndarray, person: np.ndarray, u_of_part, v_of_part) -> ChartOutput:
    """Chart outputs on the grid of `parts` whose argmaxes are exactly `parts` and `person`."""
    h, w = parts.shape
    coarse = torch.zeros(2, h, w)
    coarse[1] = torch.from_numpy(np.where(person, 3.0, -3.0))
    fine = torch.zeros(25, h, w)
    fine.scatter_(0, torch.from_numpy(parts).long()[None], 5.0)
    u = torch.stack([torch.full((h, w), float(u_of_part(p))) for p in range(25)])
    v = torch.stack([torch.full((h, w), float(v_of_part(p))) for p in range(25)])
    return ChartOutput(coarse, fine, u, v)


def test_chart_on_box_sized_grid_gives_exact_iuv():
    h, w = 6, 8
    rows, cols = np.mgrid[0:h, 0:w]
    parts = (1 + (rows * w + cols) % 24).astype(np.int64)
    parts[0, 0] = 0  # fine segmentation says background on a person pixel
    person = cols < 5  # coarse segmentation: person in the left five columns only
    chart = one_hot_chart(parts, person, lambda p: p / 20.0, lambda p: 1.0 - p / 50.0)  # U > 1 for p > 20

    iuv = chart_to_box_iuv(chart, (0, 0, w, h)).numpy()

    expected_i = np.where(person, parts, 0)
    assert np.array_equal(iuv[0], expected_i.astype(np.float32))
    fg = expected_i > 0
    assert np.allclose(iuv[1][fg], np.minimum(expected_i[fg] / 20.0, 1.0))  # clamped to 0..1
    assert np.allclose(iuv[2][fg], 1.0 - expected_i[fg] / 50.0)
    assert (iuv[1:, ~fg] == 0).all()


def test_chart_is_resampled_to_the_box_and_pasted_in_the_image():
    parts = np.array([[3, 7], [12, 24]])  # one part per quadrant of a 2x2 grid
    chart = one_hot_chart(parts, np.ones((2, 2), bool), lambda p: p / 100.0, lambda p: 0.5)
    box_xyxy = torch.tensor([10.9, 4.2, 30.9, 24.2])  # truncates to x=10, y=4, w=20, h=20 like DensePose
    assert int_box_xywh(box_xyxy) == (10, 4, 20, 20)

    iuv = chart_to_image_iuv(chart, box_xyxy, (40, 50))

    assert iuv.shape == (3, 40, 50) and iuv.dtype == np.float32
    inside = iuv[:, 4:24, 10:30]
    assert (
        inside[0, 0, 0] == 3 and inside[0, 0, -1] == 7 and inside[0, -1, 0] == 12 and inside[0, -1, -1] == 24
    )
    assert np.isclose(inside[1, -1, -1], 0.24) and np.isclose(inside[2, 0, 0], 0.5)
    assert set(np.unique(inside[0])) == {3.0, 7.0, 12.0, 24.0}
    outside = iuv.copy()
    outside[:, 4:24, 10:30] = 0
    assert not outside.any()


def test_box_reaching_past_the_image_is_clipped():
    chart = one_hot_chart(np.full((4, 4), 9), np.ones((4, 4), bool), lambda p: 0.3, lambda p: 0.6)
    iuv = chart_to_image_iuv(chart, (-5.0, 30.0, 15.0, 60.0), (40, 10))
    assert (iuv[0, 30:40, 0:10] == 9).all()
    assert not iuv[:, :30].any()


def test_largest_box_index_picks_the_biggest_area():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 40, 30], [0, 0, 30, 20]], dtype=torch.float32)
    assert largest_box_index(boxes) == 1


def test_resized_shape_follows_resize_shortest_edge():
    assert resized_shape(300, 200) == (1200, 800)
    assert resized_shape(480, 640) == (800, 1067)
    assert resized_shape(100, 1000) == (133, 1333)  # longer side capped


class _ContractModule(torch.nn.Module):
    """A stand-in implementing the export's I/O contract with synthetic outputs (not a network).

    It tests our adapter: it checks the input it gets (float32 BGR [3, H, W], short side 800), reports a
    confident detection only when the input's first channel (blue, for BGR) is the brightest, and returns:
    a large person box (upper half part 2 with U 0.25, lower half part 15 with U 0.75, V 0.5), a smaller
    confident box, and a low-score box.
    """

    def forward(self, image: torch.Tensor):
        assert image.dtype == torch.float32 and image.dim() == 3 and image.size(0) == 3
        h, w = image.size(1), image.size(2)
        assert min(h, w) == 800
        blue_first = image[0].mean() > image[2].mean()
        confident = torch.where(blue_first, torch.tensor(0.95), torch.tensor(0.1))
        boxes = torch.tensor(
            [
                [0.25 * w, 0.1 * h, 0.75 * w, 0.9 * h],
                [0.0, 0.0, 0.2 * w, 0.2 * h],
                [0.0, 0.0, 1.0 * w, 1.0 * h],
            ]
        )
        scores = torch.stack([confident, torch.tensor(0.85), torch.tensor(0.5)])
        s = 112
        coarse = torch.zeros(3, 2, s, s)
        coarse[:, 1] = 1.0
        fine = torch.zeros(3, 25, s, s)
        fine[:, 2, : s // 2] = 5.0
        fine[:, 15, s // 2 :] = 5.0
        u = torch.zeros(3, 25, s, s)
        u[:, 2] = 0.25
        u[:, 15] = 0.75
        v = torch.full((3, 25, s, s), 0.5)
        return boxes, scores, coarse, fine, u, v


@pytest.fixture()
def export_folder(tmp_path: Path) -> Path:
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; the export format is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(_ContractModule()).save(str(tmp_path / EXPORT_FILE))
    return tmp_path


def test_torchscript_backend_turns_export_outputs_into_image_iuv(export_folder: Path):
    backend = DensePoseTorchScript.from_pretrained(export_folder)
    photo = np.zeros((300, 200, 3), np.uint8)
    photo[..., 2] = 200  # blue photo (RGB): the stand-in only detects the person if it receives BGR

    result = backend.estimate(photo)

    assert result.iuv.shape == (3, 300, 200) and result.iuv.dtype == np.float32
    assert result.people_detected == 2  # the 0.5 detection is below the 0.8 threshold
    i, u, v = result.iuv
    # the largest box, mapped back to the photo: x 50..150, y 30..270
    assert (i[32:148, 52:148] == 2).all() and np.allclose(u[32:148, 52:148], 0.25)
    assert (i[152:268, 52:148] == 15).all() and np.allclose(u[152:268, 52:148], 0.75)
    assert np.allclose(v[i > 0], 0.5)
    assert not i[:, :49].any() and not i[:, 151:].any() and not i[:29].any() and not i[271:].any()


def test_torchscript_backend_without_confident_person_raises(export_folder: Path):
    backend = DensePoseTorchScript.from_pretrained(export_folder, min_score=0.9)
    red = np.zeros((300, 200, 3), np.uint8)
    red[..., 0] = 200  # the stand-in's big box now scores 0.1 and the small one 0.85 < 0.9
    with pytest.raises(NoPersonFound):
        backend.estimate(red)
    with pytest.raises(InvalidInput):
        backend.estimate(np.zeros((30, 20), np.float32))


def test_torchscript_backend_names_the_missing_export(tmp_path: Path):
    with pytest.raises(WeightsMissing, match=EXPORT_FILE):
        DensePoseTorchScript.from_pretrained(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("detectron2") is not None, reason="detectron2 is installed")
def test_detectron2_backend_explains_how_to_get_detectron2(tmp_path: Path):
    from services.densepose.backends.detectron2 import DensePoseDetectron2

    with pytest.raises(ImportError) as info:
        DensePoseDetectron2.from_pretrained(tmp_path)
    message = str(info.value)
    assert "detectron2" in message and "from source" in message
    assert "pip install 'git+https://github.com/facebookresearch/detectron2.git'" in message
    assert isinstance(info.value, WeightsMissing)  # so `auto` moves on to the next backend


class _TinyNetwork(torch.nn.Module):
    """Any network with weights: what the loaders do with a damaged file does not depend on the layers."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def _rewrite_archive(source: Path, target: Path, change) -> None:
    """Copy a TorchScript archive entry by entry, `change(name, data)` returning the new data or None to drop it."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for entry in archive.infolist():
            data = change(entry.filename, archive.read(entry.filename))
            if data is not None:
                out.writestr(entry, data)


@pytest.fixture()
def traced_export(tmp_path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(_TinyNetwork(), torch.zeros(1, 3, 8, 8)).save(str(tmp_path / "whole.ts"))
    return tmp_path / "whole.ts"


def test_torchscript_export_missing_a_tensor_is_refused_naming_the_file_and_the_tensor(
    traced_export, tmp_path
):
    folder = tmp_path / "damaged"
    folder.mkdir()
    _rewrite_archive(
        traced_export, folder / EXPORT_FILE, lambda name, data: None if name.endswith("data/1") else data
    )
    with pytest.raises(WeightsMissing) as error:
        DensePoseTorchScript.from_pretrained(folder)
    assert str(folder / EXPORT_FILE) in str(error.value) and "data/1" in str(error.value)


def test_torchscript_export_with_a_renamed_weight_is_refused_naming_the_file(traced_export, tmp_path):
    """An export holds its code and the attributes that code reads; renamed, the archive does not load (TorchScript
    keeps no key list to name the two keys from, so the file is what the message names)."""
    folder = tmp_path / "damaged"
    folder.mkdir()

    def rename_bias(name: str, data: bytes) -> bytes:
        return data.replace(b"bias", b"bia_") if name.endswith("data.pkl") else data

    _rewrite_archive(traced_export, folder / EXPORT_FILE, rename_bias)
    with pytest.raises(WeightsMissing, match=str(folder / EXPORT_FILE)):
        DensePoseTorchScript.from_pretrained(folder)


@pytest.mark.skipif(
    importlib.util.find_spec("detectron2") is None,
    reason="detectron2 is not installed (the GPU image has it)",
)
@pytest.mark.parametrize("damage", ["missing", "renamed"])
def test_detectron2_weights_that_do_not_fit_are_refused_naming_the_keys(tmp_path: Path, damage: str):
    from services.densepose.backends.detectron2 import load_weights

    state = dict(_TinyNetwork().state_dict())
    state["head.wt" if damage == "renamed" else "unused"] = state.pop("head.weight")
    if damage == "missing":
        state.pop("unused")
    path = tmp_path / "model_final.pkl"  # the model zoo's format, as model_final_162be9.pkl
    with path.open("wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}, f)
    with pytest.raises(WeightsMismatch) as error:
        load_weights(_TinyNetwork(), path)
    message = str(error.value)
    assert str(path) in message and "head.weight" in message
    assert ("head.wt" in message) == (damage == "renamed")
