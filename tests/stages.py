"""The stage services started inside a test on free ports, their stubs, and a try-on passed from stage to stage.

`start` / `serve` / `running` / `serving` start a stage's own server (its `build_server`, as `python -m
services.STAGE` does) with a chosen backend, `stage_servers` all five for an orchestrator to call, `stub` is a
stage's client; `TryOnChain` builds each request from the answers before it, with the fields the orchestrator's
pipeline fills, so the tests call the stages as the platform does.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from orchestrator.pipeline import StageRequests
from vton.runtime.server import MAX_MESSAGE_BYTES
from vton.runtime.vocab import SERVICE_NAMES, STAGES
from vton.v1 import common_pb2, diffusion_pb2, parsing_pb2, pose_pb2, warp_pb2


def address(port: int) -> str:
    """The address of a stage server of this process."""
    return f"127.0.0.1:{port}"


def channel(port: int) -> grpc.Channel:
    """A channel to a stage server of this process that carries messages as large as the stages take."""
    return grpc.insecure_channel(
        address(port),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )


def stub(stage: str, chan: grpc.Channel) -> Any:
    """STAGE's generated client on CHAN: `<Service>Stub` of `vton.v1.<stage>_pb2_grpc`, e.g. PoseServiceStub."""
    service = SERVICE_NAMES[stage].rsplit(".", 1)[1]
    return getattr(importlib.import_module(f"vton.v1.{stage}_pb2_grpc"), f"{service}Stub")(chan)


def start(stage: str, backend: str = "auto", models: Path | None = None) -> tuple[grpc.Server, int]:
    """STAGE's server on a free port with BACKEND, its weights read from the models directory MODELS when given
    (the backend loads them at start), and the port. The caller stops the server."""
    with pytest.MonkeyPatch.context() as env:
        if models is not None:
            env.setenv("VTON_MODELS_DIR", str(models))
        server, port, _ = importlib.import_module(f"services.{stage}.service").build_server(
            backend=backend, port=0
        )
    return server, port


def serve(stage: str, backend: str = "auto", models: Path | None = None) -> tuple[grpc.Server, grpc.Channel]:
    """STAGE's server (see `start`) and a channel to it. The caller stops the server and closes the channel."""
    server, port = start(stage, backend, models)
    return server, channel(port)


@contextlib.contextmanager
def running(backends: Mapping[str, str], models: Path | None = None) -> Iterator[dict[str, int]]:
    """Each stage of BACKENDS started with its backend (see `start`) while the block runs: the ports by stage."""
    servers: list[grpc.Server] = []
    try:
        ports = {}
        for stage, backend in backends.items():
            server, ports[stage] = start(stage, backend, models)
            servers.append(server)
        yield ports
    finally:
        for server in servers:
            server.stop(0)


@contextlib.contextmanager
def serving(backends: Mapping[str, str], models: Path | None = None) -> Iterator[dict[str, grpc.Channel]]:
    """Each stage of BACKENDS running (see `running`) while the block runs: channels to them by stage."""
    with running(backends, models) as ports:
        channels = {stage: channel(port) for stage, port in ports.items()}
        try:
            yield channels
        finally:
            for chan in channels.values():
                chan.close()


@contextlib.contextmanager
def stage_servers() -> Iterator[dict[str, str]]:
    """The five stage services with their `auto` backends (the embedded ones on a fresh machine), in this process,
    for an orchestrator to call: their addresses by stage."""
    with running(dict.fromkeys(STAGES, "auto")) as ports:
        yield {stage: address(port) for stage, port in ports.items()}


@dataclass
class TryOnChain:
    """One try-on on its way through the stages: the inputs, and each stage's answer once it is known."""

    person: common_pb2.Image
    garment: common_pb2.Image
    options: common_pb2.TryOnOptions
    pose: Any = None  # pose_pb2.EstimatePoseResponse
    parse: Any = None  # parsing_pb2.ParseResponse
    agnostic: Any = None  # parsing_pb2.CreateAgnosticMaskResponse
    warped: Any = None  # warp_pb2.WarpGarmentResponse

    def analyse(self, channels: Mapping[str, grpc.Channel], timeout: float) -> TryOnChain:
        """Pose and parsing of the person, then its agnostic mask: what the orchestrator has before the warp."""
        parsing = stub("parsing", channels["parsing"])
        self.pose = stub("pose", channels["pose"]).EstimatePose(self.pose_request(), timeout=timeout)
        self.parse = parsing.Parse(self.parse_request(), timeout=timeout)
        self.agnostic = parsing.CreateAgnosticMask(self.agnostic_mask_request(), timeout=timeout)
        return self

    def pose_request(self) -> pose_pb2.EstimatePoseRequest:
        return pose_pb2.EstimatePoseRequest(image=self.person)

    def parse_request(self) -> parsing_pb2.ParseRequest:
        return parsing_pb2.ParseRequest(image=self.person, label_set="lip")

    def agnostic_mask_request(self) -> parsing_pb2.CreateAgnosticMaskRequest:
        return self._requests().agnostic_mask()

    def warp_request(self) -> warp_pb2.WarpGarmentRequest:
        return self._requests().warp(self.agnostic)

    def try_on_request(self) -> diffusion_pb2.TryOnRequest:
        return self._requests().try_on(self.agnostic, self.warped)

    def _requests(self) -> StageRequests:
        """The later steps' requests as the orchestrator's pipeline builds them."""
        return StageRequests(self.person, self.garment, self.options, self.pose, self.parse)
