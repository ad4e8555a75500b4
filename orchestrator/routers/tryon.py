"""POST /v1/tryon: check the options and the two photos, store them, queue the job; optionally wait for its end."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from orchestrator.deps import AppContext, accepting_work, context, error_response
from orchestrator.errors import ApiError
from orchestrator.jobs import SUCCEEDED, Job, new_job_id
from orchestrator.pipeline import image_format, input_key
from orchestrator.schemas import (
    ERROR_HTTP_STATUS,
    ErrorOut,
    JobAccepted,
    JobOut,
    LinksOut,
    TryOnForm,
    job_out,
    job_path,
)
from orchestrator.uploads import checked_image, checked_options
from vton.runtime.logs import log_event, request_id_var
from vton.runtime.options import TryOnOptions

router = APIRouter(tags=["try-on"])
log = logging.getLogger("vton.orchestrator.api")

_WAIT_POLL_S = 0.2

_ERRORS = {
    400: {"model": ErrorOut, "description": "Not an image, an empty file"},
    413: {"model": ErrorOut, "description": "A file over the upload limit or an image over 40 megapixels"},
    422: {
        "model": ErrorOut,
        "description": "An option out of range or unknown (the detail names the field and the value sent), "
        "a missing field, or (wait=true) no person found",
    },
    503: {
        "model": ErrorOut,
        "description": "Storage or (wait=true) a stage is unavailable, or the server is shutting down (the "
        "detail holds the id of a job that was accepted)",
    },
    504: {"model": ErrorOut, "description": "(wait=true) a stage did not answer in time"},
}


@router.post(
    "/v1/tryon",
    dependencies=[Depends(accepting_work)],
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": JobOut, "description": "wait=true: the finished job"}, **_ERRORS},
    summary="Start a try-on job",
)
async def create_tryon(
    form: Annotated[TryOnForm, Form()],
    wait: bool = Query(
        False, description="Answer when the job has finished (200 with the job) instead of 202"
    ),
    timeout: float | None = Query(None, gt=0, le=3600, description="wait=true: seconds to wait at most"),
    ctx: AppContext = Depends(context),
) -> JSONResponse:
    options = checked_options(form)
    max_bytes = ctx.settings.max_upload_bytes
    person_bytes = await checked_image(form.person, "person", max_bytes)
    garment_bytes = await checked_image(form.garment, "garment", max_bytes)
    try:
        job = await run_in_threadpool(_accept, ctx, options, person_bytes, garment_bytes)
    except SQLAlchemyError as exc:
        raise ApiError(503, "the job database is unavailable", type(exc).__name__) from None
    ctx.runner.wake()
    ctx.metrics.jobs_accepted.inc()
    log_event(log, "job accepted", job_id=job.id, category=options.category)

    location = {"Location": job_path(job.id)}
    if wait:
        finished = await _wait_finished(ctx, job.id, timeout or ctx.settings.wait_timeout_s)
        if finished is None and ctx.shutting_down.is_set():
            detail = {"id": job.id, "links": {"self": job_path(job.id)}}
            message = "the server is shutting down; the job is kept and runs when it is back"
            raise ApiError(503, message, detail, {**location, "Retry-After": "5"})
        if finished is not None:
            body = job_out(finished, ctx.storage.presign).model_dump(mode="json")
            if finished.status == SUCCEEDED:
                return JSONResponse(body, status_code=200, headers=location)
            status = ERROR_HTTP_STATUS.get(finished.error_code or "", 500)
            return error_response(status, finished.error or "the job failed", body, location)
    accepted = JobAccepted(id=job.id, status=job.status, links=LinksOut(self=job_path(job.id)))
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=location)


def _accept(ctx: AppContext, options: TryOnOptions, person: bytes, garment: bytes) -> Job:
    """Store the two photos under a new job's prefix, then queue the job (committed when this returns)."""
    job_id = new_job_id()
    person_key = input_key(job_id, "person", image_format(person))
    garment_key = input_key(job_id, "garment", image_format(garment))
    ctx.ensure_bucket()
    ctx.storage.put(person_key, person)
    ctx.storage.put(garment_key, garment)
    return ctx.store.create(
        job_id, options, person_key=person_key, garment_key=garment_key, request_id=request_id_var.get()
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
