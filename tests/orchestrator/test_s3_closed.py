"""The S3 server `vton up` runs answers S3 with the keys and nothing else: its filer, master and volume
listeners refuse a request that lacks SeaweedFS's own credentials (the TLS client certificate and JWTs),
whatever it asks of a stored object, and the object stays as it was."""

from __future__ import annotations

import ssl

import grpc
import httpx
import pytest

from orchestrator.storage import Storage
from vton_cli.s3server import SeaweedS3

SECRET = b"a stored try-on result"
# The listeners of `weed mini` other than S3, by their offset from the S3 port (s3server._PORT_OFFSETS).
HTTP_PORTS = {"master": 2, "volume": 4, "filer": 6}
GRPC_PORTS = {"s3": 1, "master": 3, "volume": 5, "filer": 7}


@pytest.fixture
def stored(storage: Storage, bucket_name: str) -> tuple[Storage, str]:
    storage.ensure_bucket(wait_s=10)
    key = storage.put("jobs/0123/result.png", SECRET, "image/png")
    return storage, key


def _attempts(port: int, bucket: str, key: str) -> list[tuple[str, str, bytes | None]]:
    """What an intruder on this host would try on one port: read, overwrite and delete the object, list the
    bucket, and (master) drop the bucket's whole collection or upload through it."""
    path = f"/buckets/{bucket}/{key}"
    return [
        ("GET", path, None),
        ("PUT", path, b"overwritten"),
        ("DELETE", path, None),
        ("GET", f"/buckets/{bucket}/", None),
        ("GET", f"/col/delete?collection={bucket}", None),
        ("POST", "/submit", b"uploaded"),
        ("GET", "/dir/status", None),
    ]


def _refused(method: str, url: str, body: bytes | None) -> str:
    """How the request was refused; fails the test when the server answered it."""
    try:
        response = httpx.request(method, url, content=body, timeout=5, verify=False)
    except httpx.HTTPError as exc:  # the TLS handshake wants a client certificate
        return type(exc).__name__
    assert response.status_code >= 400, (
        f"{method} {url} answered {response.status_code}: {response.text[:200]}"
    )
    assert SECRET not in response.content
    return str(response.status_code)


@pytest.mark.parametrize("component", sorted(HTTP_PORTS))
def test_http_listeners_refuse_get_put_delete_without_credentials(s3_server: SeaweedS3, stored, component):
    storage, key = stored
    port = s3_server.port + HTTP_PORTS[component]
    refusals = [
        _refused(method, f"{scheme}://127.0.0.1:{port}{path}", body)
        for scheme in ("http", "https")
        for method, path, body in _attempts(port, storage.bucket, key)
    ]
    assert len(refusals) == 14
    # with the keys, S3 still has the object as it was stored
    assert storage.get(key) == SECRET


def test_the_listeners_work_for_the_holder_of_the_certificate(s3_server: SeaweedS3, stored):
    """The control: the refusals above come from missing credentials, not from a port that is closed."""
    tls = s3_server.data_dir / "tls"
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.load_cert_chain(str(tls / "node.crt"), str(tls / "node.key"))
    status = httpx.get(
        f"https://127.0.0.1:{s3_server.port + HTTP_PORTS['master']}/dir/status", verify=context, timeout=5
    )
    assert status.status_code == 200 and "Topology" in status.text
    credentials = grpc.ssl_channel_credentials(
        (tls / "ca.crt").read_bytes(), (tls / "node.key").read_bytes(), (tls / "node.crt").read_bytes()
    )
    with grpc.secure_channel(f"127.0.0.1:{s3_server.port + GRPC_PORTS['filer']}", credentials) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)


@pytest.mark.parametrize("component", sorted(GRPC_PORTS))
def test_grpc_listeners_refuse_a_client_without_the_certificate(s3_server: SeaweedS3, stored, component):
    address = f"127.0.0.1:{s3_server.port + GRPC_PORTS[component]}"
    ca = (s3_server.data_dir / "tls" / "ca.crt").read_bytes()
    # plain gRPC, and TLS that trusts the server but presents no certificate of its own
    for channel in (
        grpc.insecure_channel(address),
        grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)),
    ):
        with channel, pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=1)
    assert stored[0].get(stored[1]) == SECRET


def test_keys_and_certificates_are_readable_by_their_owner_only(s3_server: SeaweedS3):
    for path in (
        s3_server.data_dir / "security.toml",
        s3_server.data_dir / "s3-identities.json",
        s3_server.data_dir / "tls" / "node.key",
    ):
        assert path.stat().st_mode & 0o077 == 0, path
    assert not list((s3_server.data_dir / "tls").glob("ca.key")), "the CA's key is never kept"
