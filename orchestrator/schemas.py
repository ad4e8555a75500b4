"""The JSON the API answers with (pydantic models: they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.batches import BATCH_FINISHED, Batch, BatchItem, BatchStore
from orchestrator.jobs import JOB_STATUSES, QUEUED, Job, JobStore
from orchestrator.pipeline import ARTIFACTS
from orchestrator.tenants import ApiKey, tenant_prefix
from orchestrator.webhooks import Delivery, DeliveryStore, Payload
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
    "no_garment": 422,
    "input_missing": 404,  # as the request would have been answered had the object been gone then
    "stage_unavailable": 503,
    "storage_unavailable": 503,
    "stage_timeout": 504,
    "stage_error": 502,
    "storage_error": 502,
    "interrupted": 500,
    "internal": 500,
}


class TryOnOptionsIn(BaseModel):
    """The options of a try-on request, as the client sent them. Their limits are checked by the platform's one
    validator (vton.runtime.options), the same the stages apply."""

    category: str | None = Field(
        None,
        description=f"{' | '.join(CATEGORIES)}; absent: inferred from the garment photo",
        json_schema_extra={"enum": list(CATEGORIES)},
    )
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
    callback_url: str | None = Field(
        None,
        description="An http(s) URL the finished job's JSON is POSTed to, signed (X-Vton-Signature, "
        "X-Vton-Timestamp: see docs/api.md) and retried until delivered; loopback, private and link-local "
        "addresses are refused",
    )


class TryOnForm(TryOnOptionsIn):
    """The multipart form of POST /v1/tryon: the two photos and the options."""

    person: UploadFile = Field(description="Photo of the person (PNG, JPEG or WebP, at most 40 megapixels)")
    garment: UploadFile = Field(description="Product photo of the garment (PNG, JPEG or WebP)")


class TryOnByReference(TryOnOptionsIn):
    """The JSON body of POST /v1/tryon: the two photos named as objects of the tenant in the platform's bucket
    (uploaded once with PUT /v1/objects/{key}), no upload per job. Nothing is fetched from URLs."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(
        description="The person photo: `s3://<bucket>/tenants/<tenant>/<key>` or `<key>` below your prefix"
    )
    garment: str = Field(
        description="The garment photo: `s3://<bucket>/tenants/<tenant>/<key>` or `<key>` below your prefix"
    )


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, in words")
    detail: Any = Field(None, description="Structured detail: the offending fields, the job, ...")


# What every /v1 route may answer because of its API key (orchestrator.auth).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No API key, or not a valid one"},
    403: {"model": ErrorOut, "description": "A revoked API key"},
    429: {
        "model": ErrorOut,
        "description": "Too many requests for the key, or the queue is full: see Retry-After",
    },
}


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
    reused: bool = Field(
        False,
        description="Done once for the job's batch (by another of its jobs) and reused, not called again",
    )


class CategoryOut(BaseModel):
    name: str | None = Field(description="The garment's category; null: not inferred yet")
    inferred: bool = Field(description="Inferred from the garment photo, the request having named none")
    confidence: float | None = Field(
        None,
        description="Inferred: the chosen category's score in [0, 1]; below about 0.75 the photo is ambiguous",
    )
    scores: dict[str, float] | None = Field(None, description="Inferred: every category's score")


class OptionsOut(BaseModel):
    category: str | None = Field(description="null: to be inferred from the garment photo")
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


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(None, description="The receiver's HTTP status; null: no answer")
    error: str | None = Field(None, description="Why the attempt did not count as delivered")
    seconds: float


class CallbackOut(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"] = Field(
        description="pending: not yet delivered (retried with backoff); delivered: a 2xx answer; "
        "failed: given up after the retry window"
    )
    next_attempt_at: datetime | None = Field(None, description="pending: when the next attempt is due")
    attempts: list[AttemptOut]


