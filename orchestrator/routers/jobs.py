"""GET /v1/jobs/{id}: a job's status, each stage's progress, timings, and URLs of its result and artifacts.

A tenant sees its own jobs only: another tenant's job id answers 404, as an id that does not exist does.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from orchestrator.auth import Principal
from orchestrator.deps import AppContext, ContextDep, PrincipalDep
from orchestrator.errors import ApiError
from orchestrator.jobs import SUCCEEDED, Job
from orchestrator.schemas import AUTH_RESPONSES, ErrorOut, JobOut, job_out

router = APIRouter(tags=["jobs"], responses=AUTH_RESPONSES)

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _job(ctx: AppContext, job_id: str, principal: Principal) -> Job:
    job = ctx.store.get_for_tenant(job_id, principal.tenant_id) if _JOB_ID.match(job_id) else None
    if job is None:
        raise ApiError(404, f"no job with id {job_id!r}", {"id": job_id})
    return job


@router.get(
    "/v1/jobs/{job_id}",
    responses={404: {"model": ErrorOut, "description": "No such job"}},
    summary="A job's status, stages, timings, result and artifacts",
)
def get_job(job_id: str, principal: PrincipalDep, ctx: ContextDep) -> JobOut:
    return job_out(
        _job(ctx, job_id, principal), ctx.storage.presign, ctx.deliveries.for_subject("job", job_id)
    )


@router.get(
    "/v1/jobs/{job_id}/result",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        404: {"model": ErrorOut, "description": "No such job"},
        409: {"model": ErrorOut, "description": "The job has not succeeded (yet)"},
    },
    summary="Redirect to the try-on image of a finished job",
)
def get_result(job_id: str, principal: PrincipalDep, ctx: ContextDep) -> RedirectResponse:
    job = _job(ctx, job_id, principal)
    if job.status != SUCCEEDED or not job.result_key:
        message = f"job {job_id} has no result: it is {job.status}"
        raise ApiError(409, message + (f" ({job.error})" if job.error else ""), {"status": job.status})
    return RedirectResponse(ctx.storage.presign(job.result_key), status_code=307)
