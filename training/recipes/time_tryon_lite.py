"""Milliseconds per try-on of tryon-lite on this machine's CPU, at 256x192 and 512x384 (the network's size).

    python -m training.recipes.time_tryon_lite [--folder MODELS/tryon-lite] [--threads 2]

The whole backend call is timed (resizing, the network, composing at the person's size, pasting) on a
768x1024 photo; with `--folder`, its trained weights; without, the default network with random weights. The median
and the best of `--runs` calls are printed, after one call that warms up, with the median CPU time of all threads.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from services.diffusion.backends.tryon_lite import TryOnLiteBackend
from services.diffusion.models.tryon_lite import TryOnLite, TryOnLiteConfig
from services.diffusion.types import TryOnInputs

SIZES = ((256, 192), (512, 384))


def photo_inputs(height: int = 1024, width: int = 768, seed: int = 0) -> TryOnInputs:
    """A person-sized request with the upper body to repaint (random pixels: the compute does not care)."""
    rng = np.random.default_rng(seed)
    agnostic = np.zeros((height, width), np.uint8)
    agnostic[height // 5 : 3 * height // 5, width // 5 : 4 * width // 5] = 255
    person = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return TryOnInputs(
        person=person,
        masked_person=np.where(agnostic[..., None] > 0, 128, person).astype(np.uint8),
        agnostic_mask=agnostic,
        warped_garment=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        warped_mask=agnostic.copy(),
        garment=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        labels=np.zeros((height, width), np.uint8),
        category="upper_body",
        pose_map=rng.integers(0, 256, (18, height, width), dtype=np.uint8),
    )


def time_backend(backend: TryOnLiteBackend, inputs: TryOnInputs, runs: int) -> dict[str, float]:
    """Wall-clock milliseconds, and the process's CPU milliseconds (all threads): on a machine others share, CPU
    time over the threads is what an idle machine's wall clock would show."""
    backend.try_on(inputs)
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        backend.try_on(inputs)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return {
        "median_ms": round(float(np.median(wall)), 1),
        "best_ms": round(min(wall), 1),
        "median_cpu_ms": round(float(np.median(cpu)), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--folder", type=Path, help="a trained tryon-lite folder (its sizes; default: random)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Loaded in float32, as the backend loads it.
    trained = TryOnLite.from_pretrained(args.folder) if args.folder else None
    base = trained.config if trained is not None else TryOnLiteConfig()
    inputs = photo_inputs()
    report = {"threads": args.threads, "photo": "768x1024", "channels": list(base.channels)}
    for height, width in SIZES:
        model = TryOnLite(replace(base, height=height, width=width))
        if trained is not None:  # all convolutions: the trained weights run at either size
            model.load_state_dict(trained.state_dict())
        report[f"{width}x{height}"] = time_backend(TryOnLiteBackend(model), inputs, args.runs)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