class JobOut(BaseModel):
    id: str
    tenant: str = Field(description="The tenant the job belongs to (the one of the API key that sent it)")
    status: JobStatus
    options: OptionsOut
    category: CategoryOut = Field(
        description="The garment's category, and whether and how surely it was inferred"
    )
    batch: str | None = Field(None, description="The catalog batch the job is part of")
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
    callback: CallbackOut | None = Field(
        None, description="The callback URL the client named and every delivery attempt; null: none named"
    )
    links: LinksOut


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    links: LinksOut


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def callback_out(job: Job, delivery: Delivery | None) -> CallbackOut | None:
    if job.callback_url is None:
        return None
    if delivery is None:  # the job has not finished: nothing was sent yet
        return CallbackOut(url=job.callback_url, status="pending", attempts=[])
    return _callback_of(delivery)


def _callback_of(delivery: Delivery) -> CallbackOut:
    return CallbackOut(
        url=delivery.url,
        status=delivery.status,
        next_attempt_at=_when(delivery.next_attempt_at) if delivery.status == "pending" else None,
        attempts=[
            AttemptOut(at=_when(a.at), status_code=a.status_code, error=a.error, seconds=a.seconds)
            for a in delivery.attempts
        ],
    )


def job_out(job: Job, presign, delivery: Delivery | None = None) -> JobOut:
    """The job as clients see it; `presign(key)` turns storage keys into URLs; `delivery` is the job's
    callback delivery, if it has one."""
    now = time.time()
    end = job.finished_at
    result_url = presign(job.result_key) if job.result_key else None
    return JobOut(
        id=job.id,
        tenant=job.tenant_id,
        status=job.status,
        options=OptionsOut(
            category=job.category or None,
            seed=job.seed,
            steps=job.steps,
            guidance_scale=job.guidance_scale,
            scheduler=job.scheduler,
        ),
        category=category_out(
            job.category or None, job.category_inferred, job.category_confidence, job.category_scores
        ),
        batch=job.batch_id,
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
                reused=bool(s.reused),
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
        callback=callback_out(job, delivery),
        links=LinksOut(self=job_path(job.id), result=result_url),
    )


def category_out(
    name: str | None, inferred: bool, confidence: float | None, scores: dict[str, float] | None
) -> CategoryOut:
    """A category as the API shows it: a name given by the client, or one inferred (with how sure)."""
    return CategoryOut(
        name=name,
        inferred=inferred,
        confidence=confidence if inferred else None,
        scores=scores if inferred else None,
    )


def job_payload(store: JobStore, presign: Callable[[str], str], deliveries: DeliveryStore) -> Payload:
    """What a job's callback sends: the job's JSON as GET /v1/jobs/{id} shows it (None: the job is gone)."""

    def payload(delivery: Delivery) -> dict[str, Any] | None:
        job = store.get_for_tenant(delivery.subject_id, delivery.tenant_id)
        if job is None:
            return None
        return job_out(job, presign, deliveries.get(delivery.id)).model_dump(mode="json")

    return payload


def _round(seconds: float) -> float:
    return round(max(0.0, seconds), 3)


# --- API keys, tenants, objects -------------------------------------------------------------------------------


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description="The tenant the key belongs to; created with its first key")
    name: str = Field("", max_length=128, description="What the key is for, shown in the listing")
    rate_per_s: float | None = Field(
        None, gt=0, description="Requests per second the key may make; the platform's default when absent"
    )
    burst: int | None = Field(
        None, ge=1, description="Requests the key may make at once; default when absent"
    )


class KeyOut(BaseModel):
    id: str = Field(description="The key's public id: the key reads `vton_<id>_...`")
    tenant: str
    name: str
    rate_per_s: float | None = Field(None, description="null: the platform's default")
    burst: int | None = Field(None, description="null: the platform's default")
    created_at: datetime
    last_used_at: datetime | None = Field(None, description="Updated at most once a minute")
    revoked_at: datetime | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a keyed hash")
    webhook_secret: str = Field(description="The tenant's secret its callbacks are signed with")


class KeyList(BaseModel):
    keys: list[KeyOut]


