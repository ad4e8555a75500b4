"""The gRPC server every stage runs: health, reflection, size limits, deadlines, errors, metrics, request ids.

A stage hands over its servicer and the function that registers it; stage code raises the errors of
vton.runtime.errors and this layer maps them to status codes with the message unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import replace
from typing import Any, Generic, ParamSpec, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vton.runtime import metrics
from vton.runtime.backend import BackendInfo, BackendSpec, Capabilities, select_backend
from vton.runtime.errors import InvalidInput, NoPersonFound
from vton.runtime.logs import REQUEST_ID_METADATA, log_event, request_id_var
from vton.runtime.vocab import SERVICE_NAMES

# A 1024x768 request carries a few encoded images and an 18-channel pose map: 64 MiB leaves ample room.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_context: contextvars.ContextVar[grpc.ServicerContext | None] = contextvars.ContextVar(
    "grpc_context", default=None
)
log = logging.getLogger("vton.grpc")


class Cancelled(Exception):
    """The client cancelled the call or its deadline passed; the work stops at the next check."""


def check_cancelled() -> None:
    """Raise Cancelled when the current call is no longer wanted. Long stage code calls this between steps."""
    ctx = _context.get()
    if ctx is None:
        return
    remaining = ctx.time_remaining()
    if not ctx.is_active() or (remaining is not None and remaining <= 0):
        raise Cancelled("the call was cancelled or its deadline passed")


class BackendSlots:
    """At most `size` calls inside one backend at once (its declared max_concurrency).

    A call beyond that waits for a slot, checking every POLL_SECONDS whether its client still wants it, so a call
    cancelled or past its deadline leaves the queue without ever reaching the backend.
    """

    POLL_SECONDS = 0.05

    def __init__(self, size: int) -> None:
        self._free = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        while not self._free.acquire(timeout=self.POLL_SECONDS):
            check_cancelled()
        try:
            check_cancelled()  # the deadline may have passed while the slot was being taken
            yield
        finally:
            self._free.release()


B = TypeVar("B")
R = TypeVar("R")
P = ParamSpec("P")


class StageServicer(Generic[B]):
    """What every stage's servicer holds: its backend, what the backend declared, and the slots its calls take.

    A servicer calls its backend through `in_slot`; work that does not touch the backend (decoding, checks,
    drawing) stays outside, so it overlaps with other calls.
    """

    def __init__(self, spec: BackendSpec[B], backend: B) -> None:
        self.info: BackendInfo = spec.info
        self.capabilities: Capabilities = spec.capabilities
        self.backend = backend
        self.slots = BackendSlots(spec.capabilities.max_concurrency)

    def in_slot(self, method: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`method(*args, **kwargs)`, one of the backend's, inside a backend slot (see BackendSlots)."""
        with self.slots.held():
            return method(*args, **kwargs)


