"""The try-on flow of one job over gRPC: pose, densepose and parsing at once, then the agnostic mask, the
warp and the diffusion; every step's artifacts go to storage as soon as the step answers.

Plain Python over the stubs: it reports progress through a `Progress` (the worker writes it to the job
store), and it stops between and during calls when `Progress.cancelled()` says the worker is shutting down.

A job without a category first asks the warp stage to infer it from the garment photo. What a job may share with
the other jobs of its catalog batch (the garment's category, the person's pose, densepose and parsing) goes
through `SharedSteps` (orchestrator.batches): done by the first job that needs it, reused by the others.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from orchestrator.jobs import CATEGORY_STEP, RUNNING, SUCCEEDED, Job, StageState
from orchestrator.stages import StageClients, StageError
from orchestrator.working_size import paste_full_size, working_copy
from vton.runtime import images, proto_vocab
from vton.runtime.options import TryOnOptions
from vton.runtime.vocab import CATEGORIES, JOB_STEPS, Stage
from vton.v1 import common_pb2, densepose_pb2, diffusion_pb2, parsing_pb2, pose_pb2, warp_pb2

# The stage service each step calls: the agnostic mask is the parsing stage's second call, the category the
# warp stage's.
STEP_STAGES: dict[str, Stage] = {
    CATEGORY_STEP: Stage.WARP,
    **{step: Stage.PARSING if step == "agnostic_mask" else Stage(step) for step in JOB_STEPS},
}
# The steps that look at the person photo alone: a batch does them once per person.
PERSON_STEPS: tuple[str, ...] = ("pose", "densepose", "parsing")

# What each step stores: artifact file name -> its bytes in the step's response. The job JSON lists each
# artifact under its stem ("pose" for pose.json) with a URL ending in the file name.
STEP_ARTIFACTS: dict[str, dict[str, Callable[[Any], bytes]]] = {
    "pose": {
        "pose.json": lambda r: r.openpose_json.encode(),
        "pose_skeleton.png": lambda r: r.skeleton.data,
    },
    "densepose": {"densepose.png": lambda r: r.visualization.data},
    "parsing": {
        "parsing.png": lambda r: r.visualization.data,
        "label_map.png": lambda r: r.label_map.image.data,
    },
    "agnostic_mask": {
        "agnostic_mask.png": lambda r: r.mask.data,
        "masked_person.png": lambda r: r.masked_person.data,
    },
    "warp": {
        "garment_mask.png": lambda r: r.garment_mask.data,
        "warped_garment.png": lambda r: r.warped_garment.data,
        "warped_mask.png": lambda r: r.warped_mask.data,
    },
}
# Artifact file names in the order the steps make them.
ARTIFACTS: tuple[str, ...] = tuple(name for files in STEP_ARTIFACTS.values() for name in files)
IMAGE_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
# The proto's Category values by name, and back (what ClassifyGarment answers).
_CATEGORY_NAMES = {proto_vocab.category_enum(name): name for name in CATEGORIES}


def input_key(job_prefix: str, name: str, image_format: str) -> str:
    return f"{job_prefix}inputs/{name}.{IMAGE_FORMATS[image_format]}"


def artifact_key(job_prefix: str, name: str) -> str:
    return f"{job_prefix}artifacts/{name}"


def result_key(job_prefix: str) -> str:
    return f"{job_prefix}result.png"


def image_format(data: bytes) -> str:
    """ "png", "jpeg" or "webp", read from the header."""
    return images.read_header(data).format


def image_message(data: bytes) -> common_pb2.Image:
    width, height = images.image_size(data)
    return common_pb2.Image(data=data, width=width, height=height, format=image_format(data))


def options_message(options: TryOnOptions) -> common_pb2.TryOnOptions:
    """The options every stage call carries; 0 and "" ask for the backend's default."""
    return common_pb2.TryOnOptions(
        category=proto_vocab.category_enum(options.category),
        seed=options.seed,
        steps=options.steps,
        guidance_scale=options.guidance_scale,
        scheduler=options.scheduler,
    )


