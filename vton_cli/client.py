"""The typed HTTP client of the platform's API (what the CLI, the demo and the evaluation use)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from vton.runtime.vocab import API_PORT

DEFAULT_SERVER = f"http://127.0.0.1:{API_PORT}"


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


@dataclass
class StageStatus:
    name: str
    status: str
    backend: str = ""
    backend_kind: str = ""
    seconds: float | None = None


@dataclass
class Job:
    id: str
    status: str  # queued | running | succeeded | failed
    stages: list[StageStatus] = field(default_factory=list)
    result_url: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    @classmethod
    def from_json(cls, data: dict) -> Job:
        stages = []
        for name, st in (data.get("stages") or {}).items():
            backend = st.get("backend") or {}
            stages.append(
                StageStatus(
                    name,
                    st.get("status", ""),
                    backend.get("name", ""),
                    backend.get("kind", ""),
                    st.get("seconds"),
                )
            )
        return cls(
            id=data["id"],
            status=data["status"],
            stages=stages,
            result_url=data.get("result_url"),
            artifacts=dict(data.get("artifacts") or {}),
            error=data.get("error"),
            raw=data,
        )


class VtonClient:
    def __init__(self, server: str = DEFAULT_SERVER, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, timeout=timeout)

    def __enter__(self) -> VtonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        if response.status_code >= 400:
            message = body.get("error") or body.get("detail") or response.reason_phrase
            raise ApiError(response.status_code, str(message))
        return body

    def ready(self) -> dict:
        return self._check(self.http.get("/readyz"))

    def submit(
        self,
        person: Path,
        garment: Path,
        category: str,
        seed: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> Job:
        data = {"category": category}
        for key, value in (("seed", seed), ("steps", steps), ("guidance_scale", guidance_scale)):
            if value is not None:
                data[key] = str(value)
        files = {
            "person": (person.name, person.read_bytes()),
            "garment": (garment.name, garment.read_bytes()),
        }
        return Job.from_json(self._check(self.http.post("/v1/tryon", data=data, files=files)))

    def job(self, job_id: str) -> Job:
        return Job.from_json(self._check(self.http.get(f"/v1/jobs/{job_id}")))

    def wait(
        self,
        job_id: str,
        on_update: Callable[[Job], None] | None = None,
        timeout: float = 900,
        poll: float = 0.25,
    ) -> Job:
        """Poll the job until it finishes, calling `on_update` whenever its state changes."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            job = self.job(job_id)
            state = (job.status, [(s.name, s.status) for s in job.stages])
            if on_update and state != last:
                on_update(job)
            last = state
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} did not finish within {timeout:.0f} s (last status {job.status})"
                )
            time.sleep(poll)

    def download(self, url: str) -> bytes:
        response = httpx.get(url, timeout=60)
        if response.status_code != 200:
            raise ApiError(response.status_code, f"download of {url.split('?')[0]} failed")
        return response.content

    def save_artifacts(self, job: Job, folder: Path) -> None:
        """Every stage's artifact of `job` under its own file name, and the job's JSON as job.json."""
        folder.mkdir(parents=True, exist_ok=True)
        for url in job.artifacts.values():
            (folder / Path(url.split("?")[0]).name).write_bytes(self.download(url))
        (folder / "job.json").write_text(json.dumps(job.raw, indent=2))
