"""Storage against a real S3 server (SeaweedFS): bucket creation, objects, presigned URLs, restarts."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from orchestrator.storage import Storage, StorageError
from vton_cli.s3server import SeaweedS3, free_s3_port


def test_the_bucket_is_created_when_missing_and_only_once(storage: Storage):
    assert not storage.bucket_exists()
    assert storage.ensure_bucket() is True
    assert storage.bucket_exists()
    assert storage.ensure_bucket() is False  # a second orchestrator (or a restart) finds it there
    storage.ping()


def test_put_then_get_returns_the_same_bytes(storage: Storage):
    storage.ensure_bucket()
    data = os.urandom(300_000)
    key = storage.put("jobs/abc/inputs/person.png", data)
    assert key == "jobs/abc/inputs/person.png"
    assert storage.get(key) == data


def test_a_missing_object_raises_a_storage_error_naming_it(storage: Storage):
    storage.ensure_bucket()
    with pytest.raises(StorageError, match="jobs/nope/result.png"):
        storage.get("jobs/nope/result.png")


def test_a_presigned_url_is_fetchable_without_credentials_and_a_tampered_one_is_refused(storage: Storage):
    storage.ensure_bucket()
    storage.put("jobs/abc/result.png", b"\x89PNG result bytes")
    storage.put("jobs/other/result.png", b"someone else's result")
    url = storage.presign("jobs/abc/result.png")

    ok = httpx.get(url, timeout=10)
    assert ok.status_code == 200
    assert ok.content == b"\x89PNG result bytes"
    assert ok.headers["content-type"] == "image/png"

    # the same signature on another object's path
    parts = urlsplit(url)
    other = urlunsplit(parts._replace(path=parts.path.replace("/jobs/abc/", "/jobs/other/")))
    assert httpx.get(other, timeout=10).status_code == 403
    # a longer expiry than was signed
    query = dict(parse_qsl(parts.query))
    query["X-Amz-Expires"] = str(int(query["X-Amz-Expires"]) * 10)
    assert httpx.get(urlunsplit(parts._replace(query=urlencode(query))), timeout=10).status_code == 403
    # and no signature at all
    assert httpx.get(urlunsplit(parts._replace(query="")), timeout=10).status_code == 403


def test_presigned_urls_are_signed_for_the_public_endpoint(storage: Storage, s3_server: SeaweedS3):
    """Clients reach S3 through another host name than the orchestrator: the URL must name (and be signed
    for) that host. Here "localhost" is the public name of the same server."""
    public = s3_server.endpoint.replace("127.0.0.1", "localhost")
    storage.ensure_bucket()
    storage.put("jobs/abc/result.png", b"seen from outside")
    outside = Storage(
        storage.bucket,
        endpoint=s3_server.endpoint,
        public_endpoint=public,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        url_ttl_s=600,
    )
    url = outside.presign("jobs/abc/result.png", ttl_s=60)
    assert url.startswith(public + "/")
    assert httpx.get(url, timeout=10).content == b"seen from outside"


def test_wrong_credentials_are_reported_not_swallowed(storage: Storage, s3_server: SeaweedS3):
    storage.ensure_bucket()
    intruder = Storage(
        storage.bucket, endpoint=s3_server.endpoint, access_key="vtontest", secret_key="wrong", url_ttl_s=600
    )
    with pytest.raises(StorageError, match="put"):
        intruder.put("jobs/x/person.png", b"data")


def test_an_unreachable_server_fails_after_the_wait(tmp_path):
    dead = Storage(
        "vton", endpoint=f"http://127.0.0.1:{free_s3_port()}", access_key="a", secret_key="b", url_ttl_s=600
    )
    with pytest.raises(StorageError, match="head_bucket"):
        dead.ensure_bucket(wait_s=0.3, interval_s=0.1)


def test_objects_survive_a_restart_of_the_s3_server(tmp_path):
    """`vton up` stops and starts SeaweedFS on the same folder: the stored results must still be there."""
    data_dir = tmp_path / "s3"
    with SeaweedS3(data_dir, free_s3_port(), "vtonkey", "vtonsecret") as server:
        store = Storage(
            "vton", endpoint=server.endpoint, access_key="vtonkey", secret_key="vtonsecret", url_ttl_s=600
        )
        assert store.ensure_bucket() is True
        store.put("jobs/a/result.png", b"kept")
    with SeaweedS3(data_dir, free_s3_port(), "vtonkey", "vtonsecret") as server:
        store = Storage(
            "vton", endpoint=server.endpoint, access_key="vtonkey", secret_key="vtonsecret", url_ttl_s=600
        )
        assert store.ensure_bucket() is False
        assert store.get("jobs/a/result.png") == b"kept"