def backend_dict(info: common_pb2.BackendInfo) -> dict:
    return {
        "name": info.name,
        "version": info.version,
        "kind": info.kind,
        "weights_license": info.weights_license,
    }


class Progress(Protocol):
    def stage(self, step: str, state: StageState) -> None: ...

    def artifact(self, name: str, key: str) -> None: ...

    def cancelled(self) -> bool: ...


@dataclass(frozen=True)
class CategoryGuess:
    """The category the warp stage inferred from a garment photo, how sure it is, and the call that said so."""

    category: str
    confidence: float
    scores: dict[str, float]
    state: StageState  # the `category` step as it succeeded


@dataclass(frozen=True)
class PersonAnalysis:
    """What pose and parsing answered for a person photo (the later steps read them), and how each person step
    went: its state and its artifacts (name -> storage key)."""

    pose: Any
    parsing: Any
    states: dict[str, StageState]
    artifacts: dict[str, str] = field(default_factory=dict)


class SharedSteps(Protocol):
    """Steps a job may share with the other jobs of its batch. Each takes the function that does the step for
    this job; an implementation calls it, or reuses what another job of the batch made (reporting that to
    `progress`). `category` also records the guess on the job."""

    def category(self, job: Job, infer: Callable[[], CategoryGuess], progress: Progress) -> CategoryGuess: ...

    def person(
        self, job: Job, analyse: Callable[[], PersonAnalysis], progress: Progress
    ) -> PersonAnalysis: ...


class Interrupted(Exception):
    """The worker is stopping: the job goes back to the queue and runs again elsewhere or after a restart."""


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None) -> str: ...

    def get(self, key: str) -> bytes: ...


@dataclass(frozen=True)
class _Inputs:
    """The photos as the stages get them. `original` is the full-size person photo when the stages work on a
    scaled-down copy (the result is pasted back into it), else None."""

    person: common_pb2.Image
    garment: common_pb2.Image
    options: common_pb2.TryOnOptions
    original: bytes | None


@dataclass(frozen=True)
class StageRequests:
    """The requests of the steps after the person's analysis, built from the photos as the stages get them, the
    options and the answers before them. tests/stages.py builds its requests here too, so that the tests call
    the stages as a job does."""

    person: common_pb2.Image
    garment: common_pb2.Image
    options: common_pb2.TryOnOptions
    pose: Any  # pose_pb2.EstimatePoseResponse
    parsing: Any  # parsing_pb2.ParseResponse

    def agnostic_mask(self) -> parsing_pb2.CreateAgnosticMaskRequest:
        return parsing_pb2.CreateAgnosticMaskRequest(
            image=self.person,
            label_map=self.parsing.label_map,
            keypoints=self.pose.keypoints,
            options=self.options,
        )

    def warp(self, agnostic: Any) -> warp_pb2.WarpGarmentRequest:
        return warp_pb2.WarpGarmentRequest(**self._analysed(agnostic))

    def try_on(self, agnostic: Any, warped: Any) -> diffusion_pb2.TryOnRequest:
        return diffusion_pb2.TryOnRequest(
            **self._analysed(agnostic), warped_garment=warped.warped_garment, warped_mask=warped.warped_mask
        )

    def _analysed(self, agnostic: Any) -> dict[str, Any]:
        """What the warp and the try-on requests both carry: the inputs, the analysis of the person and the
        agnostic mask (`agnostic`, the CreateAgnosticMaskResponse)."""
        return dict(
            garment=self.garment,
            person=self.person,
            masked_person=agnostic.masked_person,
            agnostic_mask=agnostic.mask,
            keypoints=self.pose.keypoints,
            pose_map=self.pose.pose_map,
            label_map=self.parsing.label_map,
            options=self.options,
        )


