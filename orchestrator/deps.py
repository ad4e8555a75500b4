"""What the routers depend on: the application's context and the JSON error answer.

Routers import from here, never from app.py (which imports the routers), as FastAPI's own project template does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from orchestrator.auth import Authenticator
from orchestrator.batches import BatchStore
from orchestrator.catalog_poller import CatalogPoller
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

    def ensure_bucket(self, wait_s: float = 0.0) -> None:
        if not self.bucket_ready:
            self.storage.ensure_bucket(wait_s=wait_s)
            self.bucket_ready = True


def context(request: Request) -> AppContext:
    return request.app.state.ctx


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every error the API answers: `{"error": "...", "detail": ...}` with its HTTP status."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)
