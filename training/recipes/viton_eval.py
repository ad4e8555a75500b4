"""Both chains on VITON's test split with one metric code: the learned one on the GPU, the embedded one here.

    # the embedded chain (keypoint-TPS + composite) on this machine's CPU, on the shards' own files:
    python -m training.recipes.viton_eval embedded --shards /work/data/shards --data /work/data/viton-shards \\
        --out /work/data/eval-embedded
    # the benchmark file from both summaries (the learned one comes back from the GPU driver):
    python -m training.recipes.viton_eval bench --learned learned-chain.json --embedded \\
        /work/data/eval-embedded/embedded-chain.json --out bench/learned-chain-viton256.json

A chain runs in-process through the datasets' evaluation (`training.eval`: the warp and diffusion backends fed with
the dataset's own parse and pose), over all paired test pairs, at the dataset's size (the warp backend is asked for
256x192: the size the warp module trains at). Besides that evaluation's metrics, the warped garment itself is
scored against the photo inside the person's garment region (parse labels 5, 6, 7). A 16-pair sheet of the
standard unpaired list (test_pairs.txt: each person with another garment) comes with it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.data.dataset import open_dataset
from training.data.formats import resize
from training.eval.evaluate import GARMENT_LABELS, InProcessChain, evaluate, predict_or_refuse
from training.eval.metrics import l1, ssim
from training.recipes.pack_viton import ROOT, unpack

SHEET_PAIRS = 16
# Their names in the evaluation's report -> the names of bench/learned-chain-viton256.json.
METRIC_NAMES = {
    "ssim": "ssim",
    "psnr": "psnr",
    "l1": "l1",
    "ssim_region": "ssim_garment_region",
    "psnr_region": "psnr_garment_region",
    "l1_region": "l1_garment_region",
    "warp_iou": "warp_mask_iou",
    "masked_person_ssim": "masked_person_ssim",
}


class AtDatasetSize:
    """A warp backend asked for the dataset's size, whatever the backend's default working size."""

    def __init__(self, backend, height: int, width: int):
        self.backend, self.height, self.width = backend, height, width

    def warp(self, inputs):
        return self.backend.warp(replace(inputs, height=self.height, width=self.width))


class WarpScored:
    """A chain that also scores each warped garment against the photo inside the person's garment region."""

    def __init__(self, chain):
        self.chain = chain
        self.backends = chain.backends
        self.scores: list[dict[str, float | None]] = []

    def predict(self, entry, raw):
        # A pair the chain refuses is scored here too, with its empty warp, as the evaluation scores it.
        prediction = predict_or_refuse(self.chain, entry, raw)
        height, width = raw.size
        region = np.isin(raw.parse, GARMENT_LABELS[raw.category])
        warped = resize(prediction.warped_garment, width, height)
        self.scores.append(
            {
                "warp_ssim_garment": ssim(warped, raw.person, region),
                "warp_l1_garment": l1(warped, raw.person, region),
            }
        )
        return prediction


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def evaluate_chain(
    root: Path,
    warp: str,
    diffusion: str,
    out: Path,
    device: str = "cpu",
    limit: int | None = None,
    progress: bool = False,
) -> dict:
    """Evaluate warp + diffusion on the paired test split of the CP-VTON folder `root` (all pairs, or `limit`)
    and draw the unpaired sheet; writes the evaluation's reports under `out` and returns the summary."""
    out = Path(out)
    paired = open_dataset(root, "test", "paired", layout="cpvton")
    chain = InProcessChain(warp=warp, diffusion=diffusion, device=device)
    chain.warp = AtDatasetSize(chain.warp, paired.height, paired.width)
    scored = WarpScored(chain)
    started = time.monotonic()
    report = evaluate(paired, scored, out / "paired", limit=limit, progress=progress)
    seconds = time.monotonic() - started
    evaluate(
        open_dataset(root, "test", "unpaired", layout="cpvton"), chain, out / "unpaired", limit=SHEET_PAIRS
    )
    summary = {
        "pairs": report["pairs"],
        "size": report["size"],
        "backends": report["backends"],
        **{ours: report["metrics"].get(theirs) for theirs, ours in METRIC_NAMES.items()},
        "warp_ssim_garment": _mean([s["warp_ssim_garment"] for s in scored.scores]),
        "warp_l1_garment": _mean([s["warp_l1_garment"] for s in scored.scores]),
        # Pairs a stage refused with its clear error, scored as no try-on (the masked person unchanged).
        "failures": len(report["failures"]),
        "failed_pairs": report["failures"],
        "seconds_per_pair": round(seconds / max(1, report["pairs"]), 4),
        "l1_scale": "0..1 (x255 for grey levels)",
        "sheets": {"paired": "paired/contact_sheet.png", "unpaired": "unpaired/contact_sheet.png"},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def bench(learned: dict, embedded: dict) -> dict:
    """bench/learned-chain-viton256.json: both chains' summaries, and whether the issue's floors hold."""
    keys = ("pairs", "failures", "warp_mask_iou", "ssim", "ssim_garment_region", "l1_garment_region")
    learned, embedded = _with_defaults(learned), _with_defaults(embedded)
    floors = {
        "warp_mask_iou_above_embedded": learned["warp_mask_iou"] > embedded["warp_mask_iou"],
        "ssim_garment_region_above_embedded": learned["ssim_garment_region"]
        > embedded["ssim_garment_region"],
        "l1_garment_region_below_embedded": learned["l1_garment_region"] < embedded["l1_garment_region"],
        "train_minutes_at_most_20": sum(learned["train_minutes"].values()) <= 20,
        "same_pairs": learned["pairs"] == embedded["pairs"],
    }
    return {
        "dataset": "VITON 256x192 (CP-VTON+), test split, paired",
        "gpu": learned.get("gpu"),
        "sizes": {"data": learned.get("size"), "warp": learned.get("size"), "generator": learned.get("size")},
        "learned": {**{k: learned.get(k) for k in keys}, **_rest(learned, keys)},
        "embedded": {**{k: embedded.get(k) for k in keys}, **_rest(embedded, keys)},
        "floors": floors,
    }


def _with_defaults(summary: dict) -> dict:
    """A summary with `failures` and `train_minutes` per module always there.

    A summary without `failures` comes from before refused pairs were recorded, when any error stopped the
    evaluation: a complete one had none. A chain without `train_minutes` (the embedded one: geometry and
    compositing) trained none of its modules.
    """
    return {
        "failures": 0,
        "train_minutes": {backend: 0.0 for backend in summary.get("backends", {}).values()},
        **summary,
    }


def _rest(summary: dict, keys: tuple[str, ...]) -> dict:
    skip = set(keys) | {"sheets", "gpu", "size"}
    return {k: v for k, v in summary.items() if k not in skip}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    emb = sub.add_parser("embedded", help="the embedded chain (keypoint-tps + composite) on the test split")
    emb.add_argument("--shards", type=Path, help="unpack these shards into --data first")
    emb.add_argument(
        "--data", type=Path, required=True, help=f"the folder holding {ROOT}/ (the unpacked shards)"
    )
    emb.add_argument("--out", type=Path, required=True)
    emb.add_argument("--limit", type=int, default=None, help="the first N pairs only")
    out = sub.add_parser("bench", help="write the benchmark JSON from both summaries")
    out.add_argument("--learned", type=Path, required=True)
    out.add_argument("--embedded", type=Path, required=True)
    out.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "embedded":
        if args.shards:
            unpack(args.shards, args.data)
        summary = evaluate_chain(
            args.data / ROOT, "keypoint-tps", "composite", args.out, "cpu", args.limit, progress=True
        )
        (args.out / "embedded-chain.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
    else:
        report = bench(json.loads(args.learned.read_text()), json.loads(args.embedded.read_text()))
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["floors"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
