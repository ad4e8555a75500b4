"""`vton up` in a subprocess, as an operator runs it, for the integration and reliability tests: free ports, its
own data directory, its output read by a thread (so restarts logged at any time never fill the pipe), the API key
it printed, its processes found by name for kill -9 and memory readings, and a client that submits jobs and
follows them through restarts of the API."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port_block
from vton.runtime.vocab import STAGES
from vton_cli.s3server import free_s3_port

REPO = Path(__file__).resolve().parents[1]
VTON = [sys.executable, "-m", "vton_cli.cli"]  # the `vton` console script's own entry point
FINISHED = ("succeeded", "failed")


class VtonUp:
    """One `vton up`. `start()` returns once it printed that it is ready; `processes()` finds its children.

    It stores its API key for the CLI under $VTON_CONFIG_DIR: the caller's when set, else a folder of the data
    directory (never the user's own credentials file)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        base = free_port_block(16)
        self.api_port, self.grpc_base, self.metrics_base = base, base + 1, base + 10
        self.s3_port = free_s3_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.supervisor_url = f"http://127.0.0.1:{self.metrics_base + len(STAGES)}/metrics"
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.api_key = ""
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 240) -> VtonUp:
        cmd = [
            *VTON,
            "up",
            "--port",
            str(self.api_port),
            "--grpc-base-port",
            str(self.grpc_base),
            "--metrics-base-port",
            str(self.metrics_base),
            "--s3-port",
            str(self.s3_port),
            "--data-dir",
            str(self.data_dir),
        ]
        self.output = []
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "VTON_CONFIG_DIR": os.environ.get("VTON_CONFIG_DIR") or str(self.data_dir / "config"),
                **self.env,
            },
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self.wait_for_output("ready. API on", timeout):
            self.kill()
            raise AssertionError("vton up did not become ready:\n" + self.text)
        # "vton: API key KEY (tenant default; ...)", printed before "ready"
        self.api_key = next(line.split()[3] for line in self.output if line.startswith("vton: API key"))
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.output.append(line)

    @property
    def headers(self) -> dict[str, str]:
        """The headers of a request with the API key `vton up` printed."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, **options: object) -> httpx.Client:
        """An HTTP client of the API whose requests carry that key, as a shop's would."""
        return httpx.Client(base_url=self.url, headers=self.headers, **options)  # type: ignore[arg-type]

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for_output(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader's last lines
                return needle in self.text
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, as Ctrl-C or a service manager does; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        """Tear-down after a failure: every process of this platform, at once."""
        for pid in self.processes().values():
            _signal(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def processes(self) -> dict[str, int]:
        """The children of `vton up` by name (s3, the stages, orchestrator) -> pid."""
        found = {}
        for pid in _children(self.proc.pid):
            cmdline = _cmdline(pid)
            if not cmdline:
                continue
            if Path(cmdline[0]).name == "weed":
                found["s3"] = pid
            elif "-m" in cmdline:
                module = cmdline[cmdline.index("-m") + 1]
                found[module.removeprefix("services.")] = pid
        return found

    def kill9(self, name: str) -> int:
        """kill -9 of one process; its pid."""
        pid = self.processes()[name]
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.processes().get(name)
            if pid is not None and pid != old_pid:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"{name} was not restarted:\n{self.text[-3000:]}")

    def memory(self) -> dict[str, int]:
        """Resident memory (bytes) of `vton up` and each of its processes."""
        pids = {"vton up": self.proc.pid, **self.processes()}
        return {name: _rss(pid) for name, pid in pids.items()}


def _children(ppid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: the fields after its last ")"
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == ppid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@dataclass
class JobLedger:
    """Every submission and what became of it: what a shop's client sees through restarts and outages."""

    url: str
    api_key: str
    person: bytes
    garment: bytes
    accepted: dict[str, float] = field(default_factory=dict)  # job id -> when it was accepted (monotonic)
    refused: int = 0  # submissions answered with an error or not answered (the API restarting)
    # requests answered 429 (the key's rate or the queue's bound), retried after Retry-After
    rate_limited: int = 0
    finished: dict[str, dict] = field(default_factory=dict)  # job id -> the finished job

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def submit(self, retry_s: float = 120) -> str:
        """POST one job, retrying while the API is down or refuses (503), or after the wait a 429 names; its
        id once accepted."""
        deadline = time.monotonic() + retry_s
        while True:
            pause = 0.5
            try:
                response = httpx.post(
                    self.url + "/v1/tryon",
                    files={"person": ("person.png", self.person), "garment": ("garment.jpg", self.garment)},
                    data={"category": "upper_body"},
                    headers=self.headers,
                    timeout=60,
                )
                if response.status_code == 202:
                    job_id = response.json()["id"]
                    self.accepted[job_id] = time.monotonic()
                    return job_id
                # only "come back later" is expected
                assert response.status_code in (429, 503), response.text
                pause = self._retry_after(response, pause)
            except httpx.HTTPError:
                pass
            self.refused += 1
            assert time.monotonic() < deadline, "the API did not accept a job for too long"
            time.sleep(pause)

    def _retry_after(self, response: httpx.Response, default: float) -> float:
        """How long to wait before the next request: what a 429 says, else `default`."""
        if response.status_code != 429:
            return default
        self.rate_limited += 1
        return float(response.headers.get("Retry-After", default))

    def follow(self, timeout: float, every_s: float = 0.5) -> None:
        """Poll every accepted job until it finishes or `timeout` passes (through restarts of the API)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while time.monotonic() < deadline:
                pending = [job_id for job_id in self.accepted if job_id not in self.finished]
                if not pending:
                    return
                for job_id in pending:
                    try:
                        response = client.get(f"{self.url}/v1/jobs/{job_id}")
                    except httpx.HTTPError:
                        break  # the API is restarting: try again in a moment
                    if response.status_code == 429:  # polling many jobs passes the key's rate
                        time.sleep(self._retry_after(response, every_s))
                        break
                    assert response.status_code == 200, f"job {job_id} is gone: {response.text}"
                    job = response.json()
                    if job["status"] in FINISHED:
                        self.finished[job_id] = job
                time.sleep(every_s)

    def failed(self) -> dict[str, str]:
        return {i: j["error"] for i, j in self.finished.items() if j["status"] == "failed"}

    def summary(self) -> dict[str, int]:
        """Accepted, finished, failed with a message, lost (accepted and never finished)."""
        failed = self.failed()
        return {
            "accepted": len(self.accepted),
            "succeeded": len(self.finished) - len(failed),
            "failed_with_message": sum(1 for e in failed.values() if e),
            "lost": len(self.accepted) - len(self.finished) + sum(1 for e in failed.values() if not e),
        }

    def latencies(self) -> list[float]:
        """Submit-to-finish seconds of every finished job (acceptance to end, as the server timed it), sorted."""
        return sorted(job["timings"]["total_s"] for job in self.finished.values())
