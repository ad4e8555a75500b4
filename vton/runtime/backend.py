"""What every backend says about itself, and how a stage picks one by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from vton.runtime.errors import WeightsMissing
from vton.runtime.vocab import LabelSet

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BackendInfo:
    name: str
    version: str
    kind: str  # "embedded" or "full"
    weights_license: str


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared where it is registered, so stages and servers need not guess.

    `thread_safe`: one loaded backend may serve several calls at the same time; `max_concurrency`: how many
    it takes at once (1 for a backend that is not thread-safe). The server queues the calls beyond it.
    `label_sets`: the label sets a parsing backend makes (empty for the other stages).
    `working_size`: (height, width) a network backend runs at when a request names none; None where the backend
    works at the photo's own size.
    """

    thread_safe: bool = False
    max_concurrency: int = 1
    label_sets: tuple[LabelSet, ...] = ()
    working_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not self.thread_safe and self.max_concurrency != 1:
            raise ValueError("a backend that is not thread-safe takes one call at a time (max_concurrency=1)")
        unknown = [s for s in self.label_sets if s not in set(LabelSet)]
        if unknown:
            raise ValueError(
                f"unknown label sets {unknown}; choose from: {', '.join(s.value for s in LabelSet)}"
            )
        if self.working_size is not None and (len(self.working_size) != 2 or min(self.working_size) < 1):
            raise ValueError(f"working_size must be (height, width) in pixels, not {self.working_size}")


# A full backend whose calls change nothing another call uses: two at once overlap one's host work (decoding,
# pre- and post-processing) with the other's GPU work; more would only add to the peak GPU memory.
GPU_SHARED = Capabilities(thread_safe=True, max_concurrency=2)
# An embedded backend: numpy/OpenCV on each call's own arrays, LiteRT interpreters each behind its own lock. Two
# calls overlap (one in the detector, one in the landmarker; OpenCV already spreads one call over the cores);
# more only stack up full-size arrays in memory, so they queue.
CPU_SHARED = Capabilities(thread_safe=True, max_concurrency=2)


B = TypeVar("B")


@dataclass(frozen=True)
class BackendSpec(Generic[B]):
    """A named backend: `load(device, precision)` builds it, raising WeightsMissing when its files are absent."""

    info: BackendInfo
    load: Callable[[str, str], B]
    auto: bool = True  # whether `auto` may pick it
    capabilities: Capabilities = field(default_factory=Capabilities)


def manifest_info(name: str, kind: str) -> BackendInfo:
    """A backend (or a stage's fixed step) as the weights manifest describes it: its version and its licence."""
    from vton.runtime.weights import load_manifest

    entry = load_manifest()[name]
    return BackendInfo(name, entry.version, kind, entry.license)


def backend_spec(
    name: str,
    kind: str,
    load: Callable[[str, str], B],
    auto: bool = True,
    capabilities: Capabilities | None = None,
) -> BackendSpec[B]:
    """A backend named as the weights manifest names it; its version and licence come from the manifest."""
    return BackendSpec(manifest_info(name, kind), load, auto, capabilities or Capabilities())


def loaded_info(info: BackendInfo) -> BackendInfo:
    """`info` with the licence of the files the backend loads (self-trained ones say so, see weights.py)."""
    from vton.runtime.weights import load_manifest, weights_license

    return replace(info, weights_license=weights_license(info.name)) if info.name in load_manifest() else info


def select_backend(
    specs: Mapping[str, BackendSpec[B]], requested: str, device: str = "cpu", precision: str = "fp32"
) -> tuple[BackendInfo, B]:
    """Build the backend named `requested`; `auto` takes the first of `specs` (best first) that loads."""
    if requested != "auto":
        if requested not in specs:
            raise ValueError(f"unknown backend {requested!r}; choose one of: auto, {', '.join(specs)}")
        return loaded_info(specs[requested].info), specs[requested].load(device, precision)
    missing: list[str] = []
    for spec in specs.values():
        if not spec.auto:
            continue
        try:
            return loaded_info(spec.info), spec.load(device, precision)
        except WeightsMissing as exc:
            missing.append(f"{spec.info.name}: {exc}")
    raise WeightsMissing("no backend could be loaded:\n" + "\n".join(missing))


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision setting (fp32, fp16, bf16)."""
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(dtypes)}")
    return dtypes[precision]