class TenantOut(BaseModel):
    id: str
    prefix: str = Field(
        description="`s3://<bucket>/tenants/<tenant>/`: every object of the tenant is below it"
    )
    webhook_secret: str = Field(description="The secret the tenant's callbacks are signed with (HMAC-SHA256)")
    key_id: str = Field(description="The API key of this request")


class ObjectOut(BaseModel):
    key: str = Field(description="The key below your prefix, as POST /v1/tryon takes it")
    uri: str = Field(description="`s3://<bucket>/tenants/<tenant>/<key>`")
    size: int
    last_modified: datetime
    url: str = Field(description="Presigned GET URL")


class ObjectList(BaseModel):
    objects: list[ObjectOut]
    next_after: str | None = Field(None, description="More objects follow: pass this as `after` for them")


# A key's unix times, which the API shows as datetimes.
_KEY_TIMES = ("created_at", "last_used_at", "revoked_at")


def key_out(key: ApiKey) -> KeyOut:
    """The key as the API shows it (never its hash)."""
    times = {name: _when(getattr(key, name)) for name in _KEY_TIMES}
    return KeyOut(
        id=key.id, tenant=key.tenant_id, name=key.name, rate_per_s=key.rate_per_s, burst=key.burst, **times
    )


# --- catalog batches ----------------------------------------------------------------------------------------------

BatchStatus = Literal["queued", "running", "finished"]


class BatchOptionsIn(TryOnOptionsIn):
    """The options of a batch: those of a try-on, the same for every job; `category` is the default of the
    garments that name none (absent: each is inferred from its photo). `callback_url` gets the finished batch."""


class BatchGarmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="`s3://<bucket>/tenants/<tenant>/<key>` or `<key>` below your prefix")
    category: str | None = Field(
        None, description="This garment's category; absent: the batch's, else inferred"
    )


class BatchByReference(BatchOptionsIn):
    """The JSON body of POST /v1/batches: people and garments named as objects of the tenant."""

    model_config = ConfigDict(extra="forbid")

    people: list[str] = Field(min_length=1, description="Person photos: object keys, as for POST /v1/tryon")
    garments: list[str | BatchGarmentIn] = Field(
        min_length=1, description="Garment photos: object keys, or {key, category}"
    )


class BatchForm(BatchOptionsIn):
    """The multipart form of POST /v1/batches: the photos themselves (repeat the fields) and the options."""

    people: list[UploadFile] = Field(
        min_length=1, description="Person photos (PNG, JPEG or WebP): repeat the field"
    )
    garments: list[UploadFile] = Field(min_length=1, description="Garment photos: repeat the field")
    categories: list[str] = Field(
        [], description="One per garment, in order (empty: the batch's category, else inferred); or none"
    )


class BatchLinksOut(BaseModel):
    self: str
    manifest: str | None = Field(None, description="Presigned GET URL of manifest.json once finished")


class BatchItemOut(BaseModel):
    name: str = Field(description="What the manifest calls it: the file name, or the key it was named by")
    key: str = Field(description="The photo's key below your prefix")
    url: str = Field(description="Presigned GET URL of the photo")


class BatchPersonOut(BatchItemOut):
    analysis: Literal["pending", "running", "succeeded", "failed"] = Field(
        description="The person's pose, densepose and parsing, done once for the batch"
    )
    error: str | None = None


class BatchGarmentOut(BatchItemOut):
    category: CategoryOut


class BatchJobOut(BaseModel):
    id: str
    person: int = Field(description="Index into `people`")
    garment: int = Field(description="Index into `garments`")
    status: JobStatus
    result_url: str | None = Field(None, description="Presigned GET URL of the try-on image (PNG)")
    error: str | None = None
    links: LinksOut


