"""Fixtures of the orchestrator's tests: a real SeaweedFS S3 server, buckets, settings, PostgreSQL by URL."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from orchestrator.storage import Storage
from vton_cli.s3server import SeaweedS3, free_s3_port

ACCESS_KEY = "vtontest"
SECRET_KEY = "test-secret-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> SeaweedS3:
    """One real S3 server for the session (SeaweedFS on free ports); each test takes its own bucket."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"), free_s3_port(), ACCESS_KEY, SECRET_KEY)
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def bucket_name() -> str:
    return f"vton-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def storage(s3_server: SeaweedS3, bucket_name: str) -> Storage:
    """A Storage on a fresh bucket that does not exist yet."""
    return Storage(
        bucket_name,
        endpoint=s3_server.endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        url_ttl_s=600,
    )


@pytest.fixture
def settings(tmp_path: Path, s3_server: SeaweedS3, bucket_name: str) -> Settings:
    """Settings for an app on a fresh SQLite file and a fresh bucket; the stages point at closed ports."""
    return Settings(
        data_dir=tmp_path,
        s3_endpoint=s3_server.endpoint,
        s3_bucket=bucket_name,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        stage_addrs={s: "127.0.0.1:9" for s in ("pose", "densepose", "parsing", "warp", "diffusion")},
        workers=0,
        startup_s3_wait_s=5,
        stage_timeout_s=10,
        readiness_timeout_s=0.5,
    )


def postgres_url() -> str | None:
    return os.environ.get("VTON_TEST_POSTGRES_URL") or None
