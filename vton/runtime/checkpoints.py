"""Weights into a network so that a file that does not fit fails at load, naming the file and the keys.

A full backend never runs with a parameter its file did not set: a damaged download, a file of another network or
a renamed layer is refused with the missing and the unexpected keys, instead of leaving random values (what
`from_pretrained` of the model libraries does with a warning) or failing later with a shape error in a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vton.runtime.errors import WeightsMissing

if TYPE_CHECKING:
    import torch

SHOWN_KEYS = 8  # a file of another network misses hundreds of keys: the first few say enough


class WeightsMismatch(WeightsMissing):
    """A weight file whose keys or shapes are not the network's (corrupt, renamed or of another network)."""


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"[{shown}{more}]"


def refuse_mismatch(path: Path | str, what: str, missing: Iterable[str], unexpected: Iterable[str]) -> None:
    """Raise WeightsMismatch naming `path`, the missing and the unexpected keys, when there is any."""
    missing, unexpected = sorted(missing), sorted(unexpected)
    if missing or unexpected:
        raise WeightsMismatch(
            f"{path} does not fit {what}: missing keys {_listed(missing)}, unexpected keys {_listed(unexpected)}"
        )


def check_keys(path: Path | str, expected: Iterable[str], found: Iterable[str], what: str) -> None:
    """Raise WeightsMismatch unless the keys `found` in `path` are exactly those `expected`."""
    expected, found = set(expected), set(found)
    refuse_mismatch(path, what, expected - found, found - expected)


def load_strict(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path | str, what: str
) -> None:
    """`module.load_state_dict(state, strict=True)` whose every failure is a WeightsMismatch naming `path`."""
    check_keys(path, module.state_dict().keys(), state.keys(), what)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # the keys fit, so a shape does not: torch's message names the tensor
        raise WeightsMismatch(f"{path} does not fit {what}: {exc}") from None
