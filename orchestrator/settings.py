"""The orchestrator's settings, read from the environment (the chart and `vton up` set them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STAGE_NAMES = ("pose", "densepose", "parsing", "warp", "diffusion")
DEFAULT_STAGE_ADDRS = {
    "pose": "127.0.0.1:50051",
    "densepose": "127.0.0.1:50052",
    "parsing": "127.0.0.1:50053",
    "warp": "127.0.0.1:50054",
    "diffusion": "127.0.0.1:50055",
}


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "vton"


@dataclass(frozen=True)
class Settings:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    data_dir: Path = field(default_factory=default_data_dir)
    # None: a SQLite file in data_dir. PostgreSQL in a cluster: postgresql+psycopg://user:pw@host/db
    database_url: str | None = None
    s3_endpoint: str | None = None  # None: boto3's default (AWS)
    # The endpoint clients reach S3 through, when it differs from ours (a cluster's ingress): presigned
    # URLs are signed for this host, since SigV4 signs the Host header.
    s3_public_endpoint: str | None = None
    s3_bucket: str = "vton"
    s3_region: str = "us-east-1"
    # None: boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles).
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    stage_addrs: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STAGE_ADDRS))
    # Jobs run at once by this process; 0 accepts jobs without running them (another replica runs them).
    workers: int = 2
    stage_timeout_s: float = 120.0  # the deadline of each gRPC call
    max_working_pixels: int = 2_400_000  # larger photos go through the stages scaled down
    max_upload_bytes: int = 25 * 1024 * 1024
    url_ttl_s: int = 3600  # expiry of presigned URLs
    wait_timeout_s: float = 600.0  # how long POST /v1/tryon?wait=true waits before answering 202
    # A running job whose worker has not written a heartbeat for this long is taken over by another.
    job_lease_s: float = 60.0
    max_attempts: int = 3  # a job that kills its worker this many times fails instead of looping
    startup_s3_wait_s: float = 30.0  # how long startup retries creating the bucket while S3 comes up
    readiness_timeout_s: float = 2.0

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def number(name: str, default: float, kind: type = float):
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a {kind.__name__}") from None

        data_dir = Path(env["VTON_DATA_DIR"]).expanduser() if env.get("VTON_DATA_DIR") else default_data_dir()
        return cls(
            http_host=env.get("VTON_HTTP_HOST", "127.0.0.1"),
            http_port=number("VTON_HTTP_PORT", 8080, int),
            data_dir=data_dir,
            database_url=env.get("VTON_DATABASE_URL") or None,
            s3_endpoint=env.get("VTON_S3_ENDPOINT") or None,
            s3_public_endpoint=env.get("VTON_S3_PUBLIC_ENDPOINT") or None,
            s3_bucket=env.get("VTON_S3_BUCKET", "vton"),
            s3_region=env.get("VTON_S3_REGION", "us-east-1"),
            s3_access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            s3_secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            stage_addrs={
                stage: env.get(f"VTON_{stage.upper()}_ADDR", DEFAULT_STAGE_ADDRS[stage])
                for stage in STAGE_NAMES
            },
            workers=number("VTON_WORKERS", 2, int),
            stage_timeout_s=number("VTON_STAGE_TIMEOUT_S", 120.0),
            max_working_pixels=number("VTON_MAX_WORKING_PIXELS", 2_400_000, int),
            max_upload_bytes=number("VTON_MAX_UPLOAD_BYTES", 25 * 1024 * 1024, int),
            url_ttl_s=number("VTON_URL_TTL_S", 3600, int),
            wait_timeout_s=number("VTON_WAIT_TIMEOUT_S", 600.0),
            job_lease_s=number("VTON_JOB_LEASE_S", 60.0),
            max_attempts=number("VTON_JOB_MAX_ATTEMPTS", 3, int),
            startup_s3_wait_s=number("VTON_S3_STARTUP_WAIT_S", 30.0),
        )
