"""One training step of every module at its published size on a GPU: seconds per step and peak memory.

    python -m training.bench_step --out bench/training.json [--modules warp-tps,unet,...] [--steps 3]

Random weights at the published sizes (no file is read: training/trainers/sources.py PublishedRandom) and random
batches at 512x384, each step exactly what `vton train` runs for that module (the trainer's loss, backward, the
optimizer's step) under bf16 autocast with float32 weights, as the loop's default mixed precision. The median of
`--steps` timed steps after one warm-up step; peak = torch's max allocated memory over those steps. Needs torch,
diffusers, transformers and accelerate (and the repository on PYTHONPATH); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from training.config import TrainConfig
from training.data.sample import TryOnSample
from training.trainers import make_trainer
from training.trainers.sources import PublishedRandom

HEIGHT, WIDTH = 512, 384
# name: (MODULE, batch per GPU, options) - the papers' batch sizes (LaDI-VTON: 16 for its modules at 512x384;
# SCHP: 16 at 473x473; OpenPose: 10 at 368x368, here at 512x384).
RUNS: dict[str, tuple[str, int, dict]] = {
    "warp-tps": ("warp", 16, {"tps_steps": 1}),
    "warp-refinement": ("warp", 16, {"tps_steps": 0}),
    "emasc": ("emasc", 16, {"vgg_weight": 0.0}),
    "inversion": ("inversion", 16, {}),
    "unet": ("unet", 16, {}),
    "pose": ("pose", 10, {}),
    "parsing": ("parsing", 16, {}),
}


def random_batch(batch: int, device: torch.device) -> TryOnSample:
    g = torch.Generator(device="cpu").manual_seed(0)

    def image():
        return (torch.rand(batch, 3, HEIGHT, WIDTH, generator=g) * 2 - 1).to(device)

    mask = torch.zeros(batch, 1, HEIGHT, WIDTH)
    mask[:, :, HEIGHT // 4 : 3 * HEIGHT // 4, WIDTH // 4 : 3 * WIDTH // 4] = 1
    keypoints = torch.cat(
        [torch.rand(batch, 18, 1) * WIDTH, torch.rand(batch, 18, 1) * HEIGHT, torch.ones(batch, 18, 1)], 2
    )
    person = image()
    return TryOnSample(
        name=[f"{i}.jpg" for i in range(batch)],
        garment_name=[f"{i}.jpg" for i in range(batch)],
        category=["upper_body"] * batch,
        person=person,
        garment=image(),
        garment_mask=mask.to(device),
        parse=torch.randint(0, 20, (batch, HEIGHT, WIDTH), generator=g).to(device),
        keypoints=keypoints.to(device),
        pose_map=torch.rand(batch, 18, HEIGHT, WIDTH, generator=g).to(device),
        agnostic_mask=mask.to(device),
        masked_person=person * (1 - mask.to(device)),
    )


def timed_step(trainer, optimizer, batch: TryOnSample) -> float:
    """Seconds of one training step: the trainer's loss under bf16 autocast, backward, the optimizer's step."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = trainer.loss(batch)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(name: str, steps: int, device: torch.device) -> dict:
    module, batch_size, options = RUNS[name]
    config = TrainConfig(steps=2, batch_size=batch_size, height=HEIGHT, width=WIDTH, options=options)
    trainer = make_trainer(module, config)
    trainer.sources = PublishedRandom(device)
    trainer.setup(device, torch.bfloat16)
    trainer.step = 0 if name != "warp-refinement" else 1
    trainer.train_mode()
    optimizer = trainer.optimizer(config.learning_rate or trainer.learning_rate)
    batch = random_batch(batch_size, device)
    parameters = sum(p.numel() for p in trainer.parameters())

    timed_step(trainer, optimizer, batch)  # warm-up: kernels chosen, optimizer state allocated
    torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(timed_step(trainer, optimizer, batch) for _ in range(steps))
    peak = torch.cuda.max_memory_allocated() / 2**30
    del trainer, optimizer, batch
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "module": module,
        "batch": batch_size,
        "resolution": [HEIGHT, WIDTH],
        "trainable_parameters": parameters,
        "seconds_per_step": round(seconds, 4),
        "samples_per_second": round(batch_size / seconds, 2),
        "peak_gib": round(peak, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/training.json")
    parser.add_argument("--modules", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {}
    for name in args.modules.split(","):
        results[name] = bench(name, args.steps, device)
        print(name, json.dumps(results[name]), flush=True)
    out = Path(args.out)
    # A run of some modules updates their entries and keeps the others' (measured on the same GPU model)
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    if earlier.get("gpu") == torch.cuda.get_device_name():
        results = {**earlier.get("modules", {}), **results}
    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "precision": "bf16 autocast, float32 weights and AdamW/SGD state",
        "timing": f"median of {args.steps} steps after one warm-up; peak = torch.cuda.max_memory_allocated",
        "modules": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
