"""Storage against a real S3 server (SeaweedFS): bucket creation, objects, presigned URLs, restarts; and which
of S3's errors are an outage of the store (transient) rather than its answer to the request."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

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
    with pytest.raises(StorageError, match="get jobs/nope/result.png failed: NoSuchKey") as raised:
        storage.get("jobs/nope/result.png")
    assert raised.value.missing and not raised.value.transient


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
    with pytest.raises(StorageError, match="put") as raised:
        intruder.put("jobs/x/person.png", b"data")
    assert not raised.value.transient and not raised.value.missing


def test_an_unreachable_server_fails_after_the_wait(tmp_path):
    dead = Storage(
        "vton", endpoint=f"http://127.0.0.1:{free_s3_port()}", access_key="a", secret_key="b", url_ttl_s=600
    )
    with pytest.raises(StorageError, match="head_bucket") as raised:
        dead.ensure_bucket(wait_s=0.3, interval_s=0.1)
    assert raised.value.transient


def _s3_error(code: str, status: int) -> ClientError:
    """The exception botocore raises for an S3 error answer."""
    response = {
        "Error": {"Code": code, "Message": f"the {code} message"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("error", "transient", "missing"),
    [
        (_s3_error("InternalError", 500), True, False),
        (_s3_error("SlowDown", 503), True, False),
        (_s3_error("RequestTimeout", 400), True, False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9/vton/jobs/abc/person.png"), True, False),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9/vton/jobs/abc/person.png"), True, False),
        (_s3_error("NoSuchKey", 404), False, True),
        (_s3_error("AccessDenied", 403), False, False),
        (_s3_error("InvalidRequest", 400), False, False),
    ],
    ids=[
        "500-InternalError",
        "503-SlowDown",
        "400-RequestTimeout",
        "connection-refused",
        "read-timeout",
        "404-NoSuchKey",
        "403-AccessDenied",
        "400-InvalidRequest",
    ],
)
def test_an_error_is_transient_when_s3_failed_and_not_when_it_refused_the_request(error, transient, missing):
    """A connection error, a 5xx or throttling is the store down or recovering: the same read succeeds later.
    Any other error is S3's answer to this request (no such object, access denied) and stays the same."""
    storage = Storage("vton", endpoint="http://127.0.0.1:9", access_key="a", secret_key="b", url_ttl_s=600)
    failure = storage._fail("get jobs/abc/person.png", error)
    assert (failure.transient, failure.missing) == (transient, missing)
    assert str(failure).startswith(
        "storage (http://127.0.0.1:9 bucket 'vton'): get jobs/abc/person.png failed: "
    )


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
