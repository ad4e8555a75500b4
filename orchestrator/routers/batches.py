"""POST /v1/batches: every garment on every person, one job each; GET /v1/batches/{id}: where the batch stands.

The photos come as a multipart upload (repeat `people` and `garments`) or as JSON naming the tenant's objects, as
for POST /v1/tryon. Each garment has a category: its own (`categories`, one per garment; JSON: `{key, category}`),
else the batch's `category`, else it is inferred from its photo. Each person's pose, densepose and parsing run
once for the whole batch (orchestrator.batches). When every job has ended the manifest (JSON and CSV) is written
beside the results, and a `callback_url` gets the batch's JSON. Another tenant's batch answers 404.
"""

from __future__ import annotations

import logging
import re
from functools import partial

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.auth import Principal
from orchestrator.batches import Batch, BatchPlan, batch_prefix, new_batch_id, stem
from orchestrator.deps import AppContext, ContextDep, PrincipalDep, accepting_work
from orchestrator.errors import ApiError
from orchestrator.idempotency import Idempotency
from orchestrator.limits import check_queue_room
from orchestrator.pipeline import IMAGE_FORMATS, image_format
from orchestrator.routers import intake
from orchestrator.routers.objects import referenced_photo
from orchestrator.schemas import (
    AUTH_RESPONSES,
    BatchAccepted,
    BatchByReference,
    BatchForm,
    BatchLinksOut,
    BatchOptionsIn,
    BatchOut,
    ErrorOut,
    batch_out,
    batch_path,
)
from orchestrator.tenants import tenant_prefix
from orchestrator.uploads import checked_image, checked_options
from vton.runtime.logs import log_event, request_id_var
from vton.runtime.options import TryOnOptions
from vton.runtime.vocab import CATEGORIES

router = APIRouter(tags=["batches"], responses=AUTH_RESPONSES)
log = logging.getLogger("vton.orchestrator.api")

_BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
_MAX_FILES = 500
# A name from an upload's file name: path-free, of characters every S3 key takes.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@router.post(
    "/v1/batches",
    dependencies=[Depends(accepting_work)],
    status_code=202,
    response_model=BatchAccepted,
    responses={
        400: {"model": ErrorOut, "description": "Not an image, an empty file, a malformed key or body"},
        404: {"model": ErrorOut, "description": "(JSON) no such object among yours"},
        413: {"model": ErrorOut, "description": "A photo over the upload limit"},
        422: {
            "model": ErrorOut,
            "description": "An option or category out of range (the detail names the field), categories not "
            "one per garment, more try-ons than your queue holds, a refused callback URL",
        },
        503: {"model": ErrorOut, "description": "Storage is unavailable, or the server is shutting down"},
    },
    summary="Try every garment on every person (one job each)",
    openapi_extra=intake.request_body(BatchForm, BatchByReference),
)
async def create_batch(
    request: Request, principal: PrincipalDep, ctx: ContextDep, idempotency_key: intake.IdempotencyKeyDep
) -> JSONResponse:
    batch_id = new_batch_id()
    if intake.body_format(request) == "json":
        outline = '{"people": [...], "garments": [...], ...}'
        body = await intake.json_body(request, BatchByReference, outline)
        options = checked_options(body)
        people, garments = await _referenced(ctx, principal, body)
        plan = _plan(ctx, principal, batch_id, body, options, people, garments)
        batch, replay = await _submit(ctx, principal, plan, body, {}, idempotency_key)
    else:
        async with request.form(max_files=_MAX_FILES, max_fields=_MAX_FILES + 16) as form:
            fields = {
                k: v for k, v in form.items() if v != "" and k not in ("people", "garments", "categories")
            }
            body = intake.validated(
                BatchForm,
                {
                    **fields,
                    "people": form.getlist("people"),
                    "garments": form.getlist("garments"),
                    "categories": form.getlist("categories"),
                },
            )
            options = checked_options(body)
            uploads = await _uploaded(ctx, body)
        prefix = batch_prefix(principal.tenant_id, batch_id)
        people, garments, photos = [], [], {}
        for i, (name, data) in enumerate(uploads[0]):
            people.append((name, f"{prefix}inputs/people/{i}.{_suffix(data)}"))
            photos[people[-1][1]] = data
        for i, (name, data, category) in enumerate(uploads[1]):
            garments.append((name, f"{prefix}inputs/garments/{i}.{_suffix(data)}", category))
            photos[garments[-1][1]] = data
        plan = _plan(ctx, principal, batch_id, body, options, people, garments)
        batch, replay = await _submit(ctx, principal, plan, body, photos, idempotency_key)
    headers = {"Location": batch_path(batch.id)}
    if replay:
        headers["Idempotent-Replayed"] = "true"
    jobs = len(batch.people) * len(batch.garments)
    accepted = BatchAccepted(
        id=batch.id, status="queued", total=jobs, links=BatchLinksOut(self=batch_path(batch.id))
    )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=headers)