class _StageInterceptor(grpc.ServerInterceptor):
    def __init__(self, service: str) -> None:
        self.service = service

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            rid = dict(context.invocation_metadata()).get(REQUEST_ID_METADATA) or uuid.uuid4().hex
            tokens = (request_id_var.set(str(rid)), _context.set(context))
            metrics.IN_FLIGHT.labels(self.service, method).inc()
            start = time.perf_counter()
            code, message, response = grpc.StatusCode.OK, "", None
            try:
                check_cancelled()
                response = inner(request, context)
            except InvalidInput as exc:
                code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            except NoPersonFound as exc:
                code, message = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
            except Cancelled as exc:
                expired = context.time_remaining() is not None and context.time_remaining() <= 0
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                message = str(exc)
            except Exception as exc:  # a bug or a failing backend: log it whole, answer without the trace
                log.exception("unhandled error in %s", method)
                code, message = (
                    grpc.StatusCode.INTERNAL,
                    f"{self.service} failed: {type(exc).__name__}: {exc}",
                )
            finally:
                seconds = time.perf_counter() - start
                metrics.IN_FLIGHT.labels(self.service, method).dec()
                metrics.LATENCY.labels(self.service, method).observe(seconds)
                metrics.REQUESTS.labels(self.service, method, code.name).inc()
                if code is not grpc.StatusCode.OK:
                    metrics.ERRORS.labels(self.service, method, code.name).inc()
                metrics.record_gpu_memory(self.service)
                log_event(
                    log,
                    f"{method} {code.name}",
                    method=method,
                    code=code.name,
                    seconds=round(seconds, 4),
                    **({"error": message} if message else {}),
                )
                request_id_var.reset(tokens[0])
                _context.reset(tokens[1])
            if code is not grpc.StatusCode.OK:
                context.abort(code, message)
            return response

        return grpc.unary_unary_rpc_method_handler(
            wrapper,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def build_server(
    service: str,
    full_name: str,
    register: Callable[[object, grpc.Server], None],
    servicer: object,
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 4,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A started server for `servicer` on host:port (0 = a free port), SERVING in grpc.health.v1."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=service),
        interceptors=[_StageInterceptor(service)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Clients reconnect every few minutes, so pods added by a scale-up get their share of calls.
            ("grpc.max_connection_age_ms", 300_000),
            ("grpc.max_connection_age_grace_ms", 60_000),
        ],
    )
    register(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"{service}: cannot listen on {host}:{port} (in use?)")
    server.start()
    for name in ("", full_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer


def stage_builder(
    stage: str,
    register: Callable[[Any, grpc.Server], None],
    servicer: Callable[[BackendSpec[B], B], object],
    backends: Mapping[str, BackendSpec[B]],
    refuse: Callable[[BackendSpec[B]], str | None] | None = None,
) -> Callable[..., tuple[grpc.Server, int, health.HealthServicer]]:
    """The `build_server` of a stage: load the chosen backend, wrap it in the stage's servicer, start serving
    (under the stage's service name of the vocabulary).

    `refuse(spec)` says why the stage cannot serve with a backend (from its declared capabilities), or None: such
    a backend is refused at start, before its weights load, and `auto` passes it by.
    """

    def why_not(spec: BackendSpec[B]) -> str | None:
        return refuse(spec) if refuse is not None else None

    def build(
        backend: str = "auto",
        host: str = "127.0.0.1",
        port: int = 0,
        device: str = "cpu",
        precision: str = "fp32",
        max_workers: int = 4,
    ) -> tuple[grpc.Server, int, health.HealthServicer]:
        if backend in backends and (reason := why_not(backends[backend])):
            raise ValueError(f"the {stage} stage cannot serve with backend {backend!r}: {reason}")
        usable = {name: spec for name, spec in backends.items() if why_not(spec) is None}
        info, impl = select_backend(usable, backend, device, precision)
        metrics.BACKEND.labels(stage, info.name, info.kind, info.version).set(1)
        spec = replace(usable[info.name], info=info)  # info: the licence of the files it loaded
        return build_server(
            stage, SERVICE_NAMES[stage], register, servicer(spec, impl), host, port, max_workers
        )

    return build


def run_until_signal(
    server: grpc.Server, health_servicer: health.HealthServicer, service: str, grace: float = 10
) -> None:
    """Block until SIGTERM/SIGINT, then report NOT_SERVING and drain in-flight calls for `grace` seconds."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    log_event(log, f"{service} stopping", grace_seconds=grace)
    server.stop(grace).wait()


def main(stage: str, build: Callable[..., tuple[grpc.Server, int, health.HealthServicer]]) -> int:
    """The entry point of `python -m services.STAGE`: settings from the environment, serve until a signal.

    `build(backend=, host=, port=, device=, precision=, max_workers=)` loads the backend and starts the server.
    A backend whose weights are missing ends the process at start with the message that names them.
    """
    from vton.runtime.config import StageSettings
    from vton.runtime.errors import WeightsMissing
    from vton.runtime.logs import configure

    settings = StageSettings.from_env(stage)
    configure(stage)
    try:
        server, port, health_servicer = build(
            backend=settings.backend,
            host=settings.host,
            port=settings.grpc_port,
            device=settings.device,
            precision=settings.precision,
            max_workers=settings.max_workers,
        )
    except (WeightsMissing, ValueError, OSError) as exc:
        log.error("%s cannot start: %s", stage, exc)
        print(f"vton {stage}: cannot start: {exc}", file=sys.stderr)
        return 2
    metrics.serve_metrics(settings.metrics_port, settings.host)
    log_event(
        log, f"{stage} serving", port=port, metrics_port=settings.metrics_port, backend=settings.backend
    )
    run_until_signal(server, health_servicer, stage)
    return 0
