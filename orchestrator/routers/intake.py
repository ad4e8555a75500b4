"""What the routes that take work share (POST /v1/tryon, POST /v1/batches, PUT /v1/incoming): a body that uploads
the photos as a form or names the tenant's objects in JSON, a callback URL checked against the policy, and a
request that makes its work once per `Idempotency-Key`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from orchestrator.auth import Principal
from orchestrator.callback_urls import CallbackRefused
from orchestrator.deps import AppContext
from orchestrator.errors import ApiError
from orchestrator.idempotency import HEADER as IDEMPOTENCY_HEADER
from orchestrator.idempotency import Idempotency, IdempotencyTaken, checked_key, fingerprint, replayed

_Body = TypeVar("_Body", bound=BaseModel)
_Made = TypeVar("_Made")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def request_body(form: type[BaseModel], by_reference: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself: its form, or its JSON."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form.model_json_schema()},
                "application/json": {"schema": by_reference.model_json_schema()},
            },
        }
    }


def body_format(request: Request) -> Literal["json", "form"]:
    """Whether the request names objects (JSON) or uploads the photos (a form); any other body answers 415."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return "json"
    if media_type in _FORM_TYPES:
        return "form"
    raise ApiError(
        415,
        f"the body is {media_type or 'of no declared type'}: send multipart/form-data (the photos) or "
        "application/json (objects in the bucket)",
    )


async def json_body(request: Request, model: type[_Body], outline: str) -> _Body:
    """The JSON body as `model`; 400 when it is no JSON object (the message shows one: `outline`)."""
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the JSON body is an object: {outline}")
    return validated(model, data)


def validated(model: type[_Body], data: dict[str, Any]) -> _Body:
    """The body as `model`, or the 422 every validation error answers (it names each field and value)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def checked_callback(ctx: AppContext, url: str | None) -> str | None:
    """The callback URL when the policy lets the platform call it (422 otherwise); it resolves the host, so call
    it in a worker thread."""
    if url is None:
        return None
    try:
        ctx.webhooks.policy.check(url)
    except CallbackRefused as exc:
        raise ApiError(422, f"callback_url: {exc}", {"field": "callback_url", "value": url}) from None
    return url


def _idempotency_key(
    value: str | None = Header(
        None,
        alias=IDEMPOTENCY_HEADER,
        description="A key of your choice: a retry with the same key and request answers with what the first "
        "request made",
    ),
) -> str | None:
    return checked_key(value)


# The request's `Idempotency-Key` (400 when malformed), None without one.
IdempotencyKeyDep = Annotated[str | None, Depends(_idempotency_key)]


def idempotency_for(
    ctx: AppContext, key: str | None, route: str, fields: dict[str, Any], files: dict[str, bytes]
) -> Idempotency | None:
    """What a request with an `Idempotency-Key` records (None without one): a retry must send the same route,
    fields and files."""
    if key is None:
        return None
    return Idempotency(key, fingerprint(route, fields, files), ctx.settings.idempotency_window_s)


async def made_once(
    ctx: AppContext,
    principal: Principal,
    idempotency: Idempotency | None,
    make: Callable[[Idempotency | None], _Made],
    find: Callable[[str, str], _Made | None],
) -> tuple[_Made, bool]:
    """What the request makes: (it, False), or (what the first request with its Idempotency-Key made, True).

    `make` stores and queues the work in a worker thread, recording the key in the same transaction; `find` is
    the store's lookup of what it makes by (id, tenant)."""

    async def made_before(resource_id: str) -> _Made:
        found = await run_in_threadpool(find, resource_id, principal.tenant_id)
        assert found is not None, "jobs and batches are never deleted"
        return found

    if idempotency is not None:
        prior = await run_in_threadpool(
            ctx.store.prior_request, principal.tenant_id, idempotency.key, idempotency.window_s
        )
        if prior is not None:
            return await made_before(replayed(prior, idempotency)), True
    try:
        made = await run_in_threadpool(make, idempotency)
    except IdempotencyTaken as taken:  # a concurrent retry made it first
        assert idempotency is not None, "only a request with a key can find it taken"
        return await made_before(replayed(taken.prior, idempotency)), True
    except SQLAlchemyError as exc:
        raise ApiError(503, "the job database is unavailable", type(exc).__name__) from None
    ctx.runner.wake()
    return made, False
