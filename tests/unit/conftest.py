"""Fixtures of the unit tests: BlazePose, which the embedded backends are built on."""

from __future__ import annotations

import pytest

from vton.runtime.blazepose import BlazePose
from vton.runtime.errors import WeightsMissing
from vton.runtime.weights import require


@pytest.fixture(scope="session")
def blazepose_folder():
    """The `blazepose-litert` files (`make weights` fetches them); a test that needs them is skipped, naming them,
    where they are absent."""
    pytest.importorskip("ai_edge_litert")
    try:
        return require("blazepose-litert")
    except WeightsMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def blazepose(blazepose_folder) -> BlazePose:
    """One BlazePose for the session (it keeps no state between photos), its networks loaded once."""
    return BlazePose.from_pretrained(blazepose_folder)
