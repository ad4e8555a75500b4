"""The GPU machine's side of the learned chain on VITON: one command, run again call after call until it says done.

    python3 -m training.recipes.viton_device --shards .shards --out $OUT

Each call does what is next, within `--budget-minutes` (the machine's command limit is 10 minutes):
1. unpacks the shards carried in `--shards` (one a call; training/recipes/pack_viton.py made them) into `--data`;
   once every shard is there:
2. trains LaDI-VTON's warping module from scratch (the warp trainer: the TPS network, then the refinement U-Net)
   for `--warp-minutes`, in chunks that resume from the checkpoints under `--work` (training/recipes/timed.py);
3. warps every train pair with it, through the warp backend's own loader (a cache under `--work`);
4. trains tryon-lite on those warps for `--tryon-minutes`, the same way;
5. evaluates the learned chain (warp + tryon-lite, loaded by their backends) on all paired test pairs and draws
   the 16-pair unpaired sheet (training/recipes/viton_eval.py).
What comes back in `--out`: `progress.json` every call; at the end `learned-chain.json` (the summary with the
GPU, the training minutes and the plan), the two contact sheets, the paired report, and the generator's files in
float16 (`tryon-lite/`, small enough to come back; the warping module's are not).

Only torch, numpy, PIL, OpenCV, safetensors, accelerate, tqdm, PyYAML and TensorBoard are needed: the GPU image
has them. It has no diffusers, whose import the diffusion stage's model package makes; `_models_without_diffusers`
lets tryon-lite's own module load without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _models_without_diffusers() -> None:
    """Where diffusers is absent, register `services.diffusion.models` as a bare package, so that importing
    `services.diffusion.models.tryon_lite` (plain torch) skips the package's __init__ (LaDI-VTON's networks)."""
    if importlib.util.find_spec("diffusers") is not None or "services.diffusion.models" in sys.modules:
        return
    package = types.ModuleType("services.diffusion.models")
    package.__path__ = [str(REPO / "services" / "diffusion" / "models")]
    sys.modules["services.diffusion.models"] = package


_models_without_diffusers()
# The loop's progress bars would fill the little of the output that comes back: one line every half minute.
os.environ.setdefault("TQDM_MININTERVAL", "30")

import torch  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.data.dataset import open_dataset  # noqa: E402
from training.recipes.gpu_pairs import GpuPairs  # noqa: E402
from training.recipes.pack_viton import ROOT, unpack  # noqa: E402
from training.recipes.timed import CALIBRATION_STEPS, RESERVE_S, Phase, PlanFile, last_step, run_timed  # noqa: E402
from training.recipes.viton_eval import evaluate_chain  # noqa: E402
from training.trainers.tryon_lite import TryOnLiteTrainer, warp_batch  # noqa: E402
from training.trainers.warp import WarpTrainer  # noqa: E402

WARP_BACKEND = "ladi-vton-warp-vitonhd"
# Of the warp's minutes, for the TPS network: the refinement U-Net, which predicts the warp's mask here, steps about
# 3.6 times slower and needs the larger share (run 3, 6 minutes on an H100 at batch 32: TPS 5,833 steps in 2.1 min,
# refinement 3,030 steps in 3.9 min).
TPS_SHARE = 0.35
# From scratch the TPS network also learns the garment's shape, and the refinement U-Net predicts the warp's mask
# (training/trainers/warp.py and services/warp/backends/ladi_vton.py `split_refinement`: why)
WARP_OPTIONS = {"mask_weight": 1.0, "refinement": {"out_channels": 4}}
EVAL_RESERVE_S = (
    180.0  # the learned chain's evaluation on 2,032 pairs (142 s measured on an H100), with margin
)
WARMUP_STEPS = 200


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started = time.monotonic()
        self.deadline = self.started + args.budget_minutes * 60
        self.work, self.out = Path(args.work), Path(args.out)
        self.plans = PlanFile(self.work / "plan.json")
        self.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = "bf16" if self.device == "cuda" else "no"
        self._train_pairs: GpuPairs | None = None
        self.log_lines: list[str] = []

    def log(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {message}"
        print(line, flush=True)
        self.log_lines.append(line)

    # -- data --------------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return Path(self.args.data) / ROOT

    def train_pairs(self) -> GpuPairs:
        if self._train_pairs is None:
            reader = open_dataset(self.root, "train", "paired", layout="cpvton")
            started = time.monotonic()
            self._train_pairs = GpuPairs.load(reader, self.device)
            self.log(f"{len(reader)} train pairs on {self.device} in {time.monotonic() - started:.0f} s")
        return self._train_pairs

    def config(
        self, steps: int, batch: int, options: dict, learning_rate: float | None = None
    ) -> TrainConfig:
        height, width = self.train_pairs().tensors["person"].shape[-2:]
        return TrainConfig(
            steps=steps,
            batch_size=batch,
            learning_rate=learning_rate,
            warmup_steps=WARMUP_STEPS,  # the same in every chunk: the resumed schedule must not change
            mixed_precision=self.precision,
            seed=self.args.seed,
            checkpoint_every=10**9,  # each chunk checkpoints at its end
            log_every=50,
            sample_every=10**9,
            height=int(height),
            width=int(width),
            dataset="vitonhd",
            init="scratch",
            device="cpu" if self.device == "cpu" else None,
            options=options,
        )

    # -- the steps ---------------------------------------------------------------------------------------

    def train_warp(self) -> bool:
        seconds = self.args.warp_minutes * 60
        plan = self.plans.get(
            "warp",
            [Phase("warp-tps", seconds * TPS_SHARE), Phase("warp-refinement", seconds * (1 - TPS_SHARE))],
        )

        def build(steps: int, plan) -> WarpTrainer:
            tps_steps = plan.phases[0].steps if plan.phases[0].steps is not None else 10**9
            options = {"tps_steps": tps_steps, **WARP_OPTIONS, **self.args.warp_options}
            return WarpTrainer(self.config(steps, self.args.warp_batch, options))

        return self._timed("warp", plan, build, self.work / "warp")

    def train_tryon(self) -> bool:
        plan = self.plans.get("tryon-lite", [Phase("tryon-lite", self.args.tryon_minutes * 60)])

        def build(steps: int, plan) -> TryOnLiteTrainer:
            return TryOnLiteTrainer(self.config(steps, self.args.tryon_batch, self.args.tryon_options))

        if plan.phase_at(last_step(self.work / "tryon-lite")) is not None:
            self.cache_warps()
        return self._timed("tryon-lite", plan, build, self.work / "tryon-lite")

    def _timed(self, name: str, plan, build, out_dir: Path) -> bool:
        if plan.phase_at(last_step(out_dir)) is None:
            return True
        limit = self.deadline
        if name == "tryon-lite" and self._finishes_with_evaluation(plan, last_step(out_dir)):
            limit -= EVAL_RESERVE_S  # the last chunk leaves the evaluation its time in this call
        finished = run_timed(
            plan,
            build,
            self.train_pairs(),
            out_dir,
            limit,
            self.plans.save,
            self.log,
            self.args.calibration_steps,
        )
        self.log(
            f"{name}: step {last_step(out_dir)} of {plan.total_steps or '?'}, {plan.train_seconds / 60:.1f} min"
        )
        return finished

    def _finishes_with_evaluation(self, plan, done: int) -> bool:
        """Whether the rest of the plan and the evaluation fit in this call (else train to the deadline)."""
        phase = plan.phases[-1]
        if phase.steps is None or not phase.rate:
            return False
        left = self.deadline - time.monotonic()
        return (plan.total_steps - done) / phase.rate + RESERVE_S + EVAL_RESERVE_S <= left

    def cache_warps(self) -> None:
        """Every train pair warped by the trained module, loaded through the warp backend's own loader."""
        pairs = self.train_pairs()
        if "warped_garment" in pairs.tensors:
            return
        path = self.work / "warps-train.pt"
        if path.is_file():
            cached = torch.load(path, map_location=pairs.device)
            pairs.set_warps(cached["warped_garment"], cached["warped_mask"])
            return
        from services.warp.backends.ladi_vton import LadiVtonWarpBackend

        started = time.monotonic()
        backend = LadiVtonWarpBackend.from_pretrained(self.models_dir() / WARP_BACKEND, device=self.device)
        garments, masks = [], []
        for first in range(0, len(pairs), 256):
            batch = pairs.batch(list(range(first, min(first + 256, len(pairs)))))
            warped, mask = warp_batch(backend, batch)
            garments.append(((warped + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
            masks.append(mask.to(torch.uint8))
        cached = {"warped_garment": torch.cat(garments), "warped_mask": torch.cat(masks)}
        pairs.set_warps(cached["warped_garment"], cached["warped_mask"])
        torch.save({k: v.cpu() for k, v in cached.items()}, path)
        self.log(f"{len(pairs)} train pairs warped in {time.monotonic() - started:.0f} s")

    def models_dir(self) -> Path:
        """A models directory holding both trained backends' folders (links to the trainers' exports)."""
        folder = self.work / "models"
        folder.mkdir(parents=True, exist_ok=True)
        targets = {
            WARP_BACKEND: self.work / "warp" / "weights" / WARP_BACKEND,
            "tryon-lite": self.args.generator.resolve()
            if self.args.generator
            else self.work / "tryon-lite" / "weights" / "tryon-lite",
        }
        for backend, target in targets.items():
            link = folder / backend
            if not link.exists():
                link.symlink_to(target)
        return folder

    def evaluate(self) -> dict | None:
        summary_path = self.work / "eval" / "summary.json"
        if summary_path.is_file():
            return json.loads(summary_path.read_text())
        if self.deadline - time.monotonic() < EVAL_RESERVE_S:
            self.log("evaluation: not enough time left in this call; the next call does it")
            return None
        os.environ["VTON_MODELS_DIR"] = str(self.models_dir())
        self.log("evaluating the learned chain on the paired test split")
        summary = evaluate_chain(
            self.root, WARP_BACKEND, "tryon-lite", self.work / "eval", self.device, self.args.eval_limit
        )
        self.log(f"evaluated {summary['pairs']} pairs")
        return summary

    # -- what comes back -----------------------------------------------------------------------------------

    def write_out(self, stage: str, summary: dict | None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        progress = {
            "stage": stage,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "plan": {k: v.to_dict() for k, v in self.plans.plans.items()},
            "log": self.log_lines,
        }
        (self.out / "progress.json").write_text(json.dumps(progress, indent=2) + "\n")
        if summary is None:
            return
        plans = self.plans.plans
        result = {
            **summary,
            "gpu": torch.cuda.get_device_name() if self.device == "cuda" else "cpu",
            "train_minutes": {name: round(plan.train_seconds / 60, 2) for name, plan in plans.items()},
            "train_steps": {name: plan.total_steps for name, plan in plans.items()},
            "train_pairs": sum(
                json.loads(p.read_text())["pairs"]["train"] for p in self.root.glob("shard-*.json")
            ),
            # of the modules this run trained (a generator given with --generator was trained elsewhere)
            "batch": {
                name: batch
                for name, batch in (("warp", self.args.warp_batch), ("tryon-lite", self.args.tryon_batch))
                if name in plans
            },
        }
        if self.args.generator:
            result["generator"] = f"trained earlier, not in this run: {self.args.generator}"
        (self.out / "learned-chain.json").write_text(json.dumps(result, indent=2) + "\n")
        eval_dir = self.work / "eval"
        for which in ("paired", "unpaired"):
            sheet = eval_dir / which / "contact_sheet.png"
            if sheet.is_file():
                (self.out / f"sheet-{which}.png").write_bytes(sheet.read_bytes())
        report = eval_dir / "paired" / "report.json"
        if report.is_file():
            (self.out / "report-paired.json").write_bytes(report.read_bytes())
        if not self.args.generator:
            self._generator_fp16()

    def _generator_fp16(self) -> None:
        from safetensors.torch import load_file, save_file

        folder = self.work / "tryon-lite" / "weights" / "tryon-lite"
        out = self.out / "tryon-lite"
        out.mkdir(exist_ok=True)
        state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_file(half, str(out / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        (out / "config.json").write_bytes((folder / "config.json").read_bytes())

    def __call__(self) -> int:
        present, total = unpack(Path(self.args.shards), Path(self.args.data), self.log)
        if total is None or present < total:
            self.log(f"shards: {present} of {total or '?'} here; carry the next one")
            self.write_out("shards", None)
            return 0
        if not self.train_warp():
            self.write_out("warp", None)
            return 0
        if not self.args.generator and not self.train_tryon():
            self.write_out("tryon-lite", None)
            return 0
        summary = self.evaluate()
        self.write_out("done" if summary else "evaluation", summary)
        self.log("done: learned-chain.json written" if summary else "call again to evaluate")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", default=".shards", help="the carried shards (default .shards)")
    parser.add_argument(
        "--data", default="/root/data", help="where the shards are unpacked (default /root/data)"
    )
    parser.add_argument("--work", default="/root/ckpt", help="checkpoints, caches, plan (default /root/ckpt)")
    parser.add_argument(
        "--out", default=os.environ.get("OUT", "out/viton"), help="what comes back (default $OUT)"
    )
    parser.add_argument("--budget-minutes", type=float, default=8.5, help="stop starting work after this")
    parser.add_argument("--warp-minutes", type=float, default=6.0)
    parser.add_argument("--tryon-minutes", type=float, default=9.0)
    parser.add_argument("--warp-batch", type=int, default=32)
    parser.add_argument("--tryon-batch", type=int, default=32)
    parser.add_argument(
        "--warp-options", type=json.loads, default={}, help="the warp trainer's options (JSON)"
    )
    parser.add_argument("--tryon-options", type=json.loads, default={}, help="tryon-lite's options (JSON)")
    parser.add_argument(
        "--generator",
        type=Path,
        default=None,
        help="a tryon-lite folder trained earlier (on another warp's output) to evaluate with, instead of training one",
    )
    parser.add_argument(
        "--calibration-steps", type=int, default=CALIBRATION_STEPS, help="a phase's first chunk"
    )
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate the first N test pairs only")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    return Run(parser.parse_args(argv))()


if __name__ == "__main__":
    raise SystemExit(main())
