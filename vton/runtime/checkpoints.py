"""Weights into a network so that a file that does not fit fails at load, naming the file and the keys.

A full backend never runs with a parameter its file did not set: a damaged download, a file of another network or
a renamed layer is refused with the missing and the unexpected keys, instead of leaving random values (what
`from_pretrained` of the model libraries does with a warning) or failing later with a shape error in a request.
A network's sizes travel beside its weights as JSON (`NetworkConfig`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

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


class NetworkConfig:
    """A network's sizes, as a frozen dataclass that derives from this, written to and read from the JSON config
    file beside its weights. Reading skips comment keys ("_..."), refuses a field the class does not have, naming
    it, and turns JSON's lists back into the tuples the fields hold."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(cast(Any, self))  # Any: the subclass, not this mixin, is the dataclass

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        values = {key: _tuples(value) for key, value in data.items() if not key.startswith("_")}
        fields = dataclasses.fields(cast(Any, cls))
        unknown = sorted(set(values) - {f.name for f in fields})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**values)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value
