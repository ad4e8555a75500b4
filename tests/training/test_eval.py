"""`vton eval --data`: the distribution and perceptual metrics from weight files, the evaluation loop over a
paired split (an oracle chain scores perfectly), and the in-process chain of embedded backends on viton256."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.dataset import open_dataset
from training.data.raw import derive
from training.eval.evaluate import GARMENT_LABELS, Prediction, evaluate, load_metrics
from training.eval.perceptual import LPIPS, fid, kid
from vton.runtime.errors import NoPersonFound, WeightsMissing
from vton_cli.cli import main as vton


def test_fid_is_the_squared_mean_shift_between_equal_covariances_and_zero_for_one_set():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))
    assert fid(features, features) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8) / 4
    assert fid(features, features + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)
    # Different spreads: for 1-D Gaussians the distance is (mu1 - mu2)^2 + (sigma1 - sigma2)^2.
    a = rng.normal(0, 1, (20000, 1))
    b = rng.normal(0, 3, (20000, 1))
    expected = (a.std(ddof=1) - b.std(ddof=1)) ** 2 + (a.mean() - b.mean()) ** 2
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    near = kid(a, b, subsets=20, subset_size=200)
    far = kid(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(near) < 0.05 and far > 10 * max(abs(near), 1e-3)
    with pytest.raises(ValueError, match="at least two"):
        kid(a[:1], b)


def _lpips_files(folder: Path) -> list[Path]:
    """Random weights under the official files' key names: torchvision's AlexNet and LPIPS v0.1 alex.pth."""
    torch.manual_seed(0)
    shapes = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
    alexnet = {}
    for index, (cout, cin, k) in shapes.items():
        alexnet[f"features.{index}.weight"] = torch.randn(cout, cin, k, k) * 0.05
        alexnet[f"features.{index}.bias"] = torch.zeros(cout)
    alexnet["classifier.1.weight"] = torch.zeros(4, 4)  # the classifier is there and unused
    lin = {f"lin{n}.model.1.weight": torch.rand(1, c, 1, 1) for n, (c, _, _) in enumerate(shapes.values())}
    torch.save(alexnet, folder / "alexnet-owt-7be5be79.pth")
    torch.save(lin, folder / "alex.pth")
    return [folder / "alexnet-owt-7be5be79.pth", folder / "alex.pth"]


def test_lpips_loads_the_official_files_and_measures_a_distance(tmp_path):
    model = LPIPS.from_files(_lpips_files(tmp_path))
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (96, 80, 3)).astype(np.uint8)
    noisy = [np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8) for s in (5, 40)]
    assert model.distance(a, a) == pytest.approx(0.0, abs=1e-7)
    assert 0 < model.distance(a, noisy[0]) < model.distance(a, noisy[1])
    assert model.distance(a, noisy[1]) == pytest.approx(model.distance(noisy[1], a), rel=1e-5)
    with pytest.raises(WeightsMissing, match="lin0.model.1.weight"):
        LPIPS.from_files([tmp_path / "alexnet-owt-7be5be79.pth"])


class _PoolFeatures(torch.nn.Module):
    """Stands in for the TorchScript Inception: same call, features = a pooled colour grid."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299)
        return torch.nn.functional.adaptive_avg_pool2d(x / 255, 4).flatten(1)


class _OracleChain:
    """Returns the real photo and warps the garment exactly onto the person's garment region."""

    backends = {"chain": "oracle"}

    def predict(self, entry, raw) -> Prediction:
        return Prediction(
            raw.person.copy(), raw.person.copy(), np.isin(raw.parse, GARMENT_LABELS[raw.category])
        )


