"""Fixtures of the orchestrator's tests: a real SeaweedFS S3 server, buckets, settings, PostgreSQL by URL, the real
stage services in this process, and API clients that hold a key of their own tenant."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orchestrator.app import create_app
from orchestrator.settings import Settings
from orchestrator.storage import Storage
from tests.stages import stage_servers
from vton.runtime.vocab import STAGES
from vton_cli.s3server import SeaweedS3, free_s3_port

ACCESS_KEY = "vtontest"
SECRET_KEY = "test-secret-" + secrets.token_hex(8)
KEY_PEPPER = "test-pepper-" + secrets.token_hex(8)
ADMIN_KEY = "test-admin-" + secrets.token_hex(8)
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> SeaweedS3:
    """One real S3 server for the session (SeaweedFS on free ports); each test takes its own bucket."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"), free_s3_port(), ACCESS_KEY, SECRET_KEY)
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def bucket_name(s3_server: SeaweedS3) -> Iterator[str]:
    """A fresh bucket's name; the bucket, if the test made it, is deleted after it: SeaweedFS gives every bucket
    a volume of its own and has about as many as the disk has free GBs, fewer than this suite has tests."""
    name = f"vton-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            if keys := [{"Key": o["Key"]} for o in page.get("Contents", [])]:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise


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
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VTON_* or AWS_* variable of the developer's shell reaches the settings a test builds."""
    for name in list(os.environ):
        if name.startswith(("VTON_", "AWS_")) and not name.startswith("VTON_TEST_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def settings(clean_env, tmp_path: Path, s3_server: SeaweedS3, bucket_name: str) -> Settings:
    """Settings for an app on a fresh SQLite file and a fresh bucket; the stages point at closed ports."""
    return Settings(
        data_dir=tmp_path,
        s3_endpoint=s3_server.endpoint,
        s3_bucket=bucket_name,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        **{f"{stage}_addr": "127.0.0.1:9" for stage in STAGES},
        workers=0,
        s3_startup_wait_s=5,
        stage_timeout_s=10,
        readiness_timeout_s=0.5,
        url_ttl_s=600,
        key_pepper=KEY_PEPPER,
        admin_key=ADMIN_KEY,
    )


def create_key(client: TestClient, tenant: str = "shop", **fields) -> str:
    """A new API key of `tenant` through the admin route, as `vton keys create` makes one."""
    response = client.post("/v1/admin/keys", json={"tenant": tenant, **fields}, headers=ADMIN_HEADERS)
    assert response.status_code == 201, response.text
    return response.json()["key"]


@contextmanager
def _api_client(settings: Settings, tenant: str = "shop") -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {create_key(client, tenant)}"
        yield client


@pytest.fixture
def api_client() -> Callable[..., AbstractContextManager[TestClient]]:
    """`with api_client(settings, tenant="shop") as c:` a started app whose requests carry a key of `tenant`."""
    return _api_client


@pytest.fixture
def new_key() -> Callable[..., str]:
    """`new_key(client, tenant="shop", name=..., rate_per_s=..., burst=...)`: another key through the admin route."""
    return create_key


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return dict(ADMIN_HEADERS)


@pytest.fixture(scope="module")
def real_stages() -> Iterator[dict[str, str]]:
    """The five stage services with their `auto` backends, in this process: stage -> address."""
    with stage_servers() as addresses:
        yield addresses


def postgres_url() -> str | None:
    return os.environ.get("VTON_TEST_POSTGRES_URL") or None


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not postgres_url(), reason="VTON_TEST_POSTGRES_URL is not set"),
            ],
        ),
    ]
)
def db_url(request, tmp_path) -> str:
    """An empty database nobody else uses: a SQLite file, or a PostgreSQL schema of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    base = postgres_url()
    schema = f"vton_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
