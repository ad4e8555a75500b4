"""The try-on flow of one job over gRPC: pose, densepose and parsing at once, then the agnostic mask, the
warp and the diffusion; every stage's artifacts go to storage as soon as the stage answers.

Plain Python over the stubs: it reports progress through a `Progress` (the worker writes it to the job
store), and it stops between and during calls when `Progress.cancelled()` says the worker is shutting down.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from orchestrator.stages import StageClients, StageError
from orchestrator.working_size import DEFAULT_MAX_PIXELS, paste_full_size, working_copy
from vton.runtime import images
from vton.runtime.errors import InvalidInput
from vton.v1 import common_pb2, densepose_pb2, diffusion_pb2, parsing_pb2, pose_pb2, warp_pb2

# The pipeline's steps in order, and the stage service each one calls.
STEP_SERVICES = {
    "pose": "pose",
    "densepose": "densepose",
    "parsing": "parsing",
    "agnostic_mask": "parsing",
    "warp": "warp",
    "diffusion": "diffusion",
}
STEPS = tuple(STEP_SERVICES)

CATEGORIES = {
    "upper_body": common_pb2.CATEGORY_UPPER_BODY,
    "lower_body": common_pb2.CATEGORY_LOWER_BODY,
    "dresses": common_pb2.CATEGORY_DRESSES,
}

# Artifact file names, in the order the steps write them; the job JSON lists each under its stem
# ("pose" for pose.json, "agnostic_mask" for agnostic_mask.png) with a URL ending in the file name.
ARTIFACTS = (
    "pose.json",
    "pose_skeleton.png",
    "densepose.png",
    "parsing.png",
    "label_map.png",
    "agnostic_mask.png",
    "masked_person.png",
    "garment_mask.png",
    "warped_garment.png",
    "warped_mask.png",
)
IMAGE_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def input_key(job_id: str, name: str, image_format: str) -> str:
    return f"jobs/{job_id}/inputs/{name}.{IMAGE_FORMATS[image_format]}"


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/artifacts/{name}"


def result_key(job_id: str) -> str:
    return f"jobs/{job_id}/result.png"


def image_format(data: bytes) -> str:
    """ "png", "jpeg" or "webp" from the magic bytes (the header checks have already passed)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise InvalidInput("the file is not an image: expected PNG, JPEG or WebP")


def image_message(data: bytes) -> common_pb2.Image:
    width, height = images.image_size(data)
    return common_pb2.Image(data=data, width=width, height=height, format=image_format(data))


class Progress(Protocol):
    def stage(
        self,
        step: str,
        status: str,
        *,
        backend: dict | None = None,
        seconds: float | None = None,
        error: str | None = None,
        people_detected: int | None = None,
    ) -> None: ...

    def artifact(self, name: str, key: str) -> None: ...

    def cancelled(self) -> bool: ...


class Interrupted(Exception):
    """The worker is stopping: the job goes back to the queue and runs again elsewhere or after a restart."""


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None) -> str: ...

    def get(self, key: str) -> bytes: ...


@dataclass(frozen=True)
class TryOnJob:
    id: str
    category: str
    seed: int
    steps: int | None
    guidance_scale: float | None
    person_key: str
    garment_key: str
    request_id: str = ""


def backend_dict(info: common_pb2.BackendInfo) -> dict:
    return {
        "name": info.name,
        "version": info.version,
        "kind": info.kind,
        "weights_license": info.weights_license,
    }


