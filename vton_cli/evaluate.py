"""`vton eval`: paired SSIM and a contact sheet, computed on try-ons made by a running platform over HTTP.

With --unpaired GARMENTS, every person photo also wears one of those garments (a sheet without the real photo).
Paired samples follow VITON-HD's test layout: `image/<id>.jpg` is a person wearing the garment whose product photo
is `cloth/<id>.jpg`, so the person photo is the ground truth of that try-on. The report compares the result's SSIM
with that of the masked person returned unchanged (the floor a try-on must beat).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.eval import contact_sheet, ssim
from vton.runtime import images
from vton_cli.client import ApiError, VtonClient

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class PairScore:
    id: str
    ssim: float | None
    masked_person_ssim: float | None
    seconds: float


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _people(dataset: Path) -> list[Path]:
    """The person photos: `image/` in VITON-HD's layout, else the folder's own images."""
    folder = dataset / "image" if (dataset / "image").is_dir() else dataset
    people = _images_in(folder) if folder.is_dir() else []
    if not people:
        raise FileNotFoundError(f"no person photos in {folder}")
    return people


def _pairs(dataset: Path) -> list[tuple[str, Path, Path]]:
    """(id, person, garment) where `cloth/<id>` is the garment the person wears (VITON-HD's paired setting)."""
    cloth = dataset / "cloth"
    garments = {p.stem: p for p in _images_in(cloth)} if cloth.is_dir() else {}
    return [(p.stem, p, garments[p.stem]) for p in _people(dataset) if p.stem in garments]


def _run(
    client: VtonClient, person: Path, garment: Path, category: str
) -> tuple[dict[str, np.ndarray], float]:
    job = client.wait(client.submit(person, garment, category, seed=0).id)
    if job.status != "succeeded":
        raise ApiError(422, f"{person.name}: {job.error}")
    got = {
        "result": images.decode_rgb(client.download(job.result_url)),
        "warped": images.decode_rgb(client.download(job.artifacts["warped_garment"])),
        "masked": images.decode_rgb(client.download(job.artifacts["masked_person"])),
    }
    return got, sum(s.seconds or 0.0 for s in job.stages)


def evaluate(server: str, dataset: Path, category: str, unpaired: Path | None, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    scores: list[PairScore] = []
    rows: list[list[np.ndarray]] = []
    with VtonClient(server) as client:
        for pair_id, person_path, garment_path in _pairs(dataset):
            got, seconds = _run(client, person_path, garment_path, category)
            person, garment = images.read_rgb(str(person_path)), images.read_rgb(str(garment_path))
            scores.append(
                PairScore(pair_id, ssim(got["result"], person), ssim(got["masked"], person), seconds)
            )
            rows.append([person, garment, got["warped"], got["result"], person])
            print(
                f"{pair_id}: SSIM {scores[-1].ssim:.4f} (masked person {scores[-1].masked_person_ssim:.4f})"
            )
        unpaired_rows: list[list[np.ndarray]] = []
        if unpaired:
            garments = _images_in(unpaired)
            for i, person_path in enumerate(_people(dataset)):
                garment_path = garments[i % len(garments)]
                got, _ = _run(client, person_path, garment_path, category)
                unpaired_rows.append(
                    [
                        images.read_rgb(str(person_path)),
                        images.read_rgb(str(garment_path)),
                        got["warped"],
                        got["result"],
                    ]
                )
    report = {
        "dataset": str(dataset),
        "category": category,
        "pairs": [asdict(s) for s in scores],
        "mean_ssim": float(np.mean([s.ssim for s in scores])) if scores else None,
        "mean_masked_person_ssim": float(np.mean([s.masked_person_ssim for s in scores])) if scores else None,
    }
    if rows:
        images.write_png(
            str(out / "contact_sheet.png"),
            contact_sheet(rows, ["person", "garment", "warped garment", "result", "real photo"]),
        )
    if unpaired_rows:
        images.write_png(
            str(out / "contact_sheet_unpaired.png"),
            contact_sheet(unpaired_rows, ["person", "garment", "warped garment", "result"]),
        )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(args: argparse.Namespace) -> int:
    try:
        report = evaluate(
            args.server,
            Path(args.dataset),
            args.category,
            Path(args.unpaired) if args.unpaired else None,
            Path(args.out),
        )
    except (ApiError, FileNotFoundError, OSError) as exc:
        print(f"vton eval: {exc}", file=sys.stderr)
        return 1
    if report["mean_ssim"] is None and not args.unpaired:
        print(
            f"vton eval: {args.dataset} has no pairs (image/<id> with cloth/<id>); pass --unpaired GARMENTS",
            file=sys.stderr,
        )
        return 1
    if report["mean_ssim"] is not None:
        print(
            f"mean SSIM {report['mean_ssim']:.4f} over {len(report['pairs'])} pairs "
            f"(masked person unchanged: {report['mean_masked_person_ssim']:.4f})"
        )
    print(f"report and contact sheet in {args.out}")
    return 0
