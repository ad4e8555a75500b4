"""Prometheus metrics of a stage service, served on their own HTTP port.

Defined once per process with a `service` label, so tests may run several stages in one process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter(
    "vton_grpc_requests", "gRPC requests handled, by method and status code", ["service", "method", "code"]
)
LATENCY = Histogram(
    "vton_grpc_request_seconds",
    "Time to answer a gRPC request",
    ["service", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("vton_grpc_requests_in_flight", "gRPC requests being handled now", ["service", "method"])
ERRORS = Counter(
    "vton_grpc_errors", "gRPC requests that ended in an error, by status code", ["service", "method", "code"]
)
BACKEND = Gauge(
    "vton_backend_info", "The backend this service runs (value 1)", ["service", "backend", "kind", "version"]
)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on `port` (0 = do not serve)."""
    if port:
        start_http_server(port, addr=addr)