class TryOnPipeline:
    """Runs one job; `run` returns the storage key of the result or raises StageError / Interrupted."""

    def __init__(
        self,
        clients: StageClients,
        storage: Storage,
        poll_s: float = 0.2,
        max_working_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.clients = clients
        self.storage = storage
        self.poll_s = poll_s
        self.max_working_pixels = max_working_pixels

    def run(self, job: TryOnJob, progress: Progress) -> str:
        person_bytes = self.storage.get(job.person_key)
        garment_bytes = self.storage.get(job.garment_key)
        # A large photo goes through the stages at a working size (the artifacts are at that size).
        working = working_copy(person_bytes, self.max_working_pixels)
        person = image_message(working or person_bytes)
        garment = image_message(garment_bytes)
        options = common_pb2.TryOnOptions(
            category=CATEGORIES[job.category],
            seed=job.seed,
            steps=job.steps or 0,  # 0: the backend's own default
            guidance_scale=job.guidance_scale or 0.0,
        )
        c = self.clients
        run = _Run(self, job, progress)

        def store(name: str, data: bytes) -> None:
            if data:
                progress.artifact(name.rsplit(".", 1)[0], self.storage.put(artifact_key(job.id, name), data))

        # 1-3 at once: the person photo alone feeds all three.
        first = run.steps(
            {
                "pose": (c.pose.EstimatePose, pose_pb2.EstimatePoseRequest(image=person)),
                "densepose": (
                    c.densepose.EstimateDensePose,
                    densepose_pb2.EstimateDensePoseRequest(image=person),
                ),
                "parsing": (c.parsing.Parse, parsing_pb2.ParseRequest(image=person, label_set="lip")),
            },
            on_done={
                "pose": lambda r: (
                    store("pose.json", r.openpose_json.encode()),
                    store("pose_skeleton.png", r.skeleton.data),
                ),
                "densepose": lambda r: store("densepose.png", r.visualization.data),
                "parsing": lambda r: (
                    store("parsing.png", r.visualization.data),
                    store("label_map.png", r.label_map.image.data),
                ),
            },
        )
        pose, parsing = first["pose"], first["parsing"]

        agnostic = run.step(
            "agnostic_mask",
            c.parsing.CreateAgnosticMask,
            parsing_pb2.CreateAgnosticMaskRequest(
                image=person, label_map=parsing.label_map, keypoints=pose.keypoints, options=options
            ),
            lambda r: (
                store("agnostic_mask.png", r.mask.data),
                store("masked_person.png", r.masked_person.data),
            ),
        )
        warped = run.step(
            "warp",
            c.warp.WarpGarment,
            warp_pb2.WarpGarmentRequest(
                garment=garment,
                person=person,
                masked_person=agnostic.masked_person,
                agnostic_mask=agnostic.mask,
                keypoints=pose.keypoints,
                pose_map=pose.pose_map,
                label_map=parsing.label_map,
                options=options,
            ),
            lambda r: (
                store("garment_mask.png", r.garment_mask.data),
                store("warped_garment.png", r.warped_garment.data),
                store("warped_mask.png", r.warped_mask.data),
            ),
        )
        tryon = run.step(
            "diffusion",
            c.diffusion.TryOn,
            diffusion_pb2.TryOnRequest(
                person=person,
                masked_person=agnostic.masked_person,
                agnostic_mask=agnostic.mask,
                pose_map=pose.pose_map,
                warped_garment=warped.warped_garment,
                warped_mask=warped.warped_mask,
                garment=garment,
                label_map=parsing.label_map,
                options=options,
            ),
        )
        if not tryon.image.data:
            raise StageError(
                "diffusion", "diffusion", grpc.StatusCode.INTERNAL, "the diffusion stage returned no image"
            )
        result = tryon.image.data
        if working is not None:
            result = paste_full_size(person_bytes, result, agnostic.mask.data)
        return self.storage.put(result_key(job.id), result, "image/png")


class _Run:
    """The calls of one job: start them, wait with cancellation checks, report each as it finishes."""

    def __init__(self, pipeline: TryOnPipeline, job: TryOnJob, progress: Progress) -> None:
        self.p, self.job, self.progress = pipeline, job, progress

    def step(self, name: str, rpc, request, on_done: Callable | None = None):
        return self.steps({name: (rpc, request)}, {name: on_done} if on_done else {})[name]

    def steps(self, calls: dict[str, tuple], on_done: dict[str, Callable]) -> dict[str, object]:
        if self.progress.cancelled():
            raise Interrupted(f"stopped before {', '.join(calls)}")
        finished: queue.Queue = queue.Queue()
        futures: dict[str, grpc.Future] = {}
        for name, (rpc, request) in calls.items():
            self.progress.stage(name, "running")
            started = time.monotonic()
            future = self.p.clients.start(rpc, request, self.job.request_id)
            future.add_done_callback(
                lambda f, name=name, started=started: finished.put((name, f, time.monotonic() - started))
            )
            futures[name] = future
        results: dict[str, object] = {}
        try:
            while len(results) < len(calls):
                try:
                    name, future, seconds = finished.get(timeout=self.p.poll_s)
                except queue.Empty:
                    if self.progress.cancelled():
                        raise Interrupted(f"stopped during {', '.join(set(calls) - set(results))}") from None
                    continue
                service = STEP_SERVICES[name]
                try:
                    response = future.result()
                except grpc.FutureCancelledError:
                    raise Interrupted(f"{name} was cancelled") from None
                except grpc.RpcError as exc:
                    raise StageError.from_rpc(
                        name, service, self.p.clients.addresses[service], exc, seconds
                    ) from None
                if name in on_done:
                    on_done[name](response)
                self.progress.stage(
                    name,
                    "succeeded",
                    backend=backend_dict(response.backend),
                    seconds=round(seconds, 4),
                    # pose, densepose and parsing say how many people they saw (they work on the largest)
                    people_detected=getattr(response, "people_detected", None) or None,
                )
                results[name] = response
        except BaseException:
            # the first failure ends the job: the other calls are cancelled at their servers too
            for future in futures.values():
                future.cancel()
            raise
        return results