@dataclass(eq=False)  # a service object: equal only to itself
class TryOnPipeline:
    """Runs one job; `run` returns the storage key of the result or raises StageError / Interrupted."""

    clients: StageClients
    storage: Storage
    _: KW_ONLY
    shared: SharedSteps
    max_working_pixels: int
    poll_s: float = 0.2  # how often a job waiting on its calls checks whether it is cancelled

    def run(self, job: Job, progress: Progress) -> str:
        inputs = self._load_inputs(job, progress)
        calls = _Calls(self, job, progress)
        pose, parsing = self._analyse_person(job, progress, inputs)
        requests = StageRequests(inputs.person, inputs.garment, inputs.options, pose, parsing)
        agnostic = calls.one(
            "agnostic_mask", self.clients.parsing.CreateAgnosticMask, requests.agnostic_mask()
        )
        warped = calls.one("warp", self.clients.warp.WarpGarment, requests.warp(agnostic))
        image = self._try_on(calls, requests.try_on(agnostic, warped))
        return self._store_result(job, inputs, image, agnostic.mask.data)

    def _load_inputs(self, job: Job, progress: Progress) -> _Inputs:
        person = self.storage.get(job.person_key)
        garment = self.storage.get(job.garment_key)
        # A large photo goes through the stages at a working size (the artifacts are at that size); so does a
        # large garment photo, whose details past a couple of megapixels no stage uses.
        garment_message = image_message(working_copy(garment, self.max_working_pixels) or garment)
        category = job.category
        if not category or job.category_inferred:  # none given (a rerun infers again: its step shows done)
            category = self._infer_category(job, progress, garment_message)
        working = working_copy(person, self.max_working_pixels)
        return _Inputs(
            person=image_message(working or person),
            garment=garment_message,
            options=options_message(replace(job.options, category=category)),
            original=person if working is not None else None,
        )

    def _infer_category(self, job: Job, progress: Progress, garment: common_pb2.Image) -> str:
        """The garment's category from its photo (the warp stage's ClassifyGarment), before the person stages."""

        def infer() -> CategoryGuess:
            recorded = _Recorded(progress)
            request = warp_pb2.ClassifyGarmentRequest(garment=garment)
            try:
                response = _Calls(self, job, recorded).one(
                    CATEGORY_STEP, self.clients.warp.ClassifyGarment, request
                )
            except StageError as exc:
                raise self._category_error(exc) from None
            if response.category not in _CATEGORY_NAMES:
                raise StageError(
                    CATEGORY_STEP,
                    Stage.WARP,
                    grpc.StatusCode.INTERNAL,
                    "the warp stage answered ClassifyGarment without a category",
                )
            return CategoryGuess(
                _CATEGORY_NAMES[response.category],
                round(float(response.confidence), 4),
                {
                    _CATEGORY_NAMES[s.category]: round(float(s.score), 4)
                    for s in response.scores
                    if s.category in _CATEGORY_NAMES
                },
                recorded.states[CATEGORY_STEP],
            )

        return self.shared.category(job, infer, progress).category

    def _category_error(self, exc: StageError) -> StageError:
        """A failed inference in the client's terms: a photo with no garment in it, or a warp stage that
        cannot infer at all (one from before ClassifyGarment)."""
        if exc.code == grpc.StatusCode.FAILED_PRECONDITION:
            exc.error_code = "no_garment"
        elif exc.code == grpc.StatusCode.UNIMPLEMENTED:
            address = self.clients.addresses[Stage.WARP]
            exc.message = (
                f"the warp stage ({address}) cannot infer a garment's category (it has no ClassifyGarment): "
                "name the category in the request"
            )
        return exc

    def _analyse_person(self, job: Job, progress: Progress, inputs: _Inputs) -> tuple[Any, Any]:
        """Pose, densepose and parsing at once: the person photo alone feeds all three (a batch's jobs share
        them)."""
        c, person = self.clients, inputs.person

        def analyse() -> PersonAnalysis:
            recorded = _Recorded(progress)
            done = _Calls(self, job, recorded).run(
                {
                    "pose": (c.pose.EstimatePose, pose_pb2.EstimatePoseRequest(image=person)),
                    "densepose": (
                        c.densepose.EstimateDensePose,
                        densepose_pb2.EstimateDensePoseRequest(image=person),
                    ),
                    "parsing": (c.parsing.Parse, parsing_pb2.ParseRequest(image=person, label_set="lip")),
                }
            )
            return PersonAnalysis(done["pose"], done["parsing"], recorded.states, recorded.artifacts)

        analysis = self.shared.person(job, analyse, progress)
        return analysis.pose, analysis.parsing

    def _try_on(self, calls: _Calls, request: diffusion_pb2.TryOnRequest) -> bytes:
        response = calls.one("diffusion", self.clients.diffusion.TryOn, request)
        if not response.image.data:
            raise StageError(
                "diffusion", "diffusion", grpc.StatusCode.INTERNAL, "the diffusion stage returned no image"
            )
        return response.image.data

    def _store_result(self, job: Job, inputs: _Inputs, image: bytes, mask: bytes) -> str:
        if inputs.original is not None:
            image = paste_full_size(inputs.original, image, mask)
        return self.storage.put(job.output_key or result_key(job.storage_prefix), image, "image/png")


