"""A stage service's settings, read from the environment (the chart and `vton up` set them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vton.runtime.vocab import GRPC_PORTS, METRICS_PORTS, STAGES


@dataclass(frozen=True)
class StageSettings:
    stage: str
    host: str
    grpc_port: int
    metrics_port: int
    backend: str
    device: str
    precision: str
    max_workers: int

    @classmethod
    def from_env(cls, stage: str) -> StageSettings:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")
        env = os.environ
        return cls(
            stage=stage,
            host=env.get("VTON_GRPC_HOST", "127.0.0.1"),
            grpc_port=int(env.get("VTON_GRPC_PORT", GRPC_PORTS[stage])),
            metrics_port=int(env.get("VTON_METRICS_PORT", METRICS_PORTS[stage])),
            backend=env.get("VTON_BACKEND", "auto"),
            device=env.get("VTON_DEVICE", "cpu"),
            precision=env.get("VTON_PRECISION", "fp32"),
            max_workers=int(env.get("VTON_GRPC_WORKERS", "4")),
        )
