"""vton_gpu_memory_bytes: every call a stage server answers updates its GPU memory gauges from torch.cuda's
allocator counters; a process that never initialised CUDA reports none (absent, not a misleading 0).

On this CPU machine torch.cuda's counters are replaced by stand-ins that say what a GPU process would; the last
test runs on a real GPU only (the lead's GPU machine: `pytest tests/unit/test_gpu_metrics.py`)."""

from __future__ import annotations

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from vton.runtime.server import build_server


def _gauge(service: str, kind: str) -> float | None:
    return REGISTRY.get_sample_value("vton_gpu_memory_bytes", {"service": service, "kind": kind})


def _one_call(service: str) -> None:
    """One gRPC call through a stage server (its own health check goes through the same interceptor)."""
    server, port, _health = build_server(
        service, f"vton.test.{service}", lambda _servicer, _server: None, None
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    finally:
        server.stop(0)


def test_a_cpu_process_reports_no_gpu_memory():
    assert not torch.cuda.is_initialized()
    _one_call("cpu-stage")
    assert (
        REGISTRY.get_sample_value(
            "vton_grpc_requests_total", {"service": "cpu-stage", "method": "Check", "code": "OK"}
        )
        == 1
    )
    assert all(_gauge("cpu-stage", kind) is None for kind in ("allocated", "reserved", "peak"))


def test_each_call_sets_allocated_reserved_and_peak_from_torch_cuda(monkeypatch):
    counters = {"allocated": 3 << 30, "reserved": 5 << 30, "peak": 4 << 30}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: counters["allocated"])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: counters["reserved"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: counters["peak"])
    _one_call("gpu-stage")
    assert {k: _gauge("gpu-stage", k) for k in counters} == {k: float(v) for k, v in counters.items()}
    counters["allocated"] = 1 << 30  # the next call frees memory: the gauge follows
    _one_call("gpu-stage")
    assert _gauge("gpu-stage", "allocated") == float(1 << 30)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_on_a_gpu_the_gauges_see_a_tensor_the_process_holds():
    held = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")  # 64 MiB
    _one_call("real-gpu-stage")
    assert _gauge("real-gpu-stage", "allocated") >= held.numel()
    assert _gauge("real-gpu-stage", "reserved") >= _gauge("real-gpu-stage", "allocated")
    assert _gauge("real-gpu-stage", "peak") >= held.numel()