class _Recorded:
    """A job's Progress that also keeps what was reported (each step's last state, the artifacts), so a step a
    batch shares can be handed to its other jobs."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.states: dict[str, StageState] = {}
        self.artifacts: dict[str, str] = {}

    def stage(self, step: str, state: StageState) -> None:
        self.states[step] = state
        self.progress.stage(step, state)

    def artifact(self, name: str, key: str) -> None:
        self.artifacts[name] = key
        self.progress.artifact(name, key)

    def cancelled(self) -> bool:
        return self.progress.cancelled()


class _Calls:
    """The stage calls of one job: start them, wait with cancellation checks, and as each one answers store
    its artifacts and report it."""

    def __init__(self, pipeline: TryOnPipeline, job: Job, progress: Progress) -> None:
        self.p, self.job, self.progress = pipeline, job, progress

    def one(self, step: str, rpc: grpc.UnaryUnaryMultiCallable, request: Message) -> Any:
        return self.run({step: (rpc, request)})[step]

    def run(self, calls: Mapping[str, tuple[grpc.UnaryUnaryMultiCallable, Message]]) -> dict[str, Any]:
        """Every call at once; their responses by step once all succeeded. The first failure cancels the rest."""
        if self.progress.cancelled():
            raise Interrupted(f"stopped before {', '.join(calls)}")
        finished: queue.Queue = queue.Queue()
        futures: dict[str, grpc.Future] = {}
        for step, (rpc, request) in calls.items():
            self.progress.stage(step, StageState(RUNNING))
            started = time.monotonic()
            future = self.p.clients.start(rpc, request, self.job.request_id or self.job.id)
            future.add_done_callback(
                lambda f, step=step, started=started: finished.put((step, f, time.monotonic() - started))
            )
            futures[step] = future
        results: dict[str, Any] = {}
        try:
            while len(results) < len(calls):
                try:
                    step, future, seconds = finished.get(timeout=self.p.poll_s)
                except queue.Empty:
                    if self.progress.cancelled():
                        raise Interrupted(f"stopped during {', '.join(set(calls) - set(results))}") from None
                    continue
                results[step] = self._answered(step, future, seconds)
        except BaseException:
            # the first failure ends the job: the other calls are cancelled at their servers too
            for future in futures.values():
                future.cancel()
            raise
        return results

    def _answered(self, step: str, future: grpc.Future, seconds: float) -> Any:
        """The step's response, its artifacts stored and its success reported; StageError when it failed."""
        stage = STEP_STAGES[step]
        try:
            response = future.result()
        except grpc.FutureCancelledError:
            raise Interrupted(f"{step} was cancelled") from None
        except grpc.RpcError as exc:
            raise StageError.from_rpc(step, stage, self.p.clients.addresses[stage], exc, seconds) from None
        for name, data_of in STEP_ARTIFACTS.get(step, {}).items():
            data = data_of(response)
            if data:
                key = self.p.storage.put(artifact_key(self.job.storage_prefix, name), data)
                self.progress.artifact(name.rsplit(".", 1)[0], key)
        succeeded = StageState(
            SUCCEEDED,
            backend=backend_dict(response.backend),
            seconds=round(seconds, 4),
            # pose, densepose and parsing say how many people they saw (they work on the largest)
            people_detected=getattr(response, "people_detected", None) or None,
        )
        self.progress.stage(step, succeeded)
        return response
