"""`vton up`: the whole platform on one machine, each service its own process on its own port.

Starts a real S3 server (SeaweedFS), the five stage services and the orchestrator, waits until every one is
healthy, keeps them running (vton_cli.supervisor restarts one that exits, with backoff), and stops them in order
on Ctrl-C or SIGTERM: the API first, then the stages, S3 last. Each process logs to DATA_DIR/logs/NAME.log
(SeaweedFS to DATA_DIR/s3/weed.log).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vton.runtime.vocab import API_PORT, GRPC_PORTS, METRICS_PORTS, STAGES
from vton_cli.credentials import first_api_key, platform_secrets, remember_platform
from vton_cli.s3server import DEFAULT_S3_PORT, SeaweedS3
from vton_cli.supervisor import Process, RestartPolicy, Supervisor

S3, ORCHESTRATOR = "s3", "orchestrator"  # the supervised processes besides the stages


def default_data_dir() -> Path:
    return Path(os.environ.get("VTON_DATA_DIR") or Path.home() / ".local" / "share" / "vton")


@dataclass
class PlatformConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    http_port: int = API_PORT
    # The vocabulary's ports, each block moved to start at its base port (tests run several platforms at once).
    grpc_base_port: int = min(GRPC_PORTS.values())
    metrics_base_port: int = min(METRICS_PORTS.values())
    s3_port: int = DEFAULT_S3_PORT
    backends: dict[str, str] = field(default_factory=dict)  # stage -> backend name; absent = auto
    workers: int = 2

    def grpc_port(self, stage: str) -> int:
        return self.grpc_base_port + GRPC_PORTS[stage] - min(GRPC_PORTS.values())

    def metrics_port(self, stage: str) -> int:
        return self.metrics_base_port + METRICS_PORTS[stage] - min(METRICS_PORTS.values())

    @property
    def supervisor_metrics_port(self) -> int:
        """The port after the stages' metrics block: the supervisor's restart counts."""
        return self.metrics_base_port + len(STAGES)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


def s3_credentials(data_dir: Path) -> tuple[str, str]:
    """This machine's S3 keys: from the environment, else made once and kept (mode 600) in the data dir."""
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    path = data_dir / "s3-credentials.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"access_key": "vton" + secrets.token_hex(8), "secret_key": secrets.token_hex(24)})
        )
        path.chmod(0o600)
    creds = json.loads(path.read_text())
    return creds["access_key"], creds["secret_key"]


