"""The typed HTTP client of the platform's API (what the CLI, the demo and the evaluation use).

Every request carries the API key (`Authorization: Bearer`): the one given, else the one stored for the server
(vton_cli.credentials); the admin calls (keys) carry the admin key the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from vton.runtime.vocab import API_PORT
from vton_cli.credentials import credentials_path, stored_key

DEFAULT_SERVER = f"http://127.0.0.1:{API_PORT}"
# How often `wait` and `wait_batch` ask, in seconds: a job's stages end within seconds, a batch's jobs over minutes.
JOB_POLL_S, BATCH_POLL_S = 0.25, 0.5


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

    @property
    def progress(self) -> tuple[str, list[tuple[str, str]]]:
        """What a waiting client reports each change of: the job's status and every stage's."""
        return self.status, [(s.name, s.status) for s in self.stages]

    @property
    def progress_summary(self) -> str:
        return f"last status {self.status}"

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


@dataclass
class BatchJob:
    id: str
    person: int  # index into Batch.people
    garment: int  # index into Batch.garments
    status: str
    result_url: str | None = None
    error: str | None = None


@dataclass
class Batch:
    """A catalog batch: its people and garments (name, key, url; a garment's category), every job, the manifest."""

    id: str
    status: str  # queued | running | finished
    total: int
    counts: dict[str, int]
    people: list[dict]
    garments: list[dict]
    jobs: list[BatchJob]
    manifest_url: str | None = None
    manifest_csv_url: str | None = None
    error: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def ended(self) -> int:
        """Jobs that have ended (succeeded or failed)."""
        return self.counts.get("succeeded", 0) + self.counts.get("failed", 0)

    @property
    def progress(self) -> tuple[str, list[tuple[str, int]]]:
        """What a waiting client reports each change of: the batch's status and its count of jobs per status."""
        return self.status, sorted(self.counts.items())

    @property
    def progress_summary(self) -> str:
        return f"{self.ended}/{self.total} ended"

    @classmethod
    def from_json(cls, data: dict) -> Batch:
        return cls(
            id=data["id"],
            status=data["status"],
            total=data["total"],
            counts=dict(data.get("counts") or {}),
            people=list(data.get("people") or []),
            garments=list(data.get("garments") or []),
            jobs=[
                BatchJob(j["id"], j["person"], j["garment"], j["status"], j.get("result_url"), j.get("error"))
                for j in data.get("jobs") or []
            ],
            manifest_url=data.get("manifest_url"),
            manifest_csv_url=data.get("manifest_csv_url"),
            error=data.get("error"),
            raw=data,
        )


@dataclass
class ApiKeyInfo:
    id: str
    tenant: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    key: str | None = None  # the key itself: only when it was just created
    webhook_secret: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> ApiKeyInfo:
        return cls(
            id=data["id"],
            tenant=data["tenant"],
            name=data.get("name", ""),
            created_at=data["created_at"],
            last_used_at=data.get("last_used_at"),
            revoked_at=data.get("revoked_at"),
            key=data.get("key"),
            webhook_secret=data.get("webhook_secret"),
        )


_Polled = TypeVar("_Polled", Job, Batch)


def _poll(
    fetch: Callable[[], _Polled], on_update: Callable[[_Polled], None] | None, timeout: float, poll: float
) -> _Polled:
    """`fetch()` a job or batch until it is finished, calling `on_update` whenever its progress changes;
    TimeoutError (saying how far it got) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        current = fetch()
        if on_update and current.progress != last:
            on_update(current)
        last = current.progress
        if current.finished:
            return current
        if time.monotonic() > deadline:
            what = type(current).__name__.lower()
            raise TimeoutError(
                f"{what} {current.id} did not finish within {timeout:.0f} s ({current.progress_summary})"
            )
        time.sleep(poll)


class VtonClient:
    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        timeout: float = 60.0,
        api_key: str | None = None,
        admin_key: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.api_key = api_key or stored_key(self.server, "api_key")
        self.admin_key = admin_key or stored_key(self.server, "admin_key")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = httpx.Client(base_url=self.server, timeout=timeout, headers=headers)

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
            message = str(body.get("error") or body.get("detail") or response.reason_phrase)
            if response.status_code == 401:
                message += (
                    f" (keys for {self.server} come from VTON_API_KEY / VTON_ADMIN_KEY or "
                    f"{credentials_path()}, where `vton up` stores them)"
                )
            raise ApiError(response.status_code, message)
        return body

    def ready(self) -> dict:
        return self._check(self.http.get("/readyz"))

    def submit(
        self,
        person: Path,
        garment: Path,
        category: str | None,
        seed: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        scheduler: str | None = None,
    ) -> Job:
        """A try-on of two photos; category None: inferred from the garment photo."""
        data = {}
        for key, value in (
            ("category", category),
            ("seed", seed),
            ("steps", steps),
            ("guidance_scale", guidance_scale),
            ("scheduler", scheduler),
        ):
            if value is not None:
                data[key] = str(value)
        files = {
            "person": (person.name, person.read_bytes()),
            "garment": (garment.name, garment.read_bytes()),
        }
        return Job.from_json(self._check(self.http.post("/v1/tryon", data=data, files=files)))

    def job(self, job_id: str) -> Job:
        return Job.from_json(self._check(self.http.get(f"/v1/jobs/{job_id}")))

    def wait(self, job_id: str, on_update: Callable[[Job], None] | None = None, timeout: float = 900) -> Job:
        """Poll the job until it finishes, calling `on_update` whenever its state changes."""
        return _poll(lambda: self.job(job_id), on_update, timeout, JOB_POLL_S)

    def submit_objects(self, person: str, garment: str, category: str, **options) -> Job:
        """A try-on of two of the tenant's objects (`s3://...` or keys below its prefix), nothing uploaded."""
        body = {"person": person, "garment": garment, "category": category}
        body |= {name: value for name, value in options.items() if value is not None}
        return Job.from_json(self._check(self.http.post("/v1/tryon", json=body)))

    def submit_batch(
        self,
        people: list[Path],
        garments: list[Path],
        categories: list[str | None] | None = None,
        **options,
    ) -> str:
        """Upload a batch: every garment on every person. `categories` has one entry per garment (None: the
        batch's `category` option, else inferred from the photo). Returns the batch id."""
        files = [("people", (p.name, p.read_bytes())) for p in people]
        files += [("garments", (g.name, g.read_bytes())) for g in garments]
        data: dict[str, str | list[str]] = {k: str(v) for k, v in options.items() if v is not None}
        if categories and any(categories):
            data["categories"] = [c or "" for c in categories]
        return self._check(self.http.post("/v1/batches", data=data, files=files))["id"]

    def batch(self, batch_id: str) -> Batch:
        return Batch.from_json(self._check(self.http.get(f"/v1/batches/{batch_id}")))

    def wait_batch(
        self, batch_id: str, on_update: Callable[[Batch], None] | None = None, timeout: float = 3600
    ) -> Batch:
        """Poll the batch until it is finished (its manifest written), calling `on_update` on every change."""
        return _poll(lambda: self.batch(batch_id), on_update, timeout, BATCH_POLL_S)

    def put_object(self, key: str, path: Path) -> dict:
        """Store a photo at `tenants/<tenant>/<key>`; its description (key, uri, size, url)."""
        return self._check(self.http.put(f"/v1/objects/{key}", content=path.read_bytes()))

    # --- API keys (the admin routes) --------------------------------------------------------------------------

    def _admin(self, method: str, path: str, **kwargs) -> dict:
        if not self.admin_key:
            raise ApiError(
                401,
                f"no admin key for {self.server}: set VTON_ADMIN_KEY (the orchestrator's) or run `vton up`, "
                f"which stores it in {credentials_path()}",
            )
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return self._check(self.http.request(method, path, headers=headers, **kwargs))

    def create_key(
        self, tenant: str, name: str = "", rate_per_s: float | None = None, burst: int | None = None
    ) -> ApiKeyInfo:
        body = {"tenant": tenant, "name": name, "rate_per_s": rate_per_s, "burst": burst}
        return ApiKeyInfo.from_json(self._admin("POST", "/v1/admin/keys", json=body))

    def list_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        params = {"tenant": tenant} if tenant else {}
        return [ApiKeyInfo.from_json(k) for k in self._admin("GET", "/v1/admin/keys", params=params)["keys"]]

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        return ApiKeyInfo.from_json(self._admin("DELETE", f"/v1/admin/keys/{key_id}"))

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
