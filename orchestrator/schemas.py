"""The JSON the API answers with (pydantic models: they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, Field

from orchestrator.jobs import Job
from orchestrator.pipeline import ARTIFACTS
from vton.runtime.options import MAX_GUIDANCE_SCALE, MAX_SEED, MAX_STEPS, SCHEDULERS
from vton.runtime.vocab import CATEGORIES

# Artifacts listed in the order the pipeline makes them, whatever order the stages finished in.
_ARTIFACT_ORDER = {name.rsplit(".", 1)[0]: i for i, name in enumerate(ARTIFACTS)}

JobStatus = Literal["queued", "running", "succeeded", "failed"]
StageStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]

# The error code a failed job carries -> the HTTP status POST /v1/tryon?wait=true answers with.
ERROR_HTTP_STATUS = {
    "invalid_input": 400,
    "no_person": 422,
    "stage_unavailable": 503,
    "storage_unavailable": 503,
    "stage_timeout": 504,
    "stage_error": 502,
    "interrupted": 500,
    "internal": 500,
}


class TryOnForm(BaseModel):
    """The multipart form of POST /v1/tryon: the two photos and the options. The options' limits are checked
    by the platform's one validator (vton.runtime.options), the same the stages apply."""

    person: UploadFile = Field(description="Photo of the person (PNG, JPEG or WebP, at most 40 megapixels)")
    garment: UploadFile = Field(description="Product photo of the garment (PNG, JPEG or WebP)")
    category: str = Field(description=" | ".join(CATEGORIES), json_schema_extra={"enum": list(CATEGORIES)})
    seed: int | None = Field(None, description=f"Random seed, 0..{MAX_SEED}; chosen at random when absent")
    # 0 is no number of steps: a client asks for the backend's default by leaving the field out.
    steps: int | None = Field(
        None, ge=1, description=f"Denoising steps, 1..{MAX_STEPS}; the backend's default when absent"
    )
    guidance_scale: float | None = Field(
        None,
        description=f"Classifier-free guidance scale, 0..{MAX_GUIDANCE_SCALE:g}; the backend's default when absent",
    )
    scheduler: str | None = Field(
        None, description=f"Denoising scheduler: {' | '.join(SCHEDULERS)}; the backend's default when absent"
    )


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, in words")
    detail: Any = Field(None, description="Structured detail: the offending fields, the job, ...")


class BackendOut(BaseModel):
    name: str
    version: str
    kind: str = Field(description='"embedded" or "full"')
    weights_license: str


class StageOut(BaseModel):
    status: StageStatus
    backend: BackendOut | None = None
    seconds: float | None = Field(None, description="Duration of the stage's gRPC call")
    error: str | None = None
    people_detected: int | None = Field(
        None,
        description="People the stage found in the photo (pose, densepose, parsing); it used the largest",
    )


class OptionsOut(BaseModel):
    category: str
    seed: int
    steps: int | None = Field(None, description="null: the backend's default")
    guidance_scale: float | None = Field(None, description="null: the backend's default")
    scheduler: str | None = Field(None, description="null: the backend's default")


class TimingsOut(BaseModel):
    queued_s: float | None = Field(None, description="From acceptance to a worker taking it (last attempt)")
    running_s: float | None = Field(None, description="From a worker taking it to its end (or now)")
    total_s: float | None = Field(None, description="From acceptance to its end")


class LinksOut(BaseModel):
    self: str
    result: str | None = None


class JobOut(BaseModel):
    id: str
    status: JobStatus
    options: OptionsOut
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int
    request_id: str
    stages: dict[str, StageOut]
    timings: TimingsOut
    result_url: str | None = Field(None, description="Presigned GET URL of the try-on image (PNG)")
    inputs: dict[str, str] = Field(description="Presigned GET URLs of the uploaded photos")
    artifacts: dict[str, str] = Field(
        description="Presigned GET URLs of every stage's artifacts, by name (file name without extension)"
    )
    error: str | None = None
    error_code: str | None = None
    error_stage: str | None = None
    links: LinksOut


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    links: LinksOut


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def job_out(job: Job, presign) -> JobOut:
    """The job as clients see it; `presign(key)` turns storage keys into URLs."""
    now = time.time()
    end = job.finished_at
    result_url = presign(job.result_key) if job.result_key else None
    return JobOut(
        id=job.id,
        status=job.status,
        options=OptionsOut(
            category=job.category,
            seed=job.seed,
            steps=job.steps,
            guidance_scale=job.guidance_scale,
            scheduler=job.scheduler,
        ),
        created_at=_when(job.created_at),
        started_at=_when(job.started_at),
        finished_at=_when(job.finished_at),
        attempts=job.attempts,
        request_id=job.request_id,
        stages={
            name: StageOut(
                status=s.status,
                backend=BackendOut(**s.backend) if s.backend else None,
                seconds=s.seconds,
                error=s.error,
                people_detected=s.people_detected,
            )
            for name, s in job.stages.items()
        },
        timings=TimingsOut(
            queued_s=_round(job.started_at - job.created_at) if job.started_at else None,
            running_s=_round((end or now) - job.started_at) if job.started_at else None,
            total_s=_round(end - job.created_at) if end else None,
        ),
        result_url=result_url,
        inputs={"person": presign(job.person_key), "garment": presign(job.garment_key)},
        artifacts={
            name: presign(job.artifacts[name])
            for name in sorted(job.artifacts, key=lambda n: (_ARTIFACT_ORDER.get(n, len(_ARTIFACT_ORDER)), n))
        },
        error=job.error,
        error_code=job.error_code,
        error_stage=job.error_stage,
        links=LinksOut(self=job_path(job.id), result=result_url),
    )


def _round(seconds: float) -> float:
    return round(max(0.0, seconds), 3)