class BatchOut(BaseModel):
    id: str
    tenant: str
    source: Literal["api", "incoming"] = Field(
        description="api: POST /v1/batches; incoming: a garment dropped into the tenant's incoming prefix"
    )
    status: BatchStatus = Field(
        description="queued: no job started yet; running; finished: every job ended and the manifest is written"
    )
    created_at: datetime
    finished_at: datetime | None = None
    total: int = Field(description="Jobs of the batch: garments x people")
    progress: float = Field(description="Share of the jobs that have ended, in [0, 1]")
    counts: dict[str, int] = Field(description="Jobs by status: queued, running, succeeded, failed")
    error: str | None = Field(None, description="Why the batch made no job (it has a manifest all the same)")
    people: list[BatchPersonOut]
    garments: list[BatchGarmentOut]
    jobs: list[BatchJobOut] = Field(description="Garment by garment, person by person")
    manifest_url: str | None = Field(None, description="Finished: presigned GET URL of manifest.json")
    manifest_csv_url: str | None = Field(None, description="Finished: presigned GET URL of manifest.csv")
    manifest_key: str = Field(description="The manifest's key below your prefix (manifest.csv beside it)")
    callback: CallbackOut | None = None
    links: BatchLinksOut


class BatchAccepted(BaseModel):
    id: str
    status: BatchStatus
    total: int
    links: BatchLinksOut


def batch_path(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


def batch_out(batch: Batch, jobs: list[Job], presign, delivery: Delivery | None = None) -> BatchOut:
    """The batch as clients see it, with every job's state; `presign(key)` turns keys into URLs."""
    prefix = tenant_prefix(batch.tenant_id)
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for job in jobs:
        counts[job.status] += 1
    ended = sum(1 for job in jobs if job.finished)
    finished = batch.status == BATCH_FINISHED
    waiting = bool(jobs) and counts[QUEUED] == len(jobs)
    status = "finished" if finished else "queued" if waiting else "running"

    def item(i: BatchItem) -> dict[str, Any]:
        return {"name": i.name, "key": i.key.removeprefix(prefix), "url": presign(i.key)}

    manifest_url = presign(batch.manifest_key) if finished else None
    return BatchOut(
        id=batch.id,
        tenant=batch.tenant_id,
        source=batch.source,
        status=status,
        created_at=_when(batch.created_at),
        finished_at=_when(batch.finished_at),
        total=len(jobs),
        progress=round(ended / len(jobs), 4) if jobs else float(finished),
        counts=counts,
        error=batch.error,
        people=[BatchPersonOut(**item(p), analysis=p.status, error=p.error) for p in batch.people],
        garments=[
            BatchGarmentOut(
                **item(g),
                category=category_out(
                    g.category,
                    g.category_inferred,
                    (g.result or {}).get("confidence"),
                    (g.result or {}).get("scores"),
                ),
            )
            for g in batch.garments
        ],
        jobs=[
            BatchJobOut(
                id=job.id,
                person=job.batch_person or 0,
                garment=job.batch_garment or 0,
                status=job.status,
                result_url=presign(job.result_key) if job.result_key else None,
                error=job.error,
                links=LinksOut(self=job_path(job.id)),
            )
            for job in jobs
        ],
        manifest_url=manifest_url,
        manifest_csv_url=presign(batch.manifest_csv_key) if finished else None,
        manifest_key=batch.manifest_key.removeprefix(prefix),
        callback=_batch_callback(batch, delivery),
        links=BatchLinksOut(self=batch_path(batch.id), manifest=manifest_url),
    )


def _batch_callback(batch: Batch, delivery: Delivery | None) -> CallbackOut | None:
    if batch.callback_url is None:
        return None
    if delivery is None:
        return CallbackOut(url=batch.callback_url, status="pending", attempts=[])
    return _callback_of(delivery)


def batch_payload(batches: BatchStore, presign: Callable[[str], str], deliveries: DeliveryStore) -> Payload:
    """What a batch's callback sends: the batch's JSON as GET /v1/batches/{id} shows it."""

    def payload(delivery: Delivery) -> dict[str, Any] | None:
        batch = batches.get_for_tenant(delivery.subject_id, delivery.tenant_id)
        if batch is None:
            return None
        jobs = batches.jobs.batch_jobs(batch.id)
        return batch_out(batch, jobs, presign, deliveries.get(delivery.id)).model_dump(mode="json")

    return payload
