"""Prometheus metrics of the orchestrator, in a registry of each app's own (tests build several apps)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("vton.orchestrator.metrics")

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class _JobsByStatus(Collector):
    """vton_jobs{status}: read from the job store at scrape time, so it is right across restarts and replicas."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self):
        family = GaugeMetricFamily("vton_jobs", "Jobs in the store, by status", labels=["status"])
        try:
            for status, n in self.counts().items():
                family.add_metric([status], n)
        except Exception as exc:  # a scrape must not fail because the database blinked
            log.warning("cannot count jobs for /metrics: %s", exc)
        yield family


class OrchestratorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # every metric of this app lives in its own registry
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, registry=self.registry)
        self.http_requests = counter(
            "vton_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
        )
        self.http_seconds = histogram(
            "vton_http_request_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
        )
        self.job_seconds = histogram(
            "vton_job_seconds",
            "Time from a worker taking a job to its end, by final status",
            ["status"],
            buckets=_JOB_BUCKETS,
        )
        self.stage_seconds = histogram(
            "vton_stage_seconds",
            "Latency of each pipeline step's gRPC call as the orchestrator sees it, by outcome",
            ["stage", "outcome"],
            buckets=_LATENCY_BUCKETS,
        )
        self.jobs_in_flight = gauge("vton_jobs_in_flight", "Jobs this process is running now")
        self.jobs_accepted = counter("vton_jobs_accepted", "Jobs accepted by POST /v1/tryon")
        self.dependency_up = gauge(
            "vton_dependency_up",
            "Whether a stage or the storage passes the workers' health checks (1) or not (0): no job is "
            "claimed while one is 0",
            ["dependency"],
        )
        self.job_retries = counter(
            "vton_job_retries",
            "Runs of a job started again because a stage or the storage was down",
            ["dependency"],
        )

    def watch_store(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_JobsByStatus(counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