@router.get(
    "/v1/batches/{batch_id}",
    responses={404: {"model": ErrorOut, "description": "No such batch"}},
    summary="A batch's jobs by status, its progress, every job's result and the manifest",
)
def get_batch(batch_id: str, principal: PrincipalDep, ctx: ContextDep) -> BatchOut:
    batch = ctx.batches.get_for_tenant(batch_id, principal.tenant_id) if _BATCH_ID.match(batch_id) else None
    if batch is None:
        raise ApiError(404, f"no batch with id {batch_id!r}", {"id": batch_id})
    return batch_out(
        batch,
        ctx.store.batch_jobs(batch_id),
        ctx.storage.presign,
        ctx.deliveries.for_subject("batch", batch_id),
    )


def _category(value: str | None, field: str) -> str | None:
    """A garment's category as given, checked; None: inferred from its photo."""
    if value and value not in CATEGORIES:
        raise ApiError(
            422,
            f"{field}: unknown category {value!r}; choose one of: {', '.join(CATEGORIES)}",
            {"field": field, "value": value},
        )
    return value or None


async def _referenced(
    ctx: AppContext, principal: Principal, body: BatchByReference
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str | None]]]:
    """(name, key) of each person and (name, key, category) of each garment the JSON names."""
    prefix = tenant_prefix(principal.tenant_id)
    people = []
    for i, reference in enumerate(body.people):
        key = await referenced_photo(ctx, principal, reference, f"people[{i}]")
        people.append((key.removeprefix(prefix), key))
    garments = []
    for i, given in enumerate(body.garments):
        reference, category = (given, None) if isinstance(given, str) else (given.key, given.category)
        category = _category(category or body.category, f"garments[{i}].category")
        key = await referenced_photo(ctx, principal, reference, f"garments[{i}]")
        garments.append((key.removeprefix(prefix), key, category))
    return people, garments


async def _uploaded(
    ctx: AppContext, form: BatchForm
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes, str | None]]]:
    """(name, bytes) of each person and (name, bytes, category) of each garment uploaded, names unique."""
    if form.categories and len(form.categories) != len(form.garments):
        raise ApiError(
            422,
            f"categories: {len(form.categories)} given for {len(form.garments)} garments; give one per garment "
            "(empty for the batch's category) or none",
            {"field": "categories"},
        )
    max_bytes = ctx.settings.max_upload_bytes
    limits = max_bytes, ctx.settings.max_working_pixels
    people = [await checked_image(upload, f"people[{i}]", *limits) for i, upload in enumerate(form.people)]
    garments = [
        await checked_image(upload, f"garments[{i}]", *limits) for i, upload in enumerate(form.garments)
    ]
    default = _category(form.category, "category")
    categories = [
        _category(form.categories[i] if form.categories else None, f"categories[{i}]") or default
        for i in range(len(garments))
    ]
    person_names = _unique_names(form.people, "person")
    garment_names = _unique_names(form.garments, "garment")
    return (
        list(zip(person_names, people, strict=True)),
        list(zip(garment_names, garments, categories, strict=True)),
    )


