"""Every full network at its published size with random weights, on a GPU: time per stage and peak memory.

    python -m vton_cli.bench_gpu --inputs INPUTS.npz --out DIR [--dtype fp16]

INPUTS.npz holds a person photo, a garment photo and the embedded stages' keypoints, label map, agnostic mask and
pose map for it (`--make-inputs` writes it on any machine), so the GPU machine needs no embedded network.
Random weights give meaningless pictures but the published compute and memory. DensePose is left out: it needs
detectron2 or an exported TorchScript file, neither of which a bare GPU machine has.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vton.runtime.vocab import Category, Stage

RESOLUTIONS = ((512, 384), (1024, 768))


def make_inputs(person_path: str, garment_path: str, out: Path) -> None:
    from services.parsing.agnostic import agnostic_mask, masked_person
    from services.parsing.backends import BACKENDS as PARSERS
    from services.pose.backends import BACKENDS as POSES
    from services.pose.openpose_format import pose_map
    from vton.runtime import images
    from vton.runtime.backend import select_backend

    person = cv2.resize(images.read_rgb(person_path), (768, 1024), interpolation=cv2.INTER_AREA)
    garment = images.read_rgb(garment_path)
    keypoints = select_backend(POSES, "blazepose-litert")[1].estimate(person).keypoints
    labels = select_backend(PARSERS, "geometric")[1].parse(person).labels
    mask = agnostic_mask(labels, keypoints, Category.UPPER_BODY)
    np.savez_compressed(
        out,
        person=person,
        garment=garment,
        keypoints=keypoints,
        labels=labels,
        mask=mask,
        masked=masked_person(person, mask),
        pose_map=pose_map(keypoints, 768, 1024),
    )


def _timed(fn, repeat: int) -> tuple[float, float]:
    """Median seconds of `repeat` runs after one warm-up, and the peak GPU memory (GiB) of one run."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    samples = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), torch.cuda.max_memory_allocated() / 2**30


def run(inputs: dict, dtype: torch.dtype, repeat: int) -> dict:
    from services.diffusion import testing as ladi_diffusion
    from services.diffusion.types import TryOnInputs
    from services.parsing import testing as schp
    from services.pose import testing as openpose
    from services.warp import testing as ladi_warp
    from services.warp.types import WarpInputs

    person, garment = inputs["person"], inputs["garment"]
    rows: list[dict] = []

    def record(stage: str, network: str, resolution: str, fn, **extra) -> float:
        torch.cuda.empty_cache()
        seconds, peak = _timed(fn, repeat)
        rows.append(
            {
                "stage": stage,
                "network": network,
                "resolution": resolution,
                "seconds": seconds,
                "peak_gib": peak,
                **extra,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        return seconds

    pose = openpose.build_full_size_random("cuda", dtype, scales=(1.0,))
    record(
        Stage.POSE,
        "OpenPose body (VGG-19 + 6 stages), 1 scale",
        "1024x768",
        lambda: pose.network_maps(person),
    )
    pose = None  # free its memory before the next network
    parser = schp.build_full_size_random("cuda", dtype)
    record(
        Stage.PARSING, "SCHP ResNet-101 CE2P, flip", "1024x768 (473x473 net)", lambda: parser.parse(person)
    )
    parser = None

    warp = ladi_warp.build_full_size_random("cuda", dtype)
    diffusion = ladi_diffusion.build_full_size_random("cuda", dtype)
    totals = {}
    for height, width in RESOLUTIONS:
        res = f"{height}x{width}"
        warp_in = WarpInputs(
            garment,
            person,
            inputs["masked"],
            inputs["mask"],
            inputs["keypoints"],
            inputs["labels"],
            Category.UPPER_BODY,
            pose_map=inputs["pose_map"],
            width=width,
            height=height,
        )
        warp_s = record(Stage.WARP, "LaDI-VTON TPS + refinement U-Net", res, lambda w=warp_in: warp.warp(w))
        warped = warp.warp(warp_in)
        for scheduler, steps in (("ddim", 50), ("dpm-solver++", 25)):
            tryon_in = TryOnInputs(
                person,
                inputs["masked"],
                inputs["mask"],
                warped.warped_garment,
                warped.warped_mask,
                garment,
                inputs["labels"],
                Category.UPPER_BODY,
                pose_map=inputs["pose_map"],
                seed=1,
                steps=steps,
                guidance_scale=7.5,
                scheduler=scheduler,
                width=width,
                height=height,
            )
            s = record(
                Stage.DIFFUSION,
                f"LaDI-VTON SD-2 UNet + EMASC + inversion, {scheduler} {steps} steps, CFG 7.5",
                res,
                lambda t=tryon_in: diffusion.try_on(t),
                steps=steps,
            )
            totals[f"{res} {scheduler} {steps}"] = warp_s + s
    return {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "host": platform.node(),
        "repeat": repeat,
        "rows": rows,
        "warp_plus_diffusion_s": totals,
    }


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        f"# Full networks at published size, random weights: {report['device']}, {report['dtype']}",
        "",
        f"torch {report['torch']}; median of {report['repeat']} runs after a warm-up; peak = torch's max allocated.",
        "",
        "| stage | network | resolution | seconds | peak GiB |",
        "|---|---|---|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['stage']} | {r['network']} | {r['resolution']} | {r['seconds']:.3f} | {r['peak_gib']:.2f} |"
        )
    lines += ["", "Warp + diffusion per try-on:", ""]
    lines += [f"- {k}: {v:.2f} s" for k, v in report["warp_plus_diffusion_s"].items()]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", default="bench")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--make-inputs", nargs=2, metavar=("PERSON", "GARMENT"))
    args = parser.parse_args()
    if args.make_inputs:
        make_inputs(*args.make_inputs, Path(args.inputs))
        return 0
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    report = run(dict(np.load(args.inputs)), dtype, args.repeat)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gpu-full-networks-{args.dtype}.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, out / f"gpu-full-networks-{args.dtype}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
