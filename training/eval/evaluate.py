"""Evaluation of a try-on chain over a paired split of any of the three layouts.

In the paired setting the person photo shows the person wearing the garment, so it is the ground truth of the
try-on. Per pair: SSIM, PSNR and L1 of the result against the photo, over the whole image and inside the
region the garment and the limbs it covers take in the person's parse (upper body: LIP 5, 6, 7, 14, 15), the
IoU of the warped garment's mask with the person's garment region, the SSIM of the masked person returned
unchanged (the floor a try-on must beat), and LPIPS when its weights are given; over the split, FID and KID
when the Inception's are. Everything is computed at the dataset's working size.

The chain is either a running platform (`PlatformChain`, any backend it serves) or the stage backends in
this process (`InProcessChain`: the dataset's own annotations feed the warp and the diffusion backends, as
the papers evaluate).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from training.data.dataset import Entry, TryOnDataset
from training.data.formats import resize, resize_nearest
from training.data.progress import progress_bar
from training.data.raw import RawSample, derive
from training.eval.contact_sheet import contact_sheet
from training.eval.metrics import iou, l1, psnr, ssim
from training.eval.perceptual import LPIPS, InceptionFeatures, fid, kid
from vton.runtime import images
from vton.runtime.errors import InvalidInput, NoPersonFound
from vton.runtime.vocab import Lip

# The person's garment, and the garment with the limbs it covers (what a try-on repaints), per category.
GARMENT_LABELS = {
    "upper_body": (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT),
    "lower_body": (Lip.PANTS, Lip.SKIRT),
    "dresses": (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT, Lip.PANTS, Lip.JUMPSUITS, Lip.SKIRT),
}
LIMB_LABELS = {
    "upper_body": (Lip.LEFT_ARM, Lip.RIGHT_ARM),
    "lower_body": (Lip.LEFT_LEG, Lip.RIGHT_LEG),
    "dresses": (Lip.LEFT_ARM, Lip.RIGHT_ARM, Lip.LEFT_LEG, Lip.RIGHT_LEG),
}
SHEET_COLUMNS = ["masked person", "garment", "warped garment", "result", "real photo"]
SHEET_ROWS = 16  # a contact sheet of a whole test split would be hundreds of megapixels
# The clear errors a stage refuses a pair with (gRPC INVALID_ARGUMENT / FAILED_PRECONDITION, HTTP 4xx): the pair
# is recorded as a failure and scored as no try-on. Any other exception is a bug and stops the evaluation.
STAGE_ERRORS = (InvalidInput, NoPersonFound)


@dataclass
class Prediction:
    """What a chain gives for one pair; images at any size (they are resized to the dataset's)."""

    result: np.ndarray  # uint8 RGB
    warped_garment: np.ndarray | None = None  # uint8 RGB
    warped_mask: np.ndarray | None = None  # uint8 or bool, > 0 where the warped garment is
    seconds: float = 0.0
    failure: str | None = None  # the stage error the chain refused the pair with


class Chain(Protocol):
    backends: dict[str, str]

    def predict(self, entry: Entry, raw: RawSample) -> Prediction: ...


def predict_or_refuse(chain: Chain, entry: Entry, raw: RawSample) -> Prediction:
    """The chain's prediction; for a pair a stage refuses with its clear error, what a user gets: no try-on.

    The masked person unchanged is then the result and the warp is empty (black, its mask IoU 0), so a chain
    that refuses pairs is scored on every pair like one that answers them; the error is kept as the failure.
    """
    try:
        return chain.predict(entry, raw)
    except STAGE_ERRORS as err:
        masked = derive(raw).masked_person
        return Prediction(
            result=masked.copy(),
            warped_garment=np.zeros_like(masked),
            warped_mask=np.zeros(masked.shape[:2], np.uint8),
            failure=f"{type(err).__name__}: {err}",
        )


@dataclass
class Metrics:
    """Optional networks; a metric whose network is absent is named in `skipped` with the reason."""

    lpips: LPIPS | None = None
    inception: InceptionFeatures | None = None
    skipped: dict[str, str] = field(default_factory=dict)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def score_pair(raw: RawSample, prediction: Prediction, lpips: LPIPS | None = None) -> dict[str, float | None]:
    height, width = raw.size
    real = raw.person
    result = resize(prediction.result, width, height)
    garment = np.isin(raw.parse, GARMENT_LABELS[raw.category])
    region = garment | np.isin(raw.parse, LIMB_LABELS[raw.category])
    scores: dict[str, float | None] = {
        "ssim": ssim(result, real),
        "psnr": psnr(result, real),
        "l1": l1(result, real),
        "ssim_region": ssim(result, real, region),
        "psnr_region": psnr(result, real, region),
        "l1_region": l1(result, real, region),
        "masked_person_ssim": ssim(derive(raw).masked_person, real),
        "warp_iou": None,
    }
    if prediction.warped_mask is not None:
        warped = resize_nearest((np.asarray(prediction.warped_mask) > 0).astype(np.uint8), width, height) > 0
        scores["warp_iou"] = iou(warped, garment)
    if lpips is not None:
        scores["lpips"] = lpips.distance(result, real)
    return scores


def evaluate(
    dataset: TryOnDataset,
    chain: Chain,
    out: Path | str,
    metrics: Metrics | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Run the chain over the dataset's pairs, write `report.json` and `contact_sheet.png` under `out`."""
    metrics = metrics or Metrics()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"{dataset.root} has no {dataset.pairing} pairs in its {dataset.split} split")
    per_pair, rows, real_images, results = [], [], [], []
    bar = progress_bar(count, progress, "pair", "eval")
    for index in range(count):
        entry, raw = dataset.entries[index], dataset.raw(index)
        started = time.monotonic()
        prediction = predict_or_refuse(chain, entry, raw)
        seconds = prediction.seconds or time.monotonic() - started
        scores = score_pair(raw, prediction, metrics.lpips)
        per_pair.append(
            {
                "name": entry.name,
                "garment": entry.garment_name,
                "category": entry.category,
                **scores,
                "seconds": round(seconds, 3),
                "failure": prediction.failure,
            }
        )
        height, width = raw.size
        result = resize(prediction.result, width, height)
        if metrics.inception is not None:
            real_images.append(raw.person)
            results.append(result)
        if len(rows) < SHEET_ROWS:
            warped = (
                np.full_like(raw.person, 255)
                if prediction.warped_garment is None
                else resize(prediction.warped_garment, width, height)
            )
            rows.append([derive(raw).masked_person, raw.garment, warped, result, raw.person])
        bar.update(1)
    bar.close()

    names = [k for k in per_pair[0] if k not in ("name", "garment", "category", "seconds", "failure")]
    summary = {name: _mean([p.get(name) for p in per_pair]) for name in names}
    skipped = dict(metrics.skipped)
    if metrics.inception is not None:
        if count < 2:
            skipped["fid"] = skipped["kid"] = "FID and KID need at least 2 pairs"
        else:
            real_features, result_features = metrics.inception(real_images), metrics.inception(results)
            summary["fid"] = fid(real_features, result_features)
            summary["kid"] = kid(real_features, result_features)
    report = {
        "data": str(dataset.root),
        "layout": dataset.layout,
        "split": dataset.split,
        "pairing": dataset.pairing,
        "size": [dataset.height, dataset.width],
        "pairs": count,
        "backends": dict(chain.backends),
        "metrics": summary,
        "skipped": skipped,
        "failures": [
            {"name": p["name"], "garment": p["garment"], "reason": p["failure"]}
            for p in per_pair
            if p["failure"]
        ],
        "per_pair": per_pair,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    images.write_png(
        str(out / "contact_sheet.png"),
        contact_sheet(rows, SHEET_COLUMNS, cell_height=min(384, dataset.height)),
    )
    return report


def load_metrics(lpips_weights: list[Path] | None, inception: Path | None, device: str = "cpu") -> Metrics:
    """The networks whose weight files are given; the others are named as skipped, with what they need."""
    result = Metrics()
    if lpips_weights:
        result.lpips = LPIPS.from_files(list(lpips_weights)).to(device)
    else:
        result.skipped["lpips"] = (
            "no --lpips-weights: give torchvision's AlexNet (alexnet-owt-7be5be79.pth) and LPIPS v0.1 alex.pth"
        )
    if inception:
        result.inception = InceptionFeatures(Path(inception), device)
    else:
        reason = (
            "no --inception: give the TorchScript Inception inception-2015-12-05.pt (clean-fid's, StyleGAN's)"
        )
        result.skipped["fid"] = result.skipped["kid"] = reason
    return result


class InProcessChain:
    """The warp and diffusion backends in this process, fed with the dataset's own annotations."""

    def __init__(
        self,
        warp: str = "auto",
        diffusion: str = "auto",
        device: str = "cpu",
        precision: str = "fp32",
        seed: int = 0,
        steps: int = 0,
        guidance_scale: float = 0.0,
    ) -> None:
        from services.diffusion.backends import BACKENDS as DIFFUSION
        from services.warp.backends import BACKENDS as WARP
        from vton.runtime.backend import select_backend

        warp_info, self.warp = select_backend(WARP, warp, device, precision)
        diffusion_info, self.diffusion = select_backend(DIFFUSION, diffusion, device, precision)
        self.backends = {"warp": warp_info.name, "diffusion": diffusion_info.name}
        self.seed, self.steps, self.guidance_scale = seed, steps, guidance_scale

    def predict(self, entry: Entry, raw: RawSample) -> Prediction:
        from services.diffusion.types import TryOnInputs
        from services.warp.types import WarpInputs

        derived = derive(raw)
        iuv = None
        if raw.densepose is not None:
            iuv = raw.densepose.astype(np.float32)
            iuv[1:] /= 255
        # What both stages take of the pair, as the platform's pipeline hands it to each.
        shared = {
            "person": raw.person,
            "masked_person": derived.masked_person,
            "agnostic_mask": derived.agnostic_mask,
            "garment": raw.garment,
            "labels": raw.parse,
            "category": raw.category,
            "pose_map": derived.pose_map,
        }
        garment_mask = np.where(raw.garment_mask, 255, 0).astype(np.uint8)
        warped = self.warp.warp(
            WarpInputs(keypoints=raw.keypoints, garment_mask=garment_mask, iuv=iuv, **shared)
        )
        result = self.diffusion.try_on(
            TryOnInputs(
                warped_garment=warped.warped_garment,
                warped_mask=warped.warped_mask,
                seed=self.seed,
                steps=self.steps,
                guidance_scale=self.guidance_scale,
                **shared,
            )
        )
        return Prediction(result, warped.warped_garment, warped.warped_mask)


class PlatformChain:
    """A running platform: each pair's original photos go through POST /v1/tryon; its artifacts give the warp."""

    def __init__(self, server: str, seed: int = 0) -> None:
        from vton_cli.client import VtonClient

        self.client = VtonClient(server)
        self.client.ready()
        self.seed = seed
        self.backends: dict[str, str] = {}

    def predict(self, entry: Entry, raw: RawSample) -> Prediction:
        from vton_cli.client import ApiError

        job = self.client.wait(
            self.client.submit(entry.person, entry.garment, entry.category, seed=self.seed).id
        )
        if job.status != "succeeded":
            raise ApiError(422, f"{entry.name}: the try-on failed: {job.error}")
        for stage in job.stages:
            if stage.backend:
                self.backends[stage.name] = stage.backend
        return Prediction(
            images.decode_rgb(self.client.download(job.result_url)),
            images.decode_rgb(self.client.download(job.artifacts["warped_garment"])),
            images.decode_gray(self.client.download(job.artifacts["warped_mask"])),
            seconds=sum(s.seconds or 0.0 for s in job.stages),
        )
