"""What the routers depend on: the application's context, the caller, and the JSON error answer.

Routers import from here, never from app.py (which imports the routers), as FastAPI's own project template does;
like it, a route names a dependency by its annotated type (`ctx: ContextDep`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from orchestrator.auth import Authenticator, Principal, authenticated
from orchestrator.batches import BatchStore
from orchestrator.catalog_poller import CatalogPoller
from orchestrator.errors import ApiError
from orchestrator.incoming import IncomingStore
from orchestrator.jobs import JobStore
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.pipeline import TryOnPipeline
from orchestrator.settings import Settings
from orchestrator.stages import StageClients
from orchestrator.storage import Storage
from orchestrator.tenants import TenantStore
from orchestrator.webhooks import DeliveryStore, WebhookDispatcher
from orchestrator.worker import JobRunner


@dataclass
class AppContext:
    settings: Settings
    store: JobStore
    storage: Storage
    clients: StageClients
    pipeline: TryOnPipeline
    runner: JobRunner
    metrics: OrchestratorMetrics
    tenants: TenantStore
    auth: Authenticator
    deliveries: DeliveryStore
    webhooks: WebhookDispatcher
    batches: BatchStore
    incoming: IncomingStore
    catalog: CatalogPoller
    bucket_ready: bool = False
    # Set by SIGTERM (or the app's shutdown): no new work, waiting clients answered, running jobs handed back.
    shutting_down: threading.Event = field(default_factory=threading.Event)
    _hand_back: threading.Thread | None = None

    def ensure_bucket(self, wait_s: float = 0.0) -> None:
        if not self.bucket_ready:
            self.storage.ensure_bucket(wait_s=wait_s)
            self.bucket_ready = True

    def begin_shutdown(self) -> threading.Thread:
        """Stop taking work: /readyz, POST /v1/tryon and POST /v1/batches answer 503 from now on, clients
        waiting on a job get 503 with its id, the workers hand their running jobs back to the queue and the
        catalog stops watching incoming garments (in the thread returned, the same one for every call)."""
        if self._hand_back is None:
            self.shutting_down.set()
            self._hand_back = threading.Thread(target=self._stop_work, name="vton-hand-back", daemon=True)
            self._hand_back.start()
        return self._hand_back

    def _stop_work(self) -> None:
        self.runner.stop()  # first: the running jobs go back to the queue at once
        self.catalog.stop()


def context(request: Request) -> AppContext:
    return request.app.state.ctx


ContextDep = Annotated[AppContext, Depends(context)]
# The API key the request came with, and its tenant (401, 403 or 429 otherwise: orchestrator.auth).
PrincipalDep = Annotated[Principal, Depends(authenticated)]


def accepting_work(ctx: ContextDep) -> None:
    """A route that starts work refuses it while the process shuts down: another replica (or this one after
    its restart) takes it."""
    if ctx.shutting_down.is_set():
        raise ApiError(
            503,
            "the server is shutting down; send the request again in a few seconds",
            None,
            {"Retry-After": "5"},
        )


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every error the API answers: `{"error": "...", "detail": ...}` with its HTTP status."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)
