"""`vton bench --category`: how often the warp stage's embedded classifier names a garment's category right.

It classifies every labelled garment photo on this machine, in this process, and writes per-category confusion
matrices, the leave-one-out accuracy and the threshold fit to OUT/category-accuracy.json and .md:

- fitting sets, whose labels are the folders' names: `../shared/data/garments/{upper,lower,dresses}` (where this
  machine has it) and the openvto example garments (`clothes/{shirts,jackets}` upper body, `clothes/pants` lower
  body; always). The thresholds in services/warp/category.py were fitted on these: the accuracy on them is a
  training figure, and the leave-one-out accuracy (each garment classified by thresholds refitted without it)
  the honest one;
- held-out sets, never fitted on, upper body only (VITON's garments are all tops): the garment photos of VITON-HD
  under `../shared/data/{pairs,annotated}/vitonhd/cloth/` and viton256's test sample. Their errors were looked at
  while the measurements were designed (the crotch test and the narrowing below the shoulders come from two of
  them), so they are held out from the fit, not from the design.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from services.warp.category import THRESHOLDS, Step, Thresholds, guess_from, silhouette
from services.warp.garment import garment_mask
from services.warp.types import Silhouette
from vton.runtime import images
from vton.runtime.errors import NoPersonFound
from vton.runtime.vocab import CATEGORIES, Category
from vton_cli.examples import fetch_examples

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# A folder's name says its garments' category.
FOLDER_CATEGORIES = {
    "upper": Category.UPPER_BODY,
    "lower": Category.LOWER_BODY,
    "dresses": Category.DRESSES,
    "shirts": Category.UPPER_BODY,
    "jackets": Category.UPPER_BODY,
    "pants": Category.LOWER_BODY,
}
# Below this confidence the report counts a guess as unsure.
SURE = 0.75
# What a look at each photo the classifier gets wrong shows.
_TANK = "a long tank top, as long for its width as a short dress"
NOTES = {
    "test/cloth/000979_1.jpg": "an asymmetric two-tone top, as long for its width as a short dress",
    "test/cloth/003861_1.jpg": _TANK,
    "test/cloth/004912_1.jpg": "not a product photo: a close crop of a top worn on shoulders, no garment outline",
    "test/cloth/005306_1.jpg": _TANK,
    "test/cloth/005784_1.jpg": _TANK,
    "test/cloth/007914_1.jpg": _TANK,
    "test/cloth/009537_1.jpg": "a T-shirt with straight shoulders and a ragged mask: its top reads as a waistband",
    "test/cloth/016786_1.jpg": _TANK,
    "test/cloth/017204_1.jpg": _TANK,
    "test/cloth/017390_1.jpg": "long sleeves along its sides under a wide neckline: its top reads as a waistband",
}
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
NO_GARMENT = "no garment found"  # the prediction where the photo's garment mask finds none


@dataclass
class Measured:
    set: str
    name: str
    label: Category
    features: Silhouette | None  # None: no garment found in the photo
    seconds: float


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def labelled_folders(folder: Path) -> Iterator[tuple[Path, Category]]:
    """(photo, category) for the photos in `folder`'s subfolders whose names say their category."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name in FOLDER_CATEGORIES):
        for photo in _photos(sub):
            yield photo, FOLDER_CATEGORIES[sub.name]


def measure(set_name: str, photos: Iterator[tuple[Path, Category]], root: Path) -> list[Measured]:
    out = []
    for photo, label in photos:
        t0 = time.perf_counter()
        try:
            features: Silhouette | None = silhouette(garment_mask(images.read_rgb(str(photo))))
        except NoPersonFound:
            features = None
        out.append(
            Measured(set_name, str(photo.relative_to(root)), label, features, time.perf_counter() - t0)
        )
    return out


def _midpoint_step(below: list[float], above: list[float], current: Step) -> Step:
    """The threshold halfway across the gap between two classes, with half the gap for its width."""
    if not below or not above:
        return current
    low, high = max(below), min(above)
    return Step(threshold=0.5 * (low + high), width=max(0.5 * (high - low), 1e-3))


