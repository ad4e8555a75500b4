"""compose.yaml, the one-GPU-host deployment, checked without Docker (`docker compose config` needs an engine).

The file is validated against the Compose Specification's JSON schema (from a registry package, installed by
`bash tools/install_deploy_tools.sh` into .tools/share), then read as compose would run it: every stage on a GPU,
the models directory read-only, health checks everywhere, the orchestrator waiting for healthy dependencies, and
no secret written in the file.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml

from tests.deploy.tools import ROOT, run, tool
from vton.runtime.vocab import GRPC_PORTS, METRICS_PORTS, STAGES

COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / ".tools" / "share" / "compose-spec.json"
SECRET_VARIABLES = (
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "VTON_KEY_PEPPER",
    "VTON_ADMIN_KEY",
)


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA.is_file():
        pytest.fail("the Compose schema is not installed: run `bash tools/install_deploy_tools.sh`")
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def schema_errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution (enough for this file)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value)


def test_compose_file_is_valid_against_the_compose_specification(schema: dict, compose: dict) -> None:
    assert schema.get("title") == "Compose Specification"
    assert schema_errors(schema, compose) == []


def test_schema_check_is_real(schema: dict, compose: dict) -> None:
    """A wrong GPU reservation or a misspelt dependency condition is refused by the same check."""
    broken = copy.deepcopy(compose)
    broken["services"]["diffusion"]["deploy"]["resources"]["reservations"]["devices"][0]["gpus"] = 1
    broken["services"]["orchestrator"]["depends_on"]["pose"]["condition"] = "service_ready"
    errors = schema_errors(schema, broken)
    assert any("gpus" in e for e in errors), errors
    assert any("service_ready" in e for e in errors), errors


def test_compose_file_passes_yamllint() -> None:
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_of_the_platform_is_there(compose: dict) -> None:
    assert {*STAGES, "orchestrator", "minio", "postgres"} <= set(compose["services"])
    assert "minio" in compose["services"]["minio"]["image"]
    assert "postgres" in compose["services"]["postgres"]["image"]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_reserves_an_nvidia_gpu(compose: dict, stage: str) -> None:
    service = compose["services"][stage]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert "count" in device or device.get("device_ids"), "a GPU count or explicit device ids"
    assert service["environment"]["VTON_DEVICE"] == "cuda"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_mounts_the_models_directory_read_only(compose: dict, stage: str) -> None:
    service = compose["services"][stage]
    mounts = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == "/models"]
    short = [v for v in service["volumes"] if isinstance(v, str) and ":/models" in v]
    assert mounts or short, f"{stage} has no /models mount"
    assert all(m.get("read_only") is True for m in mounts)
    assert all(v.endswith(":ro") for v in short)
    assert service["read_only"] is True, "the root filesystem is read-only, /tmp a tmpfs"
    assert "/tmp" in service["tmpfs"]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_builds_from_its_dockerfile_and_listens_where_the_orchestrator_dials(
    compose: dict, stage: str
) -> None:
    service = compose["services"][stage]
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert service["build"]["dockerfile"] == f"services/{stage}/Dockerfile"
    port = service["environment"]["VTON_GRPC_PORT"]
    assert service["environment"]["VTON_GRPC_HOST"] == "0.0.0.0", (
        "loopback is unreachable from other containers"
    )
    assert port == str(GRPC_PORTS[stage])
    assert service["environment"]["VTON_METRICS_PORT"] == str(METRICS_PORTS[stage])
    assert set(service["expose"]) == {str(GRPC_PORTS[stage]), str(METRICS_PORTS[stage])}
    orchestrator_env = compose["services"]["orchestrator"]["environment"]
    assert orchestrator_env[f"VTON_{stage.upper()}_ADDR"] == f"{stage}:{port}"


def test_every_long_running_service_has_a_health_check(compose: dict) -> None:
    for name, service in compose["services"].items():
        if "tools" in service.get("profiles", []):
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    for stage in STAGES:
        check = compose["services"][stage]["healthcheck"]
        assert "grpc_health.v1" in " ".join(check["test"])
        # Model loading on a cold start must not count as failing.
        assert int(check["start_period"].rstrip("s")) >= 120


def test_orchestrator_waits_for_healthy_stages_and_stores(compose: dict) -> None:
    depends = compose["services"]["orchestrator"]["depends_on"]
    for dependency in (*STAGES, "minio", "postgres"):
        assert depends[dependency]["condition"] == "service_healthy", dependency


def test_orchestrator_uses_postgres_and_minio_from_the_compose_network(compose: dict) -> None:
    env = compose["services"]["orchestrator"]["environment"]
    secrets = {
        "POSTGRES_PASSWORD": "pw",
        "MINIO_ROOT_USER": "u",
        "MINIO_ROOT_PASSWORD": "p",
        "VTON_KEY_PEPPER": "pepper",
        "VTON_ADMIN_KEY": "admin",
    }
    filled = {k: interpolate(str(v), secrets) for k, v in env.items()}
    assert filled["VTON_DATABASE_URL"] == "postgresql+psycopg://vton:pw@postgres:5432/vton"
    assert filled["VTON_S3_ENDPOINT"] == "http://minio:9000"
    assert filled["AWS_ACCESS_KEY_ID"] == "u" and filled["AWS_SECRET_ACCESS_KEY"] == "p"
    # the orchestrator refuses to start without the pepper; without the admin key no API key can be made
    assert filled["VTON_KEY_PEPPER"] == "pepper" and filled["VTON_ADMIN_KEY"] == "admin"
    assert filled["VTON_HTTP_HOST"] == "0.0.0.0"


def test_no_secret_is_written_in_the_file(compose: dict) -> None:
    """Credentials come from the environment (.env) and compose stops when one is missing."""
    text = COMPOSE.read_text()
    for variable in SECRET_VARIABLES:
        assert re.search(r"\$\{" + variable + r":\?[^}]+\}", text), (
            f"{variable} must be required, not defaulted"
        )
        assert not re.search(r"\$\{" + variable + r":-", text), f"{variable} has a default value"
    env = compose["services"]["orchestrator"]["environment"]
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(env["VTON_DATABASE_URL"], {})
    for variable in ("VTON_KEY_PEPPER", "VTON_ADMIN_KEY"):
        with pytest.raises(KeyError, match=variable):
            interpolate(env[variable], {})


def test_published_ports_default_to_loopback(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host = interpolate(str(port), {}).split(":")[0]
            assert host == "127.0.0.1", f"{name} publishes {port} on every interface by default"