def _unique_names(uploads: list[UploadFile], what: str) -> list[str]:
    """Each upload's file name, made safe for a key and unique in the batch (its results are named after it)."""
    names: list[str] = []
    stems: set[str] = set()
    for i, upload in enumerate(uploads):
        base = _UNSAFE.sub("_", (upload.filename or "").rsplit("/", 1)[-1]).strip("._") or f"{what}-{i + 1}"
        name, n = base, 1
        while stem(name) in stems:
            n += 1
            head, dot, ext = base.rpartition(".")
            name = f"{head}-{n}.{ext}" if dot else f"{base}-{n}"
        stems.add(stem(name))
        names.append(name)
    return names


def _suffix(data: bytes) -> str:
    return IMAGE_FORMATS[image_format(data)]


def _plan(
    ctx: AppContext,
    principal: Principal,
    batch_id: str,
    body: BatchOptionsIn,
    options: TryOnOptions,
    people: list[tuple[str, str]],
    garments: list[tuple[str, str, str | None]],
) -> BatchPlan:
    jobs, per_tenant = len(people) * len(garments), ctx.settings.max_queued_jobs_per_tenant
    if jobs > per_tenant:
        raise ApiError(
            422,
            f"a batch of {len(garments)} garments x {len(people)} people is {jobs} try-ons, more than your queue "
            f"holds ({per_tenant}): split it",
            {"jobs": jobs, "limit": per_tenant},
        )
    prefix = batch_prefix(principal.tenant_id, batch_id)
    return BatchPlan(
        tenant_id=principal.tenant_id,
        source="api",
        people=people,
        garments=garments,
        options=options,
        results_prefix=f"{prefix}results/",
        manifest_key=f"{prefix}manifest.json",
        batch_id=batch_id,
        key_id=principal.key.id,
        callback_url=body.callback_url,
        request_id=request_id_var.get(),
    )


async def _submit(
    ctx: AppContext,
    principal: Principal,
    plan: BatchPlan,
    body: BatchOptionsIn,
    photos: dict[str, bytes],
    idempotency_key: str | None,
) -> tuple[Batch, bool]:
    """The batch the request makes (new, False), or the one a first request with its Idempotency-Key made."""
    await run_in_threadpool(intake.checked_callback, ctx, body.callback_url)
    fields = body.model_dump(mode="json", exclude={"people", "garments"} if photos else None)
    # each upload by its place in the request (people[0], ...): a retry matches whatever its file names
    places = [(f"people[{i}]", key) for i, (_, key) in enumerate(plan.people)]
    places += [(f"garments[{i}]", key) for i, (_, key, _) in enumerate(plan.garments)]
    files = {place: photos[key] for place, key in places if key in photos}
    batch, replay = await intake.made_once(
        ctx,
        principal,
        intake.idempotency_for(ctx, idempotency_key, "POST /v1/batches", fields, files),
        partial(_accept, ctx, principal, plan, photos),
        ctx.batches.get_for_tenant,
    )
    if not replay:
        log_event(
            log,
            "batch accepted",
            batch=batch.id,
            tenant=principal.tenant_id,
            people=len(batch.people),
            garments=len(batch.garments),
        )
    return batch, replay


def _accept(
    ctx: AppContext,
    principal: Principal,
    plan: BatchPlan,
    photos: dict[str, bytes],
    idempotency: Idempotency | None,
) -> Batch:
    """Store the uploaded photos under the batch's prefix, then write the batch and queue its jobs."""
    check_queue_room(
        *ctx.store.queued_counts(principal.tenant_id),
        per_tenant=ctx.settings.max_queued_jobs_per_tenant,
        in_all=ctx.settings.max_queued_jobs,
        adding=len(plan.people) * len(plan.garments),
    )
    ctx.ensure_bucket()
    for key, data in photos.items():
        ctx.storage.put(key, data)
    return ctx.batches.create(plan, idempotency=idempotency)
