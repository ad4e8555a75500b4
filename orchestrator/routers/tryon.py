"""POST /v1/tryon: check the options and the two photos, store them, queue the job; optionally wait for its end.

The photos come as a multipart upload, or as JSON naming objects the tenant stored in the platform's bucket
(PUT /v1/objects/{key}). The job belongs to the tenant of the request's API key; an `Idempotency-Key` makes a
retried request answer with the job the first one made; the queue's bounds answer 429.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.auth import Principal
from orchestrator.deps import AppContext, ContextDep, PrincipalDep, accepting_work, error_response
from orchestrator.errors import ApiError
from orchestrator.idempotency import Idempotency
from orchestrator.jobs import SUCCEEDED, Job, new_job_id
from orchestrator.limits import check_queue_room
from orchestrator.pipeline import image_format, input_key
from orchestrator.routers import intake
from orchestrator.routers.objects import referenced_photo
from orchestrator.schemas import (
    AUTH_RESPONSES,
    ERROR_HTTP_STATUS,
    ErrorOut,
    JobAccepted,
    JobOut,
    LinksOut,
    TryOnByReference,
    TryOnForm,
    TryOnOptionsIn,
    job_out,
    job_path,
)
from orchestrator.tenants import job_prefix
from orchestrator.uploads import checked_image, checked_options
from vton.runtime.logs import log_event, request_id_var
from vton.runtime.options import TryOnOptions

# Its one route starts work: refused while the process shuts down.
router = APIRouter(tags=["try-on"], dependencies=[Depends(accepting_work)], responses=AUTH_RESPONSES)
log = logging.getLogger("vton.orchestrator.api")

_WAIT_POLL_S = 0.2

_ERRORS = {
    400: {
        "model": ErrorOut,
        "description": "Not a PNG, JPEG or WebP image, an empty, truncated or damaged file, a side under 32 "
        "pixels or a picture more than 10 times longer than wide (the error names the size sent); (JSON) an object "
        "of another bucket, a URL, a malformed key",
    },
    404: {"model": ErrorOut, "description": "(JSON) no such object among yours"},
    413: {
        "model": ErrorOut,
        "description": "A file over the upload limit, or an image whose header declares over 40 megapixels",
    },
    422: {
        "model": ErrorOut,
        "description": "An option out of range or unknown (the detail names the field and the value sent), "
        "a missing field, a refused callback URL, an Idempotency-Key sent before with another request, or "
        "(wait=true) no person found",
    },
    503: {
        "model": ErrorOut,
        "description": "Storage or (wait=true) a stage is unavailable, or the server is shutting down (the "
        "detail holds the id of a job that was accepted)",
    },
    504: {"model": ErrorOut, "description": "(wait=true) a stage did not answer in time"},
}


@dataclass
class _Photos:
    """The two photos of a request: uploaded bytes to store, or the keys of the tenant's objects to use."""

    uploads: dict[str, bytes] = field(default_factory=dict)  # person/garment -> bytes
    keys: dict[str, str] = field(default_factory=dict)  # person/garment -> the tenant's object key


@router.post(
    "/v1/tryon",
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": JobOut, "description": "wait=true: the finished job"}, **_ERRORS},
    summary="Start a try-on job",
    openapi_extra=intake.request_body(TryOnForm, TryOnByReference),
)
async def create_tryon(
    request: Request,
    principal: PrincipalDep,
    ctx: ContextDep,
    idempotency_key: intake.IdempotencyKeyDep,
    wait: bool = Query(
        False, description="Answer when the job has finished (200 with the job) instead of 202"
    ),
    timeout: float | None = Query(None, gt=0, le=3600, description="wait=true: seconds to wait at most"),
) -> JSONResponse:
    if intake.body_format(request) == "json":
        outline = '{"person": ..., "garment": ..., "category": ...}'
        body = await intake.json_body(request, TryOnByReference, outline)
        options = checked_options(body)
        photos = _Photos(keys=await _referenced_photos(ctx, principal, body))
        job, replay = await _submit(ctx, principal, body, options, photos, idempotency_key)
    else:
        async with request.form(max_files=2, max_fields=16) as form:
            body = intake.validated(TryOnForm, {k: v for k, v in form.items() if v != ""})
            options = checked_options(body)
            photos = _Photos(uploads=await _uploaded_photos(ctx, body))
            job, replay = await _submit(ctx, principal, body, options, photos, idempotency_key)

    location = {"Location": job_path(job.id)}
    if replay:
        location["Idempotent-Replayed"] = "true"
    if wait:
        finished = await _wait_finished(ctx, job.id, timeout or ctx.settings.wait_timeout_s)
        if finished is None and ctx.shutting_down.is_set():
            detail = {"id": job.id, "links": {"self": job_path(job.id)}}
            message = "the server is shutting down; the job is kept and runs when it is back"
            raise ApiError(503, message, detail, {**location, "Retry-After": "5"})
        if finished is not None:
            delivery = ctx.deliveries.for_subject("job", job.id)
            shown = job_out(finished, ctx.storage.presign, delivery).model_dump(mode="json")
            if finished.status == SUCCEEDED:
                return JSONResponse(shown, status_code=200, headers=location)
            status = ERROR_HTTP_STATUS.get(finished.error_code or "", 500)
            return error_response(status, finished.error or "the job failed", shown, location)
    accepted = JobAccepted(id=job.id, status=job.status, links=LinksOut(self=job_path(job.id)))
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=location)