def fit(measured: list[Measured]) -> Thresholds:
    """The fitted thresholds (legs, dress length) on labelled garments; the waistband's stays as set (module doc)."""
    found = [m for m in measured if m.features is not None]
    lower = [m.features.leg_split for m in found if m.label == Category.LOWER_BODY]
    others = [m.features.leg_split for m in found if m.label != Category.LOWER_BODY]
    tops = [m.features.elongation for m in found if m.label == Category.UPPER_BODY]
    dresses = [m.features.elongation for m in found if m.label == Category.DRESSES]
    return replace(
        THRESHOLDS,
        legs=_midpoint_step(others, lower, THRESHOLDS.legs),
        dress=_midpoint_step(tops, dresses, THRESHOLDS.dress),
    )


def _rounded(features: Silhouette | None) -> dict[str, float] | None:
    return None if features is None else {k: round(v, 4) for k, v in asdict(features).items()}


def _predict(m: Measured, thresholds: Thresholds) -> tuple[str, float]:
    if m.features is None:
        return NO_GARMENT, 0.0
    guess = guess_from(m.features, thresholds)
    return guess.category.value, guess.confidence


def _summary(rows: list[dict]) -> dict:
    confusion = {t: {p: 0 for p in (*CATEGORIES, NO_GARMENT)} for t in CATEGORIES}
    for r in rows:
        confusion[r["label"]][r["predicted"]] += 1
    present = [t for t in CATEGORIES if sum(confusion[t].values())]
    return {
        "garments": len(rows),
        "correct": sum(r["label"] == r["predicted"] for r in rows),
        "accuracy": sum(r["label"] == r["predicted"] for r in rows) / max(len(rows), 1),
        "recall": {t: confusion[t][t] / sum(confusion[t].values()) for t in present},
        "confusion": {t: confusion[t] for t in present},
    }


def run(fitting: list[Measured], held_out: list[Measured]) -> dict:
    rows = []
    for m in fitting + held_out:
        predicted, confidence = _predict(m, THRESHOLDS)
        rows.append(
            {
                "set": m.set,
                "name": m.name,
                "label": m.label.value,
                "predicted": predicted,
                "confidence": round(confidence, 4),
                "features": _rounded(m.features),
                "seconds": round(m.seconds, 3),
            }
        )
    loo = []
    for i, m in enumerate(fitting):
        predicted, confidence = _predict(m, fit(fitting[:i] + fitting[i + 1 :]))
        loo.append({"label": m.label.value, "predicted": predicted, "confidence": confidence})
    sets = {
        name: _summary([r for r in rows if r["set"] == name])
        for name in dict.fromkeys(r["set"] for r in rows)
    }
    fitting_sets = list(dict.fromkeys(m.set for m in fitting))
    sure = [r for r in rows if r["confidence"] >= SURE]
    unsure = [r for r in rows if r["confidence"] < SURE]
    refit = fit(fitting)
    return {
        "machine": {"cpus": len(os.sched_getaffinity(0))},
        "fitting_sets": fitting_sets,
        "held_out_sets": list(dict.fromkeys(m.set for m in held_out)),
        "sets": sets,
        "fitting_total": _summary([r for r in rows if r["set"] in fitting_sets]),
        "leave_one_out": _summary(loo),
        "by_confidence": {
            "threshold": SURE,
            "sure": _summary(sure) if sure else None,
            "unsure": _summary(unsure) if unsure else None,
        },
        "thresholds_in_code": asdict(THRESHOLDS),
        "thresholds_refitted": asdict(refit),
        "median_seconds_per_garment": statistics.median(r["seconds"] for r in rows) if rows else None,
        "garments": rows,
    }


def _confusion_table(summary: dict) -> list[str]:
    cols = [*CATEGORIES, NO_GARMENT]
    lines = ["| true \\ predicted | " + " | ".join(cols) + " | recall |", "|---" * (len(cols) + 2) + "|"]
    for label, row in summary["confusion"].items():
        cells = " | ".join(str(row[c]) for c in cols)
        lines.append(f"| {label} | {cells} | {summary['recall'][label]:.0%} |")
    return lines


