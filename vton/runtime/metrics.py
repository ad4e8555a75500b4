"""Prometheus metrics of a stage service, served on their own HTTP port.

Defined once per process with a `service` label, so tests may run several stages in one process.
"""

from __future__ import annotations

import sys

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


GPU_MEMORY = Gauge(
    "vton_gpu_memory_bytes",
    "GPU memory of this process's PyTorch allocator after its latest call, by kind: allocated (held by "
    "tensors), reserved (held by the caching allocator), peak (most allocated since start); absent on a CPU",
    ["service", "kind"],
)


def record_gpu_memory(service: str) -> None:
    """Set vton_gpu_memory_bytes from torch.cuda's counters. A process that never initialised CUDA (a CPU
    backend, or torch not imported) sets nothing, so the series stay absent rather than a misleading 0."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    GPU_MEMORY.labels(service, "allocated").set(torch.cuda.memory_allocated())
    GPU_MEMORY.labels(service, "reserved").set(torch.cuda.memory_reserved())
    GPU_MEMORY.labels(service, "peak").set(torch.cuda.max_memory_allocated())


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on `port` (0 = do not serve)."""
    if port:
        start_http_server(port, addr=addr)
