"""gRPC clients of the five stage services: deadlines, request ids, retries of UNAVAILABLE, health checks.

The orchestrator knows the stages only through the generated stubs of `vton.v1`; a stage's failure becomes
a StageError that names the step and carries the gRPC code and the job's error code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vton.runtime.logs import REQUEST_ID_METADATA
from vton.runtime.vocab import SERVICE_NAMES, STAGES, Stage
from vton.v1 import densepose_pb2_grpc, diffusion_pb2_grpc, parsing_pb2_grpc, pose_pb2_grpc, warp_pb2_grpc

# The same limit the stage servers set: a 1024x768 request carries several images and an 18-channel map.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# A stage restarting (or a pod being replaced) answers UNAVAILABLE for a moment: retry that alone, a few
# times with backoff. Every stage call is idempotent (same inputs, same seed, same answer).
# Round robin spreads calls over every pod behind a headless Service (dns:/// addresses) instead of one.
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": name} for name in SERVICE_NAMES.values()],
                "retryPolicy": {
                    "maxAttempts": 5,  # about 3 s of backoff in all: a pod replaced, a process restarted
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)

# gRPC code -> the error code the failed job carries (schemas.ERROR_HTTP_STATUS maps it to HTTP); others:
# "stage_error".
_ERROR_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_input",
    grpc.StatusCode.FAILED_PRECONDITION: "no_person",
    grpc.StatusCode.UNAVAILABLE: "stage_unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "stage_timeout",
}


# What a stage that is down or going away answers (refused connection, a server stopping mid-call): the same
# call succeeds once it is back. A deadline or an error of the stage's own is not retried.
_OUTAGE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class StageError(Exception):
    """A stage call failed. `step` is the pipeline step (agnostic_mask is a call to the parsing service)."""

    def __init__(self, step: str, service: str, code: grpc.StatusCode, message: str, seconds: float = 0.0):
        self.step, self.service, self.code, self.seconds = step, service, code, seconds
        self.error_code = _ERROR_CODES.get(code, "stage_error")
        self.message = message
        super().__init__(message)

    @property
    def transient(self) -> bool:
        """Whether the stage was unreachable rather than refusing this request."""
        return self.code in _OUTAGE_CODES

    @classmethod
    def from_rpc(
        cls, step: str, service: str, address: str, exc: grpc.RpcError, seconds: float
    ) -> StageError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            message = details  # the stage's own words: "no person found", "image: the file is not an image"
        elif code == grpc.StatusCode.UNAVAILABLE:
            message = f"the {service} stage ({address}) is unavailable: {details}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = f"the {service} stage ({address}) did not answer {step} within {seconds:.0f} s"
        else:
            message = f"the {service} stage failed in {step} ({code.name}): {details}"
        return cls(step, service, code, message, seconds)


@dataclass(frozen=True)
class StageHealth:
    stage: str
    address: str
    ok: bool
    status: str  # SERVING, NOT_SERVING, UNKNOWN, or the gRPC error code of the check itself
    detail: str = ""


class StageClients:
    """One channel per stage; channels connect lazily and reconnect on their own, so building is free."""

    def __init__(self, addresses: Mapping[str, str], *, timeout_s: float) -> None:
        missing = set(STAGES) - set(addresses)
        if missing:
            raise ValueError(f"no address for stage(s): {', '.join(sorted(missing))}")
        self.addresses = dict(addresses)
        self.timeout_s = timeout_s
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG),
            # requests up to a few MB may be replayed on a retry
            ("grpc.per_rpc_retry_buffer_size", 32 * 1024 * 1024),
            # A stage back after an outage is dialled again within 2 s (gRPC's default backoff grows to
            # 2 minutes, which would keep the breaker open that long after a 20 s outage).
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        self.channels = {
            stage: grpc.insecure_channel(addr, options=options) for stage, addr in self.addresses.items()
        }
        self.pose = pose_pb2_grpc.PoseServiceStub(self.channels[Stage.POSE])
        self.densepose = densepose_pb2_grpc.DensePoseServiceStub(self.channels[Stage.DENSEPOSE])
        self.parsing = parsing_pb2_grpc.ParsingServiceStub(self.channels[Stage.PARSING])
        self.warp = warp_pb2_grpc.WarpServiceStub(self.channels[Stage.WARP])
        self.diffusion = diffusion_pb2_grpc.DiffusionServiceStub(self.channels[Stage.DIFFUSION])

    def start(self, rpc: grpc.UnaryUnaryMultiCallable, request: Message, request_id: str) -> grpc.Future:
        """Send `request` without waiting: the call carries the deadline and the request id."""
        metadata = ((REQUEST_ID_METADATA, request_id),) if request_id else None
        return rpc.future(request, timeout=self.timeout_s, metadata=metadata)

    def check_stage(self, stage: str, timeout_s: float = 2.0) -> StageHealth:
        """grpc.health.v1 Check of one stage's service (or, when the server registered only the overall
        status "", of that), bounded by `timeout_s`."""
        stub = health_pb2_grpc.HealthStub(self.channels[stage])
        address = self.addresses[stage]
        try:
            try:
                response = stub.Check(
                    health_pb2.HealthCheckRequest(service=SERVICE_NAMES[stage]), timeout=timeout_s
                )
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError as exc:
            return StageHealth(stage, address, False, exc.code().name, exc.details() or "")
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return StageHealth(stage, address, status == "SERVING", status)

    def check(self, timeouts_s: float = 2.0) -> dict[str, StageHealth]:
        """check_stage of every stage at once."""
        with ThreadPoolExecutor(max_workers=len(self.channels)) as pool:
            futures = {stage: pool.submit(self.check_stage, stage, timeouts_s) for stage in self.channels}
            return {stage: future.result() for stage, future in futures.items()}

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