async def _submit(
    ctx: AppContext,
    principal: Principal,
    body: TryOnOptionsIn,
    options: TryOnOptions,
    photos: _Photos,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """The job the request makes: (a new job, False), or (the job a first request with the same
    Idempotency-Key made, True)."""
    callback_url = await run_in_threadpool(intake.checked_callback, ctx, body.callback_url)
    fields = body.model_dump(mode="json", exclude={"person", "garment"} if photos.uploads else None)
    job, replay = await intake.made_once(
        ctx,
        principal,
        intake.idempotency_for(ctx, idempotency_key, "POST /v1/tryon", fields, photos.uploads),
        partial(_accept, ctx, principal, options, photos, callback_url),
        ctx.store.get_for_tenant,
    )
    if not replay:
        ctx.metrics.jobs_accepted.inc()
        log_event(log, "job accepted", job_id=job.id, category=options.category, tenant=principal.tenant_id)
    return job, replay


async def _uploaded_photos(ctx: AppContext, form: TryOnForm) -> dict[str, bytes]:
    limits = ctx.settings.max_upload_bytes, ctx.settings.max_working_pixels
    return {
        "person": await checked_image(form.person, "person", *limits),
        "garment": await checked_image(form.garment, "garment", *limits),
    }


async def _referenced_photos(ctx: AppContext, principal: Principal, body: TryOnByReference) -> dict[str, str]:
    """The keys of the two objects the JSON names, each the tenant's own and a photo the upload checks pass."""
    return {
        what: await referenced_photo(ctx, principal, reference, what)
        for what, reference in (("person", body.person), ("garment", body.garment))
    }


def _accept(
    ctx: AppContext,
    principal: Principal,
    options: TryOnOptions,
    photos: _Photos,
    callback_url: str | None,
    idempotency: Idempotency | None,
) -> Job:
    """Store the uploaded photos under a new job's prefix, then queue the job (committed when this returns)."""
    check_queue_room(
        *ctx.store.queued_counts(principal.tenant_id),
        per_tenant=ctx.settings.max_queued_jobs_per_tenant,
        in_all=ctx.settings.max_queued_jobs,
    )
    job_id = new_job_id()
    prefix = job_prefix(principal.tenant_id, job_id)
    keys = dict(photos.keys)
    ctx.ensure_bucket()
    for name, data in photos.uploads.items():
        keys[name] = ctx.storage.put(input_key(prefix, name, image_format(data)), data)
    return ctx.store.create(
        job_id,
        options,
        person_key=keys["person"],
        garment_key=keys["garment"],
        request_id=request_id_var.get(),
        tenant_id=principal.tenant_id,
        key_id=principal.key.id,
        callback_url=callback_url,
        idempotency=idempotency,
    )


async def _wait_finished(ctx: AppContext, job_id: str, timeout_s: float) -> Job | None:
    """The job once finished, or None when `timeout_s` passes first (the client then gets 202) or the
    process begins to shut down."""
    deadline = time.monotonic() + timeout_s
    while not ctx.shutting_down.is_set():
        job = await run_in_threadpool(ctx.store.get, job_id)
        if job is not None and job.finished:
            return job
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_WAIT_POLL_S)
    return None
