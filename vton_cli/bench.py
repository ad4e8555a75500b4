"""`vton bench`: time each stage's backend on a 1024x768 photo, in this process, on this machine.

Every number is also given as a ratio to a baseline measured in the same run (a PNG encode and decode of the
same photo, the work each gRPC hop does anyway), so results from different machines can be compared. Results go
to BENCH_DIR/cpu-stages.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from vton.runtime import images
from vton.runtime.backend import select_backend
from vton.runtime.vocab import Category, Stage
from vton_cli.examples import fetch_examples

FLOOR_ANALYSIS_S = 1.5  # pose + parsing + densepose per 1024x768 photo on 2 cores (issue floor)


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up: first calls allocate and load
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), out


def run(person: np.ndarray, garment: np.ndarray, repeat: int) -> dict:
    from services.densepose.backends import BACKENDS as DENSEPOSE
    from services.diffusion.backends import BACKENDS as DIFFUSION
    from services.diffusion.types import TryOnInputs
    from services.parsing.agnostic import agnostic_mask, masked_person
    from services.parsing.backends import BACKENDS as PARSING
    from services.pose.backends import BACKENDS as POSE
    from services.warp.backends import BACKENDS as WARP
    from services.warp.types import WarpInputs

    person = cv2.resize(person, (768, 1024), interpolation=cv2.INTER_AREA)
    baseline, _ = _time(lambda: images.decode_rgb(images.encode_png(person)), repeat)
    pose = select_backend(POSE, "blazepose-litert")[1]
    dense = select_backend(DENSEPOSE, "geometric")[1]
    parser = select_backend(PARSING, "geometric")[1]
    warp = select_backend(WARP, "keypoint-tps")[1]
    composite = select_backend(DIFFUSION, "composite")[1]
    category = Category.UPPER_BODY
    results: dict[str, float] = {}
    results[Stage.POSE], est = _time(lambda: pose.estimate(person), repeat)
    results[Stage.DENSEPOSE], _ = _time(lambda: dense.estimate(person), repeat)
    results[Stage.PARSING], parsed = _time(lambda: parser.parse(person), repeat)
    results["agnostic_mask"], mask = _time(
        lambda: agnostic_mask(parsed.labels, est.keypoints, category), repeat
    )
    masked = masked_person(person, mask)
    warp_in = WarpInputs(garment, person, masked, mask, est.keypoints, parsed.labels, category)
    results[Stage.WARP], warped = _time(lambda: warp.warp(warp_in), repeat)
    tryon_in = TryOnInputs(
        person, masked, mask, warped.warped_garment, warped.warped_mask, garment, parsed.labels, category
    )
    results["composite"], _ = _time(lambda: composite.try_on(tryon_in), repeat)
    analysis = results[Stage.POSE] + results[Stage.DENSEPOSE] + results[Stage.PARSING]
    return {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": len(os.sched_getaffinity(0)),
        },
        "image": "1024x768",
        "repeat": repeat,
        "baseline_png_roundtrip_s": baseline,
        "stages_s": results,
        "ratio_to_baseline": {k: v / baseline for k, v in results.items()},
        "analysis_total_s": analysis,
        "analysis_floor_s": FLOOR_ANALYSIS_S,
        "analysis_within_floor": analysis < FLOOR_ANALYSIS_S,
    }


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu-stages.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Embedded stages on {report['machine']['cpus']} CPU cores, one {report['image']} photo",
        "",
        f"Median of {report['repeat']} runs after a warm-up. Baseline (PNG encode + decode of the photo, same "
        f"process): {report['baseline_png_roundtrip_s'] * 1000:.1f} ms.",
        "",
        "| stage | ms | x baseline |",
        "|---|---:|---:|",
    ]
    for name, seconds in report["stages_s"].items():
        lines.append(f"| {name} | {seconds * 1000:.0f} | {report['ratio_to_baseline'][name]:.1f} |")
    lines += [
        "",
        f"pose + densepose + parsing: {report['analysis_total_s'] * 1000:.0f} ms "
        f"(floor {report['analysis_floor_s'] * 1000:.0f} ms: {'met' if report['analysis_within_floor'] else 'NOT met'})",
        "",
    ]
    (out / "cpu-stages.md").write_text("\n".join(lines))


def main(args: argparse.Namespace) -> int:
    examples = fetch_examples()
    person = images.read_rgb(args.image or str(examples / "people" / "1_posture.jpg"))
    garment = images.read_rgb(args.garment or str(examples / "clothes" / "shirts" / "2_front.jpg"))
    report = run(person, garment, args.repeat)
    write(report, Path(args.out))
    print((Path(args.out) / "cpu-stages.md").read_text())
    return 0
