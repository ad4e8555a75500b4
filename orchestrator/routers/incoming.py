"""GET and PUT /v1/incoming: the tenant's incoming-garment settings, and the garments picked up lately.

A garment photo put below the watched prefix (PUT /v1/objects/incoming/garments/..., or any S3 client) is tried
on the tenant's model photos as a batch of its own (orchestrator.incoming); GET /v1/incoming lists the latest
pickups with their batches.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from orchestrator.auth import Principal
from orchestrator.deps import AppContext, ContextDep, PrincipalDep
from orchestrator.errors import ApiError
from orchestrator.incoming import IncomingConfig, IncomingConfigError
from orchestrator.routers.intake import checked_callback
from orchestrator.schemas import AUTH_RESPONSES, ErrorOut, batch_path
from orchestrator.tenants import tenant_prefix

router = APIRouter(prefix="/v1/incoming", tags=["incoming"], responses=AUTH_RESPONSES)

_RECENT = 50
# A field PUT leaves out takes the setting a tenant has before its first PUT.
_DEFAULTS = IncomingConfig()


class IncomingIn(BaseModel):
    """The tenant's incoming-garment settings (PUT replaces them all; a field left out takes its default).
    Prefixes are below your prefix and end with `/`; none may lie inside another."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(_DEFAULTS.enabled, description="Whether the prefix is watched")
    prefix: str = Field(
        _DEFAULTS.prefix,
        description="The watched prefix. A first folder named after a category gives the garments below it "
        "that category (`incoming/garments/lower_body/jeans.jpg`); elsewhere it is inferred",
    )
    models_prefix: str | None = Field(
        _DEFAULTS.models_prefix,
        description="Every photo below it is a model photo (unless model_keys is given)",
    )
    model_keys: list[str] = Field(
        [], description="The model photos, by key; when given, models_prefix is not used"
    )
    results_prefix: str = Field(
        _DEFAULTS.results_prefix,
        description="Where results go: `<results_prefix><garment's path without extension>/<model>.png`, with "
        "manifest.json and manifest.csv beside them",
    )
    callback_url: str | None = Field(
        None, description="Gets each garment's finished batch, as a batch callback"
    )


class PickupOut(BaseModel):
    key: str = Field(description="The garment's key below your prefix")
    batch: str = Field(description="The batch it became")
    seen_at: datetime
    links: dict[str, str]


class IncomingOut(IncomingIn):
    uri: str = Field(description="The watched prefix as an `s3://` URI")
    poll_interval_s: float = Field(description="How often the prefix is listed")
    recent: list[PickupOut] = Field(description=f"The last {_RECENT} garments picked up, newest first")


def _out(ctx: AppContext, principal: Principal, config: IncomingConfig) -> IncomingOut:
    pickups = ctx.incoming.recent(principal.tenant_id, _RECENT)
    return IncomingOut(
        enabled=config.enabled,
        prefix=config.prefix,
        models_prefix=None if config.model_keys else config.models_prefix,
        model_keys=list(config.model_keys),
        results_prefix=config.results_prefix,
        callback_url=config.callback_url,
        uri=f"s3://{ctx.settings.s3_bucket}/{tenant_prefix(principal.tenant_id)}{config.prefix}",
        poll_interval_s=ctx.settings.incoming_poll_s,
        recent=[
            PickupOut(
                key=p.key,
                batch=p.batch_id,
                seen_at=datetime.fromtimestamp(p.seen_at, UTC),
                links={"batch": batch_path(p.batch_id)},
            )
            for p in pickups
        ],
    )


@router.get("", summary="Your incoming-garment settings and the latest pickups")
def get_incoming(principal: PrincipalDep, ctx: ContextDep) -> IncomingOut:
    return _out(ctx, principal, ctx.incoming.config(principal.tenant_id))


@router.put(
    "",
    responses={
        422: {
            "model": ErrorOut,
            "description": "A prefix that is malformed, the platform's, or inside another",
        }
    },
    summary="Set where incoming garments, model photos and results are",
)
async def put_incoming(body: IncomingIn, principal: PrincipalDep, ctx: ContextDep) -> IncomingOut:
    config = IncomingConfig(
        enabled=body.enabled,
        prefix=body.prefix,
        models_prefix=body.models_prefix,
        model_keys=tuple(body.model_keys),
        results_prefix=body.results_prefix,
        callback_url=await run_in_threadpool(checked_callback, ctx, body.callback_url),
    )
    try:
        config.checked()
    except IncomingConfigError as exc:
        raise ApiError(422, str(exc), {"field": exc.field, "value": getattr(body, exc.field)}) from None
    saved = await run_in_threadpool(ctx.incoming.save, principal.tenant_id, config)
    return await run_in_threadpool(_out, ctx, principal, saved)