def test_an_oracle_chain_scores_perfectly_and_every_metric_is_reported(viton256, tmp_path):
    inception = tmp_path / "inception.pt"
    torch.jit.script(_PoolFeatures()).save(str(inception))
    metrics = load_metrics(_lpips_files(tmp_path), inception)
    dataset = open_dataset(viton256, "test")
    report = evaluate(dataset, _OracleChain(), tmp_path / "eval", metrics, limit=4, progress=False)
    m = report["metrics"]
    assert report["pairs"] == 4 and report["layout"] == "cpvton" and report["skipped"] == {}
    assert m["ssim"] == pytest.approx(1.0) and m["ssim_region"] == pytest.approx(1.0)
    assert m["psnr"] == 100.0 and m["l1"] == 0.0 and m["l1_region"] == 0.0
    assert m["warp_iou"] == 1.0 and m["lpips"] == pytest.approx(0.0, abs=1e-6)
    # KID's unbiased estimate of two equal small sets is a little negative, not 0 (its diagonal terms differ).
    assert m["fid"] == pytest.approx(0.0, abs=1e-5) and -0.5 < m["kid"] <= 0
    assert m["masked_person_ssim"] < 0.95  # the floor: the person with the garment greyed out
    on_disk = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert [p["name"] for p in on_disk["per_pair"]] == [e.name for e in dataset.entries[:4]]
    sheet = Image.open(tmp_path / "eval" / "contact_sheet.png")
    assert sheet.height > 4 * 256


class _RefusingChain(_OracleChain):
    """The oracle, except for one pair that a stage refuses, with its clear error or with a bug."""

    def __init__(self, refused: str, error: Exception):
        self.refused, self.error = refused, error

    def predict(self, entry, raw) -> Prediction:
        if entry.name == self.refused:
            raise self.error
        return super().predict(entry, raw)


def test_a_pair_a_stage_refuses_is_recorded_and_scored_as_no_tryon(viton256, tmp_path):
    dataset = open_dataset(viton256, "test")
    refused = dataset.entries[1]
    error = NoPersonFound("no garment found: the garment mask is empty")
    report = evaluate(dataset, _RefusingChain(refused.name, error), tmp_path, limit=3, progress=False)
    assert report["pairs"] == 3
    assert report["failures"] == [
        {"name": refused.name, "garment": refused.garment_name, "reason": f"NoPersonFound: {error}"}
    ]
    answered, failed, _ = report["per_pair"]
    assert answered["failure"] is None and answered["ssim"] == pytest.approx(1.0)
    # What the user gets is an error, so no try-on: the masked person unchanged, and no warped garment.
    assert failed["ssim"] == pytest.approx(failed["masked_person_ssim"]) and failed["ssim"] < 0.95
    assert failed["warp_iou"] == 0.0
    raw = dataset.raw(1)
    masked_l1 = np.abs(derive(raw).masked_person.astype(float) - raw.person.astype(float)).mean() / 255
    assert failed["l1"] == pytest.approx(masked_l1, rel=1e-4)
    # The refused pair counts in the means like any other.
    assert report["metrics"]["warp_iou"] == pytest.approx(2 / 3)


def test_an_error_that_is_no_stage_error_stops_the_evaluation(viton256, tmp_path):
    dataset = open_dataset(viton256, "test")
    chain = _RefusingChain(dataset.entries[0].name, ValueError("cannot convert float NaN to integer"))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(dataset, chain, tmp_path, limit=2, progress=False)


def test_vton_eval_data_in_process_with_the_embedded_backends(viton256, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    out = tmp_path / "eval"
    code = vton(
        ["eval", "--data", str(viton256), "--split", "test", "--in-process", "--backend", "warp=keypoint-tps",
         "--backend", "diffusion=composite", "--limit", "3", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "report.json").read_text())
    assert report["backends"] == {"warp": "keypoint-tps", "diffusion": "composite"}
    assert (
        set(report["skipped"]) == {"lpips", "fid", "kid"}
        and "alexnet-owt-7be5be79.pth" in report["skipped"]["lpips"]
    )
    m = report["metrics"]
    assert 0 < m["ssim"] < 1 and 0 < m["warp_iou"] < 1 and 0 < m["l1_region"] < 1
    # The chain paints a garment where the masked person is grey: it beats returning it unchanged.
    assert m["ssim"] > m["masked_person_ssim"]
    assert "lpips                skipped" in printed and (out / "contact_sheet.png").is_file()


def test_vton_eval_data_refuses_a_folder_that_is_no_dataset(tmp_path, capsys):
    assert vton(["eval", "--data", str(tmp_path), "--in-process"]) == 2
    assert "none of the layouts" in capsys.readouterr().err
