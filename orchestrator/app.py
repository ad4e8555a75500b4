"""The FastAPI application: wiring of store, storage, stage clients and job runner; errors as JSON; request ids.

`create_app()` builds everything without touching the network; the lifespan migrates the database to the
newest schema, creates the bucket, takes back interrupted jobs and starts the workers, and stops them (handing
jobs back) at shutdown.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager, suppress

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.auth import Authenticator
from orchestrator.batch_steps import BatchSteps
from orchestrator.batches import BatchStore
from orchestrator.breaker import STORAGE, DependencyBreaker
from orchestrator.catalog_poller import CatalogPoller
from orchestrator.deps import AppContext, error_response
from orchestrator.errors import ApiError
from orchestrator.incoming import IncomingStore, IncomingWatcher
from orchestrator.jobs import JobStore
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.pipeline import TryOnPipeline
from orchestrator.routers import batches, health, incoming, jobs, keys, objects, tryon, web
from orchestrator.schemas import batch_payload, job_payload
from orchestrator.settings import Settings, load_settings
from orchestrator.stages import StageClients
from orchestrator.storage import StorageError, storage_from_settings
from orchestrator.tenants import TenantStore
from orchestrator.webhooks import DeliveryStore, webhook_dispatcher
from orchestrator.worker import JobRunner
from vton.runtime.logs import log_event, request_id_var
from vton.runtime.vocab import STAGES

log = logging.getLogger("vton.orchestrator")

REQUEST_ID_HEADER = "x-request-id"
# Request ids travel as gRPC metadata and into log lines: printable, short, no separators.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Multipart framing and form fields beyond the two files.
_FORM_OVERHEAD_BYTES = 1024 * 1024
# Probes and scrapes come every few seconds: no log line for each.
_QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Per request: the request id (taken from X-Request-ID or made), the HTTP metrics, and the body limit.

    A body over the limit is refused before anything reads it when Content-Length says so, and otherwise
    (chunked uploads) as soon as the bytes counted while streaming pass it: the client gets 413 JSON
    whatever the app below made of the cut-off body.
    """

    def __init__(self, app, metrics: OrchestratorMetrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        state = {"status": 500, "received": 0, "too_large": False, "started": False}
        limit = self.max_body_bytes

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["too_large"] = True
                    raise _BodyTooLarge
            return message

        async def send_with_id(message) -> None:
            if state["too_large"]:
                return  # whatever the app answers to a cut-off body, the client gets the 413 below
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        async def refuse(size_text: str) -> None:
            state["too_large"] = False
            response = error_response(
                413, f"the request body is {size_text}; the limit is {limit / 1e6:.0f} MB"
            )
            await response(scope, receive, send_with_id)

        started = time.perf_counter()
        try:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                await refuse(int(length))
            else:
                with suppress(_BodyTooLarge):
                    await self.app(scope, counting_receive, send_with_id)
                if state["too_large"] and not state["started"]:
                    await refuse(None)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            seconds = time.perf_counter() - started
            self.metrics.http_requests.labels(method, label, str(state["status"])).inc()
            self.metrics.http_seconds.labels(method, label).observe(seconds)
            if label not in _QUIET_ROUTES:
                log_event(
                    log,
                    f"{method} {scope.get('path', '')} {state['status']}",
                    method=method,
                    route=label,
                    status=state["status"],
                    seconds=round(seconds, 4),
                )
            request_id_var.reset(token)


def _validation_summary(exc: RequestValidationError) -> tuple[str, list[dict]]:
    """A 422's text and detail: each problem's field, what is wrong, and the value the client sent (when it
    sent a plain value rather than a file or nothing)."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        problem = {"field": ".".join(loc) or "request", "message": err.get("msg", "invalid")}
        if err.get("type") != "missing" and isinstance(err.get("input"), str | int | float | bool):
            problem["value"] = err["input"]
        problems.append(problem)
    summary = "; ".join(
        f"{p['field']}: {p['message']}" + (f" (sent {p['value']!r})" if "value" in p else "")
        for p in problems[:5]
    )
    return f"invalid request: {summary}", problems


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        error, problems = _validation_summary(exc)
        return error_response(422, error, problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and text == "Not Found":
            text = "no such route"
        return error_response(exc.status_code, text, None, getattr(exc, "headers", None))

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage: %s", exc)
        return error_response(503, "storage unavailable", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal error", type(exc).__name__)


def _dependency_checks(clients: StageClients, storage_check: Callable[[], None], timeout_s: float) -> dict:
    """The breaker's health check of each stage (grpc.health.v1) and of the storage, by dependency name."""

    def stage_check(stage: str) -> Callable[[], None]:
        def check() -> None:
            health = clients.check_stage(stage, timeout_s)
            if not health.ok:
                detail = f"{health.status}: {health.detail}" if health.detail else health.status
                raise RuntimeError(f"the {stage} stage ({health.address}) is unavailable: {detail}")

        return check

    return {**{stage: stage_check(stage) for stage in STAGES}, STORAGE: storage_check}


def build_context(settings: Settings) -> AppContext:
    metrics = OrchestratorMetrics()
    store = JobStore(settings.resolved_database_url)
    storage = storage_from_settings(settings)
    clients = StageClients(settings.stage_addrs, timeout_s=settings.stage_timeout_s)
    batch_store = BatchStore(store)
    # a batch's shared step is claimed for as long as its stage calls may take
    shared = BatchSteps(batch_store, storage, lease_s=settings.stage_timeout_s + 60)
    pipeline = TryOnPipeline(clients, storage, shared=shared, max_working_pixels=settings.max_working_pixels)
    breaker = DependencyBreaker(
        # the storage is up when the bucket answers (created here when S3 came up after the orchestrator)
        _dependency_checks(clients, storage.ensure_bucket, settings.readiness_timeout_s),
        interval_s=settings.health_interval_s,
        timeout_s=settings.readiness_timeout_s,
        on_change=lambda dependency, up: metrics.dependency_up.labels(dependency).set(int(up)),
    )
    runner = JobRunner(
        store,
        pipeline,
        metrics,
        workers=settings.workers,
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
        breaker=breaker,
        deadline_s=settings.job_deadline_s,
    )
    metrics.watch_store(store.counts_by_status)
    tenants = TenantStore(store.engine)
    deliveries = DeliveryStore(store.engine)
    webhooks = webhook_dispatcher(
        settings,
        deliveries,
        tenants,
        {
            "job": job_payload(store, storage.presign, deliveries),
            "batch": batch_payload(batch_store, storage.presign, deliveries),
        },
    )
    incoming_store = IncomingStore(store.engine)
    watcher = IncomingWatcher(incoming_store, batch_store, storage, settings, wake=runner.wake)
    catalog = CatalogPoller(
        batch_store, storage, watcher, bucket=settings.s3_bucket, incoming_poll_s=settings.incoming_poll_s
    )
    return AppContext(
        settings,
        store,
        storage,
        clients,
        pipeline,
        runner,
        metrics,
        tenants,
        Authenticator(settings, tenants),
        deliveries,
        webhooks,
        batch_store,
        incoming_store,
        catalog,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(ctx.store.upgrade_schema)
        try:
            await run_in_threadpool(ctx.ensure_bucket, settings.s3_startup_wait_s)
        except StorageError as exc:  # /readyz says so and keeps trying; POSTs answer 503 meanwhile
            log.error("storage not ready at startup: %s", exc)
        if settings.workers > 0:
            await run_in_threadpool(ctx.runner.start)
            ctx.webhooks.start()
            ctx.catalog.start()
        log_event(
            log,
            "orchestrator started",
            workers=settings.workers,
            database=_redacted(settings.resolved_database_url),
            s3=settings.s3_endpoint or "aws",
            bucket=settings.s3_bucket,
        )
        try:
            yield
        finally:
            # SIGTERM began this already (orchestrator.__main__); a shutdown without it (tests) begins it here
            await run_in_threadpool(ctx.begin_shutdown().join)
            await run_in_threadpool(ctx.webhooks.stop)
            ctx.clients.close()
            ctx.store.close()

    app = FastAPI(
        title="vton orchestrator",
        version="0.1.0",
        description=(
            "Virtual try-on: send a person photo and a garment photo, get the person wearing the garment. "
            "Jobs run through the pose, densepose, parsing, warp and diffusion stages; every artifact and "
            "the result are stored in S3 and returned as presigned URLs. Errors are JSON "
            '`{"error": "...", "detail": ...}`.'
        ),
        lifespan=lifespan,
        docs_url=None,  # served below from the installed Swagger UI: the default page loads it from a CDN
    )
    _serve_offline_docs(app)
    app.state.ctx = ctx
    _install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=ctx.metrics,
        max_body_bytes=2 * settings.max_upload_bytes + _FORM_OVERHEAD_BYTES,
    )
    app.include_router(tryon.router)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(incoming.router)
    app.include_router(objects.router)
    app.include_router(keys.router)
    app.include_router(keys.admin_router)
    app.include_router(health.router)
    app.include_router(web.router)
    return app


def _serve_offline_docs(app: FastAPI) -> None:
    """The OpenAPI page at /docs with Swagger UI's files from the swagger-ui-bundle package, so it works on a
    machine or cluster with no internet access."""
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title}: API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def _redacted(url: str) -> str:
    """The database URL without its password, for the logs."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
