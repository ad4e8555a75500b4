"""A stage service's settings, read from the environment (the chart and `vton up` set them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

STAGES = ("pose", "densepose", "parsing", "warp", "diffusion")
DEFAULT_GRPC_PORTS = {"pose": 50051, "densepose": 50052, "parsing": 50053, "warp": 50054, "diffusion": 50055}
DEFAULT_METRICS_PORTS = {"pose": 9101, "densepose": 9102, "parsing": 9103, "warp": 9104, "diffusion": 9105}


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
            grpc_port=int(env.get("VTON_GRPC_PORT", DEFAULT_GRPC_PORTS[stage])),
            metrics_port=int(env.get("VTON_METRICS_PORT", DEFAULT_METRICS_PORTS[stage])),
            backend=env.get("VTON_BACKEND", "auto"),
            device=env.get("VTON_DEVICE", "cpu"),
            precision=env.get("VTON_PRECISION", "fp32"),
            max_workers=int(env.get("VTON_GRPC_WORKERS", "4")),
        )
