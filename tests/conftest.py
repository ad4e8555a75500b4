"""Fixtures shared by the whole suite: example photos, the shared test data, free ports."""

from __future__ import annotations

import os

# Tests run on 2 cores next to servers they start: one thread per torch op keeps them from starving each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="../shared/data is not on this machine"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports, between 10000 and 20000: below the ports the kernel gives
    outgoing connections (32768 and up by default), which a busy machine's connections may take between this
    check and a server's bind (a stage once failed to bind one), and below free_s3_port's (20000 and up)."""
    for _ in range(200):
        base = random.randrange(10_000, 20_000 - count)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


@pytest.fixture(scope="session")
def examples() -> Path:
    """The openvto example photos (MIT), fetched from the package index and checked against their sha256."""
    from vton_cli.examples import fetch_examples

    return fetch_examples()


@pytest.fixture(scope="session")
def viton256(tmp_path_factory) -> Path:
    """The viton256 test sample (CP-VTON layout, research use), unpacked once; VTON_SHARED_DIR may point at
    shared/ from a worktree that has none beside it."""
    import tarfile

    shared = Path(os.environ.get("VTON_SHARED_DIR", SHARED_DATA.parent))
    archive = shared / "datasets" / "viton256" / "test-mini.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is not on this machine (the viton256 sample)")
    root = tmp_path_factory.mktemp("viton256")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not on this machine")
    return SHARED_DATA
