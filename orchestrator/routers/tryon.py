"""POST /v1/tryon: check the two photos, store them, queue the job; optionally wait for its end."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from orchestrator.app import AppContext, context, error_response
from orchestrator.errors import ApiError
from orchestrator.jobs import NewJob, new_job_id
from orchestrator.pipeline import CATEGORIES, STEPS, image_format, input_key
from orchestrator.schemas import ERROR_HTTP_STATUS, ErrorOut, JobAccepted, JobOut, LinksOut, job_out, job_path
from vton.runtime import images
from vton.runtime.errors import InvalidInput
from vton.runtime.logs import log_event, request_id_var

router = APIRouter(tags=["try-on"])
log = logging.getLogger("vton.orchestrator.api")

MAX_SEED = 2**63 - 1
_WAIT_POLL_S = 0.2

_ERRORS = {
    400: {"model": ErrorOut, "description": "Not an image, an empty file, a bad option"},
    413: {"model": ErrorOut, "description": "A file over the upload limit or an image over 40 megapixels"},
    422: {
        "model": ErrorOut,
        "description": "Unknown category, a missing field, or (wait=true) no person found",
    },
    503: {"model": ErrorOut, "description": "Storage or (wait=true) a stage is unavailable"},
    504: {"model": ErrorOut, "description": "(wait=true) a stage did not answer in time"},
}


def _size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.0f} kB"


async def _checked_image(upload: UploadFile, what: str, max_bytes: int) -> bytes:
    """The upload's bytes, refused (4xx naming `what`) when too big, empty, not an image or too many pixels."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(
            413,
            f"the {what} image is larger than the limit of {_size_text(max_bytes)}",
            {"field": what, "limit_bytes": max_bytes},
        )
    if not data:
        raise ApiError(400, f"the {what} image is empty", {"field": what})
    try:
        width, height = images.image_size(data)
        image_format(data)
    except InvalidInput as exc:
        raise ApiError(400, f"the {what} image: {exc}", {"field": what}) from None
    try:
        images.check_size(width, height)
    except InvalidInput as exc:
        # too many pixels is a size limit (413); too few is a bad image (400)
        status = 413 if width * height > images.MAX_PIXELS else 400
        raise ApiError(
            status, f"the {what} image: {exc}", {"field": what, "width": width, "height": height}
        ) from None
    return data


@router.post(
    "/v1/tryon",
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": JobOut, "description": "wait=true: the finished job"}, **_ERRORS},
    summary="Start a try-on job",
)
async def create_tryon(
    request: Request,
    person: UploadFile = File(
        ..., description="Photo of the person (PNG, JPEG or WebP, at most 40 megapixels)"
    ),
    garment: UploadFile = File(..., description="Product photo of the garment (PNG, JPEG or WebP)"),
    category: str = Form(..., description="upper_body, lower_body or dresses"),
    seed: int | None = Form(None, ge=0, le=MAX_SEED, description="Random seed; chosen at random when absent"),
    steps: int | None = Form(
        None, ge=1, le=1000, description="Denoising steps; the backend's default when absent"
    ),
    guidance_scale: float | None = Form(None, ge=0.0, le=50.0, description="Classifier-free guidance scale"),
    wait: bool = Query(
        False, description="Answer when the job has finished (200 with the job) instead of 202"
    ),
    timeout: float | None = Query(None, gt=0, le=3600, description="wait=true: seconds to wait at most"),
    ctx: AppContext = Depends(context),
):
    if category not in CATEGORIES:
        raise ApiError(
            422,
            f"unknown category {category!r}; choose one of: {', '.join(CATEGORIES)}",
            {"field": "category", "allowed": list(CATEGORIES)},
        )
    max_bytes = ctx.settings.max_upload_bytes
    person_bytes = await _checked_image(person, "person", max_bytes)
    garment_bytes = await _checked_image(garment, "garment", max_bytes)

    job_id = new_job_id()
    new = NewJob(
        id=job_id,
        category=category,
        seed=seed if seed is not None else secrets.randbelow(2**31),
        steps=steps,
        guidance_scale=guidance_scale,
        person_key=input_key(job_id, "person", image_format(person_bytes)),
        garment_key=input_key(job_id, "garment", image_format(garment_bytes)),
        request_id=request_id_var.get(),
    )

    def accept():
        ctx.ensure_bucket()
        ctx.storage.put(new.person_key, person_bytes)
        ctx.storage.put(new.garment_key, garment_bytes)
        return ctx.store.create(new, STEPS)

    try:
        job = await run_in_threadpool(accept)
    except SQLAlchemyError as exc:
        raise ApiError(503, "the job database is unavailable", type(exc).__name__) from None
    ctx.runner.wake()
    ctx.metrics.jobs_accepted.inc()
    log_event(log, "job accepted", job_id=job.id, category=category)

    location = {"Location": job_path(job.id)}
    if wait:
        finished = await _wait_finished(ctx, job.id, timeout or ctx.settings.wait_timeout_s)
        if finished is not None:
            body = job_out(finished, ctx.storage.presign).model_dump(mode="json")
            if finished.status == "succeeded":
                return JSONResponse(body, status_code=200, headers=location)
            status = ERROR_HTTP_STATUS.get(finished.error_code or "", 500)
            return error_response(status, finished.error or "the job failed", body, location)
    accepted = JobAccepted(id=job.id, status=job.status, links=LinksOut(self=job_path(job.id)))
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=location)


async def _wait_finished(ctx: AppContext, job_id: str, timeout_s: float):
    """The job once finished, or None when `timeout_s` passes first (the client then gets 202)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = await run_in_threadpool(ctx.store.get, job_id)
        if job is not None and job.finished:
            return job
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_WAIT_POLL_S)
