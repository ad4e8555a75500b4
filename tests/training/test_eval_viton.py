"""The VITON recipe's evaluation (training/recipes/viton_eval.py): a pair a stage refuses is scored with its empty
warp too, and the benchmark file holds, per chain, the issue's metrics, the refused pairs and training minutes."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.dataset import open_dataset
from training.eval.evaluate import GARMENT_LABELS, Prediction, evaluate
from training.eval.metrics import l1
from training.recipes.viton_eval import WarpScored, bench
from vton.runtime.errors import InvalidInput


class _WarpsExactly:
    """The real photo as the result and as the warped garment, except one pair the warp refuses."""

    backends = {"warp": "exact", "diffusion": "photo"}

    def __init__(self, refused: str):
        self.refused = refused

    def predict(self, entry, raw) -> Prediction:
        if entry.name == self.refused:
            raise InvalidInput("the garment mask is 10x10 but the garment photo is 192x256")
        return Prediction(raw.person, raw.person, np.isin(raw.parse, GARMENT_LABELS[raw.category]))


def test_a_refused_pair_is_scored_with_an_empty_warp(viton256, tmp_path):
    dataset = open_dataset(viton256, "test")
    scored = WarpScored(_WarpsExactly(dataset.entries[2].name))
    report = evaluate(dataset, scored, tmp_path, limit=3, progress=False)
    assert [f["name"] for f in report["failures"]] == [dataset.entries[2].name]
    assert len(scored.scores) == 3
    assert [s["warp_l1_garment"] for s in scored.scores[:2]] == [0.0, 0.0]
    raw = dataset.raw(2)
    region = np.isin(raw.parse, GARMENT_LABELS[raw.category])
    # No warped garment: black where the person's garment is.
    assert scored.scores[2]["warp_l1_garment"] == pytest.approx(
        l1(np.zeros_like(raw.person), raw.person, region)
    )


def _summary(**values) -> dict:
    base = {
        "pairs": 2032,
        "size": [256, 192],
        "warp_mask_iou": 0.5,
        "ssim": 0.85,
        "ssim_garment_region": 0.6,
        "l1_garment_region": 0.08,
        "sheets": {"paired": "paired/contact_sheet.png"},
    }
    return {**base, **values}


def test_bench_holds_per_chain_metrics_failures_and_training_minutes():
    learned = _summary(
        backends={"warp": "ladi-vton-warp-vitonhd", "diffusion": "tryon-lite"},
        warp_mask_iou=0.55,
        ssim_garment_region=0.69,
        l1_garment_region=0.07,
        gpu="NVIDIA H100 80GB HBM3",
        train_minutes={"warp": 5.5, "tryon-lite": 8.3},
    )  # written before refused pairs were recorded: no `failures`
    refused = [
        {"name": "015105_0.jpg", "garment": "015105_1.jpg", "reason": "NoPersonFound: no garment found"}
    ]
    embedded = _summary(
        backends={"warp": "keypoint-tps", "diffusion": "composite"}, failures=1, failed_pairs=refused
    )
    report = bench(learned, embedded)
    for chain in ("learned", "embedded"):
        for key in ("pairs", "warp_mask_iou", "ssim", "ssim_garment_region", "l1_garment_region"):
            assert report[chain][key] == (learned if chain == "learned" else embedded)[key]
    assert (
        report["learned"]["failures"] == 0 and report["learned"]["train_minutes"] == learned["train_minutes"]
    )
    assert report["embedded"]["failures"] == 1 and report["embedded"]["failed_pairs"] == refused
    assert report["embedded"]["train_minutes"] == {"keypoint-tps": 0.0, "composite": 0.0}
    assert report["gpu"] == "NVIDIA H100 80GB HBM3" and report["sizes"]["generator"] == [256, 192]
    assert report["floors"] == {
        "warp_mask_iou_above_embedded": True,
        "ssim_garment_region_above_embedded": True,
        "l1_garment_region_below_embedded": True,
        "train_minutes_at_most_20": True,
        "same_pairs": True,
    }
    assert "sheets" not in report["learned"]
