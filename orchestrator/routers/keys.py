"""API keys (admin routes, behind the admin key) and the tenant of a key (`GET /v1/tenant`).

`vton keys create|list|revoke` calls these routes with the admin key from the environment (VTON_ADMIN_KEY)
rather than writing to the database itself: the CLI stays a client of the HTTP API (it never imports the
orchestrator, and it needs neither the database's address nor its password, nor the key pepper), it manages
the keys of a cluster from a laptop as of one machine, and the orchestrator stays the one writer of its tables.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from orchestrator.auth import admin
from orchestrator.deps import ContextDep, PrincipalDep
from orchestrator.errors import ApiError
from orchestrator.schemas import (
    AUTH_RESPONSES,
    ErrorOut,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    TenantOut,
    key_out,
)
from orchestrator.tenants import TenantError, check_tenant_id, tenant_prefix

admin_router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(admin)],
    responses={
        401: {"model": ErrorOut, "description": "No admin key, or not the admin key"},
        403: {"model": ErrorOut, "description": "The admin routes are off (no VTON_ADMIN_KEY)"},
    },
)
router = APIRouter(tags=["tenant"], responses=AUTH_RESPONSES)


@admin_router.post(
    "/keys",
    status_code=201,
    responses={422: {"model": ErrorOut, "description": "Not a valid tenant id, a rate out of range"}},
    summary="Create an API key (and its tenant, with the tenant's first key)",
)
async def create_key(body: KeyCreate, ctx: ContextDep) -> KeyCreated:
    try:
        check_tenant_id(body.tenant)
    except TenantError as exc:
        raise ApiError(422, str(exc), {"field": "tenant", "value": body.tenant}) from None
    stored, key = await run_in_threadpool(
        ctx.auth.create_key, body.tenant, body.name, body.rate_per_s, body.burst
    )
    tenant = await run_in_threadpool(ctx.tenants.tenant, stored.tenant_id)
    return KeyCreated(**key_out(stored).model_dump(), key=key, webhook_secret=tenant.webhook_secret)


@admin_router.get("/keys", summary="List API keys (never the keys themselves)")
async def list_keys(
    ctx: ContextDep, tenant: str | None = Query(None, description="Only this tenant's keys")
) -> KeyList:
    keys = await run_in_threadpool(ctx.tenants.keys, tenant)
    return KeyList(keys=[key_out(k) for k in keys])


@admin_router.delete(
    "/keys/{key_id}",
    responses={404: {"model": ErrorOut, "description": "No such key"}},
    summary="Revoke an API key: from now on it answers 403",
)
async def revoke_key(key_id: str, ctx: ContextDep) -> KeyOut:
    revoked = await run_in_threadpool(ctx.tenants.revoke, key_id)
    if revoked is None:
        raise ApiError(404, f"no API key with id {key_id!r}", {"id": key_id})
    return key_out(revoked)


@router.get("/v1/tenant", summary="Your tenant: its storage prefix and webhook secret")
def get_tenant(principal: PrincipalDep, ctx: ContextDep) -> TenantOut:
    return TenantOut(
        id=principal.tenant_id,
        prefix=f"s3://{ctx.settings.s3_bucket}/{tenant_prefix(principal.tenant_id)}",
        webhook_secret=principal.tenant.webhook_secret,
        key_id=principal.key.id,
    )