class Platform:
    """The processes of one machine's platform under a Supervisor: started in order (S3, the stages, the API),
    restarted when one exits on its own, stopped in the reverse order."""

    def __init__(self, config: PlatformConfig, log=print, policy: RestartPolicy | None = None) -> None:
        self.config = config
        self.log = log
        self.logs_dir = config.data_dir / "logs"
        self.supervisor = Supervisor(policy, log=log)
        self.s3: SeaweedS3 | None = None
        self.api_key: str | None = None  # the first API key, once the orchestrator is ready

    def __enter__(self) -> Platform:
        try:
            self.start()
        except BaseException:
            self.stop()  # what had started stops before the error goes on
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- starting -------------------------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> None:
        cfg = self.config
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        access_key, secret_key = s3_credentials(cfg.data_dir)
        self.s3 = SeaweedS3(cfg.data_dir / "s3", cfg.s3_port, access_key, secret_key)
        self.supervisor.start(S3, self.s3)
        self.log(f"  s3            {self.s3.endpoint}  (SeaweedFS, data in {cfg.data_dir / 's3'})")
        for stage in STAGES:
            env = {
                "VTON_GRPC_HOST": cfg.host,
                "VTON_GRPC_PORT": str(cfg.grpc_port(stage)),
                "VTON_METRICS_PORT": str(cfg.metrics_port(stage)),
                "VTON_BACKEND": cfg.backends.get(stage, "auto"),
            }
            self._spawn(stage, [sys.executable, "-m", f"services.{stage}"], env)
        deadline = time.monotonic() + timeout
        for stage in STAGES:
            self._wait_grpc(stage, f"{cfg.host}:{cfg.grpc_port(stage)}", deadline)
            self.log(f"  {stage:<13} {cfg.host}:{cfg.grpc_port(stage)}  (metrics :{cfg.metrics_port(stage)})")
        env = {
            "VTON_HTTP_HOST": cfg.host,
            "VTON_HTTP_PORT": str(cfg.http_port),
            "VTON_DATA_DIR": str(cfg.data_dir),
            "VTON_S3_ENDPOINT": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "VTON_WORKERS": str(cfg.workers),
            # no load balancer to leave: a second is enough for waiting clients to get their answer
            "VTON_SHUTDOWN_DRAIN_S": "1",
            **{f"VTON_{s.upper()}_ADDR": f"{cfg.host}:{cfg.grpc_port(s)}" for s in STAGES},
            **platform_secrets(cfg.data_dir),
        }
        self._spawn(ORCHESTRATOR, [sys.executable, "-m", "orchestrator"], env)
        self._wait_http(ORCHESTRATOR, f"{cfg.api_url}/readyz", deadline)
        self.log(f"  api           {cfg.api_url}  (docs {cfg.api_url}/docs, metrics {cfg.api_url}/metrics)")
        self.api_key = first_api_key(cfg.api_url, cfg.data_dir)
        self.supervisor.metrics.serve(cfg.supervisor_metrics_port, cfg.host)
        self.log(f"  supervisor    restarts at http://{cfg.host}:{cfg.supervisor_metrics_port}/metrics")
        self.supervisor.watch()

    def restart(self, name: str, timeout: float = 120) -> None:
        """Stop one process (SIGTERM, as an operator's restart does) and start it again as it was started,
        waiting until it serves again. A restart on purpose: the supervisor does not count it as a crash."""
        self.supervisor.restart(name, timeout)
        deadline = time.monotonic() + timeout
        if name == ORCHESTRATOR:
            self._wait_http(name, f"{self.config.api_url}/readyz", deadline)
        elif name in STAGES:
            self._wait_grpc(name, f"{self.config.host}:{self.config.grpc_port(name)}", deadline)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.supervisor.start(name, Process(cmd, env, self.logs_dir / f"{name}.log"))

    def _check_alive(self, name: str) -> None:
        code = self.supervisor.exit_code(name)
        if code is not None:
            raise RuntimeError(f"{name} exited with code {code}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.s3.log_path if name == S3 and self.s3 else self.logs_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _wait_grpc(self, name: str, address: str, deadline: float) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                except grpc.RpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            self._wait_until(name, serving, f"become healthy on {address}", deadline)

    def _wait_http(self, name: str, url: str, deadline: float) -> None:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self._wait_until(name, ready, f"become ready at {url}", deadline)

    def _wait_until(self, name: str, ready: Callable[[], bool], what: str, deadline: float) -> None:
        """Poll `ready` until it holds; fail at once if the process exits, or with its log at the deadline."""
        while True:
            self._check_alive(name)
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not {what}:\n{self.log_tail(name)}")
            time.sleep(0.2)

    # -- running and stopping ---------------------------------------------------------------------------------
    def wait(self, stop: threading.Event) -> str | None:
        """Block until `stop` is set or the supervisor gave up on a process; the name of that process, else
        None."""
        while not stop.wait(0.5):
            if self.supervisor.gave_up.is_set():
                return self.supervisor.failure
        return None

    def stop(self, grace: float = 20) -> None:
        """The API first (it stops taking work and hands its running jobs back to the queue), then the stages
        it was calling, S3 last: each group is gone before the next is asked to stop."""
        for group in ([ORCHESTRATOR], list(reversed(STAGES)), [S3]):
            self.supervisor.stop(group, grace)
        self.supervisor.metrics.close()


def run_up(config: PlatformConfig) -> int:
    """`vton up`: start everything, print the addresses, stop it all on Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    platform = Platform(config, log=functools.partial(print, flush=True))
    print(f"vton: starting the platform (logs in {platform.logs_dir})", flush=True)
    try:
        with platform:
            stored = remember_platform(config.api_url, config.data_dir, platform.api_key)
            print(
                f"vton: API key {platform.api_key} (tenant default; stored for the CLI in {stored})",
                flush=True,
            )
            print(f"vton: ready. API on {config.api_url}. Ctrl-C stops it.", flush=True)
            gave_up = platform.wait(stop)
            if gave_up:
                print(
                    f"vton: {gave_up} keeps crashing; stopping:\n{platform.log_tail(gave_up)}",
                    file=sys.stderr,
                )
            else:
                print("vton: stopping", flush=True)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"vton: the platform could not start: {exc}", file=sys.stderr)
        return 1
    print("vton: stopped", flush=True)
    return 1 if gave_up else 0
