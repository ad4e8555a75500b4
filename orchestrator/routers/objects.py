"""A tenant's objects in the platform's bucket: upload a photo once, name it in any number of try-ons.

`PUT /v1/objects/{key}` stores the request's body (a PNG, JPEG or WebP photo, checked like an upload) at
`tenants/<tenant>/<key>`; `GET /v1/objects/{key}` describes one with a presigned URL; `GET /v1/objects` lists
them. Keys are relative to the tenant's prefix, so no tenant can name another's objects; `jobs/` and
`batches/` below it are written by the platform alone.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from orchestrator.auth import Principal
from orchestrator.deps import AppContext, ContextDep, PrincipalDep
from orchestrator.errors import ApiError
from orchestrator.pipeline import image_format
from orchestrator.schemas import AUTH_RESPONSES, ErrorOut, ObjectList, ObjectOut
from orchestrator.storage import ObjectInfo, content_type_for
from orchestrator.tenants import (
    RESERVED_PREFIXES,
    NotTheTenantsObject,
    TenantError,
    check_relative_key,
    object_key,
    tenant_prefix,
)
from orchestrator.uploads import checked_image

router = APIRouter(prefix="/v1/objects", tags=["objects"], responses=AUTH_RESPONSES)

_MAX_LISTING = 1000
_IMAGE_SUFFIXES = {"png": ("png",), "jpeg": ("jpg", "jpeg"), "webp": ("webp",)}


def _relative_key(key: str) -> str:
    try:
        return check_relative_key(key)
    except TenantError as exc:
        raise ApiError(400, str(exc), {"key": key}) from None


def _object_out(ctx: AppContext, principal: Principal, info: ObjectInfo) -> ObjectOut:
    prefix = tenant_prefix(principal.tenant_id)
    return ObjectOut(
        key=info.key[len(prefix) :],
        uri=f"s3://{ctx.settings.s3_bucket}/{info.key}",
        size=info.size,
        last_modified=datetime.fromtimestamp(info.last_modified, UTC),
        url=ctx.storage.presign(info.key),
    )


async def referenced_photo(ctx: AppContext, principal: Principal, reference: str, what: str) -> str:
    """The key of the object a request names as `what` (`s3://...` or a key below the tenant's prefix): the
    tenant's own (another's answers 404 like one that does not exist) and a photo the upload checks pass."""
    max_bytes = ctx.settings.max_upload_bytes
    problem = {"field": what, "value": reference}
    try:
        key = object_key(principal.tenant_id, reference, ctx.settings.s3_bucket)
    except TenantError as exc:
        raise ApiError(400, f"{what}: {exc}", problem) from None
    except NotTheTenantsObject:
        key = None  # another tenant's object: answered as one that does not exist
    info = await run_in_threadpool(ctx.storage.head, key) if key else None
    if info is None:
        raise ApiError(404, f"{what}: no object {reference!r} among yours", problem)
    if info.size > max_bytes:
        raise ApiError(
            413,
            f"the {what} object is larger than the upload limit of {max_bytes} bytes",
            {"field": what, "limit_bytes": max_bytes},
        )
    data = await run_in_threadpool(ctx.storage.get, key)
    upload = UploadFile(io.BytesIO(data), filename=key)
    await checked_image(upload, what, max_bytes, ctx.settings.max_working_pixels)  # as an upload
    return key


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it passes `limit` bytes."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(
                413, f"the object is larger than the upload limit of {limit} bytes", {"limit_bytes": limit}
            )
    return bytes(data)


@router.put(
    "/{key:path}",
    status_code=201,
    responses={
        400: {
            "model": ErrorOut,
            "description": "A malformed key, not a photo, or a suffix unlike its format",
        },
        403: {"model": ErrorOut, "description": "A revoked key, or a key below jobs/ or batches/"},
        413: {"model": ErrorOut, "description": "Over the upload limit"},
    },
    summary="Store a photo at `tenants/<tenant>/<key>` (the body is the file)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/png", "image/jpeg", "image/webp")
            },
        }
    },
)
async def put_object(key: str, request: Request, principal: PrincipalDep, ctx: ContextDep) -> ObjectOut:
    key = _relative_key(key)
    if key.startswith(RESERVED_PREFIXES):
        raise ApiError(
            403, f"{key.split('/', 1)[0]}/ is written by the platform; choose another key", {"key": key}
        )
    max_bytes = ctx.settings.max_upload_bytes
    data = await checked_image(
        UploadFile(io.BytesIO(await _body(request, max_bytes)), filename=key),
        "object",
        max_bytes,
        ctx.settings.max_working_pixels,
    )
    found = image_format(data)
    suffix = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    if suffix not in _IMAGE_SUFFIXES[found]:
        raise ApiError(
            400,
            f"the object is a {found.upper()} image: its key ends with .{' or .'.join(_IMAGE_SUFFIXES[found])}",
            {"key": key, "format": found},
        )
    full_key = tenant_prefix(principal.tenant_id) + key

    def store() -> ObjectInfo:
        ctx.ensure_bucket()
        ctx.storage.put(full_key, data, content_type_for(full_key))
        info = ctx.storage.head(full_key)
        assert info is not None, "a stored object reads back"
        return info

    return _object_out(ctx, principal, await run_in_threadpool(store))


@router.get(
    "/{key:path}",
    responses={404: {"model": ErrorOut, "description": "No such object among yours"}},
    summary="One of your objects, with a presigned URL",
)
def get_object(key: str, principal: PrincipalDep, ctx: ContextDep) -> ObjectOut:
    info = ctx.storage.head(tenant_prefix(principal.tenant_id) + _relative_key(key))
    if info is None:
        raise ApiError(404, f"no object {key!r} among yours", {"key": key})
    return _object_out(ctx, principal, info)


@router.get("", summary="Your objects, in key order")
def list_objects(
    principal: PrincipalDep,
    ctx: ContextDep,
    prefix: str = Query("", description="Only keys that start with this"),
    after: str | None = Query(None, description="Only keys after this one (the previous page's next_after)"),
    limit: int = Query(100, ge=1, le=_MAX_LISTING),
) -> ObjectList:
    base = tenant_prefix(principal.tenant_id)
    infos = ctx.storage.list(base + prefix, limit=limit + 1, after=base + after if after else None)
    page = [_object_out(ctx, principal, info) for info in infos[:limit]]
    return ObjectList(objects=page, next_after=page[-1].key if len(infos) > limit else None)
