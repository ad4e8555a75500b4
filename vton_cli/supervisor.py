"""Keeps `vton up`'s processes running: a child that exits is started again after a backoff.

Each child has a watcher thread. A child that exits on its own (a crash, kill -9, the OOM killer) is restarted
after a delay that doubles with each quick crash in a row (0.5 s, 1 s, 2 s ... up to 30 s); a run longer than
`stable_after_s` counts as healthy and resets the count. After `max_fast_crashes` quick crashes in a row the
supervisor gives up on the child and says so (`vton up` then stops the platform with the child's log): a child
that cannot stay up (a port taken, a broken install) is not restarted forever. A child stopped on purpose
(`stop`) is not restarted; one restarted on purpose (`restart`) is started again without counting a crash.

Every restart is logged and counted in Prometheus metrics the supervisor serves on its own port:
`vton_process_restarts_total{process}` and `vton_process_up{process}`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Service(Protocol):
    """A process the supervisor can start, watch and stop."""

    def start(self) -> object: ...

    def exit_code(self) -> int | None:
        """None while the process runs; its exit code (negative: the signal) once it has ended."""

    def stop(self, timeout: float) -> None: ...


class Process:
    """One child process: its command, its environment on top of ours, its log file (appended to)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.cmd, self.env, self.log_path = cmd, env, log_path
        self._proc: subprocess.Popen | None = None
        self._terminated = False

    def start(self) -> Process:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                self.cmd,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches `vton up` alone, which stops the children in order
            )
        self._terminated = False
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None  # poll() also reaps a dead child

    def terminate(self) -> None:
        """SIGTERM without waiting (several children then stop at once). Sent once: a second SIGTERM tells
        the orchestrator to skip its drain."""
        if self._proc is not None and self._proc.poll() is None and not self._terminated:
            self._proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL when it is still there after `timeout` seconds."""
        if self._proc is None:
            return
        self.terminate()
        try:
            self._proc.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    stable_after_s: float = 30.0  # a run at least this long is not a quick crash
    max_fast_crashes: int = 5  # quick crashes in a row before giving up

    def backoff(self, fast_crashes: int) -> float:
        """The wait before the restart that follows the `fast_crashes`-th quick crash in a row."""
        return min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(0, fast_crashes - 1))


class SupervisorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "vton_process_restarts",
            "Restarts of a process of `vton up` after it exited on its own",
            ["process"],
            registry=self.registry,
        )
        self.up = Gauge(
            "vton_process_up", "Whether the process runs (1) or not (0)", ["process"], registry=self.registry
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None


class _Child:
    def __init__(self, name: str, service: Service) -> None:
        self.name, self.service = name, service
        self.started_at = 0.0
        self.fast_crashes = 0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None


class Supervisor:
    """Starts children, restarts the ones that exit, stops them on request. `gave_up` is set (and `failure`
    names the child) when a child crashed quickly too many times in a row."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        log: Callable[[str], None] = print,
        metrics: SupervisorMetrics | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.log = log
        self.metrics = metrics or SupervisorMetrics()
        self.poll_s = poll_s
        self.children: dict[str, _Child] = {}
        self.gave_up = threading.Event()
        self.failure: str | None = None

    def start(self, name: str, service: Service) -> None:
        """Start `service` (errors go to the caller: a child that cannot start at all is not retried here)."""
        child = _Child(name, service)
        self.children[name] = child
        service.start()
        child.started_at = time.monotonic()
        self.metrics.up.labels(name).set(1)

    def exit_code(self, name: str) -> int | None:
        return self.children[name].service.exit_code()

    def watch(self) -> None:
        """From now on, restart every child that exits on its own."""
        for child in self.children.values():
            if child.thread is None:
                child.thread = threading.Thread(
                    target=self._watch, args=(child,), name=f"supervise-{child.name}", daemon=True
                )
                child.thread.start()

    def stop(self, names: list[str], timeout: float) -> None:
        """Stop these children together (no restart): SIGTERM to each, then wait for them all."""
        children = [self.children[n] for n in names if n in self.children]
        for child in children:
            child.stopping.set()
        for child in children:
            terminate = getattr(child.service, "terminate", None)
            if terminate is not None:
                terminate()
        deadline = time.monotonic() + timeout
        for child in children:
            child.service.stop(max(0.1, deadline - time.monotonic()))
            self.metrics.up.labels(child.name).set(0)
            if child.thread is not None:
                child.thread.join(5)

    def restart(self, name: str, timeout: float, down_s: float = 0.0) -> None:
        """Stop a child on purpose and start it again as it was, `down_s` seconds after the stop began (not a
        crash: no backoff, not counted); watched again if it was watched."""
        child = self.children[name]
        began = time.monotonic()
        self.stop([name], timeout)
        time.sleep(max(0.0, down_s - (time.monotonic() - began)))
        self.start(name, child.service)
        if child.thread is not None:
            self.watch()

    def _watch(self, child: _Child) -> None:
        while not child.stopping.is_set():
            code = child.service.exit_code()
            if code is None:
                child.stopping.wait(self.poll_s)
                continue
            if child.stopping.is_set():
                return
            self.metrics.up.labels(child.name).set(0)
            ran = time.monotonic() - child.started_at
            if not self._restart(child, f"exited with code {code} after {ran:.1f} s", ran):
                return

    def _restart(self, child: _Child, what: str, ran: float) -> bool:
        """Start the child again after its backoff, retrying failed starts; False when given up or stopping."""
        while True:
            child.fast_crashes = child.fast_crashes + 1 if ran < self.policy.stable_after_s else 0
            if child.fast_crashes >= self.policy.max_fast_crashes:
                self.failure = child.name
                self.log(
                    f"vton: {child.name} {what}; giving up after {child.fast_crashes} quick crashes in a row"
                )
                self.gave_up.set()
                return False
            delay = self.policy.backoff(child.fast_crashes)
            self.log(f"vton: {child.name} {what}; restarting in {delay:g} s")
            if child.stopping.wait(delay):
                return False
            try:
                child.service.start()
            except Exception as exc:  # e.g. the S3 server did not answer in time: another quick crash
                what, ran = f"did not start again ({exc})", 0.0
                continue
            child.started_at = time.monotonic()
            self.metrics.restarts.labels(child.name).inc()
            self.metrics.up.labels(child.name).set(1)
            self.log(f"vton: {child.name} restarted (pid {getattr(child.service, 'pid', '?')})")
            return True
