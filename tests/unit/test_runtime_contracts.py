"""The vocabulary as the runtime uses it: proto categories, stage settings, declared capabilities, backend choice."""

from __future__ import annotations

import importlib

import pytest

from vton.runtime import messages, proto_vocab
from vton.runtime.backend import BackendInfo, BackendSpec, Capabilities
from vton.runtime.config import StageSettings
from vton.runtime.errors import InvalidInput, WeightsMissing
from vton.runtime.server import stage_builder
from vton.runtime.vocab import (
    CATEGORIES,
    GRPC_PORTS,
    METRICS_PORTS,
    SERVICE_NAMES,
    STAGES,
    Category,
    LabelSet,
)
from vton.v1 import common_pb2


@pytest.mark.parametrize("category", list(Category))
def test_every_category_goes_through_the_proto_and_back(category: Category) -> None:
    options = common_pb2.TryOnOptions(category=proto_vocab.category_enum(category.value))
    assert options.category != common_pb2.CATEGORY_UNSPECIFIED
    assert messages.category_from(options) == category == category.value


def test_every_proto_category_is_in_the_vocabulary() -> None:
    named = {common_pb2.Category.Name(v) for v in common_pb2.Category.values()} - {"CATEGORY_UNSPECIFIED"}
    assert named == {f"CATEGORY_{c.upper()}" for c in CATEGORIES}


def test_an_unset_or_unknown_category_is_invalid_input_naming_the_choices() -> None:
    with pytest.raises(InvalidInput, match="options.category must be one of upper_body, lower_body, dresses"):
        messages.category_from(common_pb2.TryOnOptions())
    with pytest.raises(InvalidInput, match="unknown category 'hats'; choose one of: upper_body"):
        proto_vocab.category_enum("hats")


def test_a_stage_listens_on_its_vocabulary_ports_unless_told_otherwise(monkeypatch) -> None:
    for name in ("VTON_GRPC_PORT", "VTON_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    for stage in STAGES:
        settings = StageSettings.from_env(stage)
        assert (settings.grpc_port, settings.metrics_port) == (GRPC_PORTS[stage], METRICS_PORTS[stage])
    monkeypatch.setenv("VTON_GRPC_PORT", "6000")
    assert StageSettings.from_env("warp").grpc_port == 6000
    with pytest.raises(ValueError, match="unknown stage 'tryon'; choose one of: pose, densepose"):
        StageSettings.from_env("tryon")


@pytest.mark.parametrize("stage", STAGES)
def test_each_stages_service_name_is_the_one_service_its_proto_declares(stage: str) -> None:
    (service,) = importlib.import_module(f"vton.v1.{stage}_pb2").DESCRIPTOR.services_by_name.values()
    assert SERVICE_NAMES[stage] == service.full_name


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_concurrency": 0}, "at least 1"),
        ({"max_concurrency": 2}, "not thread-safe takes one call at a time"),
        ({"label_sets": ("lip", "coco")}, "unknown label sets ['coco']"),
        ({"working_size": (512, 0)}, "working_size must be (height, width)"),
    ],
)
def test_capabilities_that_cannot_hold_are_refused_where_they_are_declared(kwargs, words) -> None:
    with pytest.raises(ValueError) as err:
        Capabilities(**kwargs)
    assert words in str(err.value)


def test_a_request_size_wins_over_the_declared_working_size() -> None:
    declared = (512, 384)
    assert messages.working_size(common_pb2.TryOnOptions(), declared) == declared
    assert messages.working_size(common_pb2.TryOnOptions(width=768, height=1024), declared) == (1024, 768)
    assert messages.working_size(common_pb2.TryOnOptions(), None) == (0, 0)


class _Loaded:
    def __init__(self, name: str) -> None:
        self.name = name


def _spec(name: str, label_sets: tuple[LabelSet, ...], present: bool = True) -> BackendSpec[_Loaded]:
    def load(device: str, precision: str) -> _Loaded:
        if not present:
            raise WeightsMissing(f"{name} weights are absent")
        return _Loaded(name)

    return BackendSpec(BackendInfo(name, "1", "full", "MIT"), load, True, Capabilities(label_sets=label_sets))


def _builder(specs: dict[str, BackendSpec[_Loaded]], served: list[tuple[BackendSpec[_Loaded], _Loaded]]):
    def servicer(spec: BackendSpec[_Loaded], backend: _Loaded) -> object:
        served.append((spec, backend))
        return object()

    def refuse(spec: BackendSpec[_Loaded]) -> str | None:
        return None if LabelSet.LIP in spec.capabilities.label_sets else "no LIP labels"

    return stage_builder("parsing", lambda *_: None, servicer, specs, refuse)


def test_a_refused_backend_is_refused_before_loading_and_passed_by_auto(monkeypatch) -> None:
    import vton.runtime.server as server_module

    # Only the choice is under test: stand in for the gRPC server that would start after it.
    monkeypatch.setattr(server_module, "build_server", lambda *args: args)
    specs = {
        "atr": _spec("atr", (LabelSet.ATR,)),
        "lip-missing": _spec("lip-missing", (LabelSet.LIP,), present=False),
        "lip": _spec("lip", (LabelSet.LIP,)),
    }
    served: list[tuple[BackendSpec[_Loaded], _Loaded]] = []
    build = _builder(specs, served)
    with pytest.raises(ValueError, match="the parsing stage cannot serve with backend 'atr': no LIP labels"):
        build(backend="atr")
    assert served == []
    build(backend="auto")
    ((spec, backend),) = served
    # equal, not the same object: the server serves a copy whose info gives the loaded files' licence
    assert spec == specs["lip"] and backend.name == "lip"
    with pytest.raises(WeightsMissing, match="lip-missing weights are absent"):
        build(backend="lip-missing")
