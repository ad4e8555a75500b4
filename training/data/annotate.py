"""What the builder asks of the platform for one person photo and one garment photo: the person's keypoints,
how many people the photo shows, the LIP parse, DensePose, and the garment's mask.

Two ways to get it, one answer type: `InProcessAnnotator` runs the stages' own backends in this process (no
platform needed), `PlatformAnnotator` sends a try-on to a running platform over HTTP and reads its artifacts.
Either raises `Refused` with a reason when the photos cannot make a sample.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.densepose.visualize import DEFAULT_ALPHA
from services.pose.openpose_format import from_openpose_json
from training.data.formats import NUM_PARTS, PART_COLOURS, iuv_to_uint8
from vton.runtime import images
from vton.runtime.errors import NoPersonFound


class Refused(Exception):
    """The photos make no sample; `reason` is a short code the report counts, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Annotation:
    keypoints: np.ndarray  # float32 [18, 3] in the person photo's pixels
    people_detected: int
    parse: np.ndarray  # uint8 [H, W] LIP labels
    garment_mask: np.ndarray  # bool [h, w] at the garment photo's size
    densepose: np.ndarray | None  # uint8 [3, H, W] (I, U, V) or None


def several_people(count: int) -> Refused:
    return Refused("several_people", f"{count} people in the photo; a dataset photo shows one person")


class InProcessAnnotator:
    """The stage backends, chosen by name as the services choose them (`auto`: the best whose weights are here)."""

    def __init__(self, backends: dict[str, str] | None = None, device: str = "cpu", precision: str = "fp32"):
        from services.densepose.backends import BACKENDS as DENSEPOSE
        from services.parsing.backends import BACKENDS as PARSING
        from services.pose.backends import BACKENDS as POSE
        from vton.runtime.backend import select_backend

        chosen = {"pose": "auto", "densepose": "auto", "parsing": "auto", **(backends or {})}
        self.pose_info, self.pose = select_backend(POSE, chosen["pose"], device, precision)
        self.parsing_info, self.parser = select_backend(PARSING, chosen["parsing"], device, precision)
        self.densepose_info, self.densepose = select_backend(
            DENSEPOSE, chosen["densepose"], device, precision
        )

    @property
    def backends(self) -> dict[str, str]:
        return {
            "pose": self.pose_info.name,
            "parsing": self.parsing_info.name,
            "densepose": self.densepose_info.name,
        }

    def annotate(self, person: np.ndarray, garment: np.ndarray, category: str) -> Annotation:
        from services.warp.garment import garment_mask

        try:
            pose = self.pose.estimate(person)
        except NoPersonFound as exc:
            raise Refused("no_person", "no person found in the photo") from exc
        if pose.people_detected > 1:
            raise several_people(pose.people_detected)
        try:
            parse = self.parser.parse(person)
            iuv = self.densepose.estimate(person).iuv
        except NoPersonFound as exc:
            raise Refused("no_person", "no person found in the photo") from exc
        if parse.label_set != "lip":
            raise ValueError(
                f"the parsing backend {self.parsing_info.name} gives {parse.label_set} labels; datasets take LIP"
            )
        try:
            mask = garment_mask(garment) > 0
        except NoPersonFound as exc:
            raise Refused("no_garment", str(exc)) from None
        return Annotation(pose.keypoints, pose.people_detected, parse.labels, mask, iuv_to_uint8(iuv))


class PlatformAnnotator:
    """A running platform (its HTTP API): one try-on job a person, whose artifacts carry what a sample needs."""

    def __init__(self, server: str) -> None:
        from vton_cli.client import VtonClient

        self.client = VtonClient(server)
        self.client.ready()
        self.backends: dict[str, str] = {}

    def annotate(self, person: np.ndarray, garment: np.ndarray, category: str) -> Annotation:
        from vton_cli.client import ApiError

        with tempfile.TemporaryDirectory() as tmp:
            person_path, garment_path = Path(tmp) / "person.png", Path(tmp) / "garment.png"
            images.write_png(str(person_path), person)
            images.write_png(str(garment_path), garment)
            try:
                job = self.client.wait(self.client.submit(person_path, garment_path, category, seed=0).id)
            except ApiError as exc:
                raise Refused("rejected", f"the platform refused the photos: {exc.message}") from None
        stages = job.raw.get("stages") or {}
        for stage in job.stages:
            if stage.backend:
                self.backends[stage.name] = stage.backend
        if job.status != "succeeded":
            code, stage = job.raw.get("error_code"), job.raw.get("error_stage")
            if code == "no_person" and stage == "warp":
                raise Refused("no_garment", f"no garment found in the garment photo ({job.error})")
            if code == "no_person":
                raise Refused("no_person", f"no person found in the photo ({job.error})")
            raise RuntimeError(f"the platform's job {job.id} failed at {stage}: {job.error}")
        people = max((s.get("people_detected") or 0) for s in stages.values()) if stages else 1
        if people > 1:
            raise several_people(people)
        artifacts = {name: self.client.download(url) for name, url in job.artifacts.items()}
        keypoints = from_openpose_json(artifacts["pose"].decode())
        parse = images.decode_gray(artifacts["label_map"])
        mask = images.decode_gray(artifacts["garment_mask"]) >= 128
        parts = parts_from_overlay(images.decode_rgb(artifacts["densepose"]), person)
        # The platform's DensePose picture gives the parts back, not U and V (they stay 0).
        densepose = np.stack([parts, np.zeros_like(parts), np.zeros_like(parts)])
        return Annotation(keypoints.astype(np.float32), max(people, 1), parse, mask, densepose)

    def close(self) -> None:
        self.client.__exit__()


def parts_from_overlay(picture: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """uint8 [H, W] DensePose parts from the densepose stage's picture: each part's PARULA colour blended at
    DEFAULT_ALPHA over the photo turned grey (services.densepose.visualize), the photo's grey elsewhere. Each
    pixel takes the nearest of the 25 candidates (grey, or grey blended with a part's colour)."""
    if picture.shape != photo.shape:
        raise ValueError(f"the DensePose picture is {picture.shape[:2]}, the photo {photo.shape[:2]}")
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    observed = picture.astype(np.float32)
    best = ((observed - grey) ** 2).sum(-1)
    parts = np.zeros(photo.shape[:2], np.uint8)
    for part in range(1, NUM_PARTS + 1):
        candidate = grey * (1 - DEFAULT_ALPHA) + PART_COLOURS[part].astype(np.float32) * DEFAULT_ALPHA
        distance = ((observed - candidate) ** 2).sum(-1)
        closer = distance < best
        parts[closer] = part
        best = np.minimum(best, distance)
    return parts
