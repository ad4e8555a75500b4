"""What the long fault tests share: the photos every job sends, a feeder that submits jobs at a steady pace in
the background, the platform run in this process (so a test can hold one of its processes down as long as it
likes), and the figures each test writes under out/reliability/ for docs/reliability.md."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port_block
from tests.vton_up import REPO, JobLedger
from vton_cli.platform import Platform, PlatformConfig
from vton_cli.s3server import free_s3_port

FIGURES = REPO / "out" / "reliability"
reliability = pytest.mark.reliability


def ledger_for(url: str, api_key: str, examples: Path) -> JobLedger:
    return JobLedger(
        url,
        api_key,
        (examples / "avatars" / "1.png").read_bytes(),
        (examples / "clothes" / "shirts" / "1_front.jpg").read_bytes(),
    )


class Feeder:
    """Submits a job every `every_s` seconds from a thread until stopped (a submission refused while the API or
    the store is down is retried by the ledger)."""

    def __init__(self, ledger: JobLedger, every_s: float) -> None:
        self.ledger, self.every_s = ledger, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(180)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.ledger.submit()
                self._stop.wait(self.every_s)
        except BaseException as exc:  # reported by __exit__ in the test's thread
            self.error = exc


def in_process_platform(data_dir: Path) -> Platform:
    """The platform `vton up` runs, with this process as its supervisor."""
    base = free_port_block(16)
    config = PlatformConfig(
        data_dir=data_dir,
        http_port=base,
        grpc_base_port=base + 1,
        metrics_base_port=base + 10,
        s3_port=free_s3_port(),
    )
    return Platform(config, log=lambda *a, **k: None)


def hold_down(platform: Platform, name: str, seconds: float) -> float:
    """Stop one process abruptly (SIGTERM, SIGKILL 0.1 s later), keep it down `seconds`, start it again; returns
    how long it was down (the S3 server's restart includes its start-up until S3 answers)."""
    started = time.monotonic()
    platform.supervisor.restart(name, timeout=0.1, down_s=seconds)
    return time.monotonic() - started


def record(name: str, figures: dict) -> None:
    """Write one test's figures (out/reliability/NAME.json) and print them for the log."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(figures)}")
