"""/healthz (the process answers), /readyz (stages, storage and database answer, and the process is not shutting
down) and /metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.deps import AppContext, ContextDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict:
    return {"status": "ok"}


def _storage_check(ctx: AppContext) -> dict:
    info = {"endpoint": ctx.settings.s3_endpoint or "aws", "bucket": ctx.settings.s3_bucket}
    try:
        ctx.ensure_bucket()  # created here when S3 came up after the orchestrator
        ctx.storage.ping()
    except Exception as exc:
        return {"ok": False, **info, "error": str(exc)}
    return {"ok": True, **info}


def _database_check(ctx: AppContext) -> dict:
    try:
        ctx.store.ping()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"ok": True}


@router.get(
    "/readyz",
    summary="Readiness: every stage SERVING (grpc.health.v1), the bucket and the database reachable, the "
    "process not shutting down",
    responses={503: {"description": "Something is not ready; the body says what"}},
)
def readyz(ctx: ContextDep) -> JSONResponse:
    if ctx.shutting_down.is_set():  # first thing a SIGTERM changes: load balancers stop sending work here
        return JSONResponse({"ready": False, "shutting_down": True}, status_code=503)
    timeout = ctx.settings.readiness_timeout_s
    with ThreadPoolExecutor(max_workers=2) as pool:
        storage = pool.submit(_storage_check, ctx)
        database = pool.submit(_database_check, ctx)
        health = ctx.clients.check(timeout)
        body = {"stages": {}, "storage": storage.result(), "database": database.result()}
    for stage, h in health.items():
        body["stages"][stage] = {"ok": h.ok, "address": h.address, "status": h.status}
        if h.detail:
            body["stages"][stage]["error"] = h.detail
    ready = all(s["ok"] for s in body["stages"].values()) and body["storage"]["ok"] and body["database"]["ok"]
    body = {"ready": ready, **body}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics(ctx: ContextDep) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