def _line(name: str, s: dict) -> str:
    return f"| {name} | {s['garments']} | {s['correct']} | {s['accuracy']:.1%} |"


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "category-accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Garment category from the product photo: the warp stage's embedded classifier",
        "",
        "`vton bench --category` (vton_cli/bench_category.py) on "
        f"{report['machine']['cpus']} CPU cores; services/warp/category.py says what it measures and how its "
        "thresholds were set. Median "
        f"{report['median_seconds_per_garment'] * 1000:.0f} ms a photo (garment mask included). The fitting sets "
        "are the photos the thresholds were fitted on: their leave-one-out line is the honest figure. The held-out "
        "sets were never fitted on, but their errors were looked at while the measurements were designed; they "
        "hold tops only. No skirt and no shorts are among any of them: those go by the waistband test, checked on "
        "drawn outlines only (tests/unit/test_category.py).",
        "",
        "| set | garments | correct | accuracy |",
        "|---|---:|---:|---:|",
    ]
    lines += [_line(name, s) for name, s in report["sets"].items()]
    lines += [
        _line("fitting sets together", report["fitting_total"]),
        _line(
            "fitting sets, leave-one-out (thresholds refitted without the garment)", report["leave_one_out"]
        ),
        "",
    ]
    for name, s in report["sets"].items():
        lines += [f"## {name}", "", *_confusion_table(s), ""]
    conf = report["by_confidence"]
    lines += ["## Confidence", ""]
    for key, what in (("sure", "at or above"), ("unsure", "below")):
        if conf[key]:
            s = conf[key]
            lines.append(f"- {what} {conf['threshold']}: {s['garments']} garments, {s['accuracy']:.1%} right")
    wrong = [g for g in report["garments"] if g["label"] != g["predicted"]]
    lines += ["", "## Wrong", ""]
    lines += [
        f"- {g['set']} `{g['name']}`: {g['label']} read as {g['predicted']} ({g['confidence']:.2f}); "
        f"{g['features']}" + (f". {NOTES[g['name']]}" if g["name"] in NOTES else "")
        for g in wrong
    ] or ["- none"]
    lines += ["", "## Thresholds", "", "| test | in the code | refitted now |", "|---|---|---|"]
    for key, step in report["thresholds_in_code"].items():
        now = report["thresholds_refitted"][key]
        lines.append(
            f"| {key} | {step['threshold']:.3f} ± {step['width']:.3f} | {now['threshold']:.3f} ± {now['width']:.3f} |"
        )
    lines.append("")
    (out / "category-accuracy.md").write_text("\n".join(lines))


def _viton_cloth(shared: Path) -> Iterator[tuple[Path, Category]]:
    for folder in (
        shared / "data" / "pairs" / "vitonhd" / "cloth",
        shared / "data" / "annotated" / "vitonhd" / "cloth",
    ):
        if folder.is_dir():
            yield from ((p, Category.UPPER_BODY) for p in _photos(folder))


def _viton256(shared: Path, scratch: Path) -> Iterator[tuple[Path, Category]]:
    archive = shared / "datasets" / "viton256" / "test-mini.tar.gz"
    if not archive.is_file():
        return
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("test/cloth/") and m.isfile()]
        tar.extractall(scratch, members=members, filter="data")
    yield from ((p, Category.UPPER_BODY) for p in _photos(scratch / "test" / "cloth"))


def main(args: argparse.Namespace) -> int:
    shared = SHARED
    examples = fetch_examples()
    fitting: list[Measured] = []
    garments = shared / "data" / "garments"
    if garments.is_dir():
        fitting += measure("shared garments", labelled_folders(garments), garments)
    else:
        print(f"{garments} is not on this machine: the openvto garments only")
    fitting += measure("openvto garments", labelled_folders(examples / "clothes"), examples / "clothes")
    held_out: list[Measured] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        held_out += measure("VITON-HD garments (held out)", _viton_cloth(shared), shared / "data")
        held_out += measure("viton256 test garments (held out)", _viton256(shared, scratch), scratch)
    report = run(fitting, held_out)
    write(report, Path(args.out))
    print((Path(args.out) / "category-accuracy.md").read_text())
    return 0
