"""The Helm chart as an operator installs it: lint, render, validate, and what the rendered manifests promise.

The chart is rendered with the real helm binary (`bash tools/install_deploy_tools.sh` puts it in .tools/bin) for
the default values and for the GPU production example, checked with helm lint --strict, Kubernetes' own schemas
(kubernetes-validate, strict: unknown fields fail) and yamllint, then read back as YAML to check what matters on a
GPU cluster: GPUs requested and the GPU taint tolerated, probes, disruption budgets, autoscalers, Secrets only by
reference, unprivileged read-only containers.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import ROOT, run, tool
from vton.runtime.vocab import GRPC_PORTS, METRICS_PORTS, SERVICE_NAMES, STAGES

CHART = ROOT / "helm" / "vton"
EXAMPLE = CHART / "examples" / "gpu-production.yaml"


# The chart's floor (native gRPC probes are GA in 1.27) and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
RENDER_KUBE_VERSION = "1.33.0"
CRD_API_VERSIONS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")
SECRET_ENV = {
    "VTON_DATABASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "VTON_KEY_PEPPER",
    "VTON_ADMIN_KEY",
}


def helm_template(*extra: str, release: str = "vton", namespace: str = "vton") -> str:
    api_versions = [arg for api in CRD_API_VERSIONS for arg in ("--api-versions", api)]
    result = run(
        tool("helm"),
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        RENDER_KUBE_VERSION,
        *api_versions,
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def helm_refusal(*settings: str) -> str:
    """What helm says when it refuses to render the chart with SETTINGS (each a `--set`); accepting them fails."""
    result = run(tool("helm"), "template", "vton", str(CHART), *(a for s in settings for a in ("--set", s)))
    assert result.returncode != 0, f"{settings} were accepted"
    return result.stderr


def manifests(rendered: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    """Resources of one kind by their component label (pose, ..., orchestrator)."""
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def default_render() -> str:
    return helm_template()


@pytest.fixture(scope="module")
def production_render() -> str:
    return helm_template("-f", str(EXAMPLE))


@pytest.fixture(scope="module", params=["default", "production"])
def rendered(request, default_render: str, production_render: str) -> str:
    return {"default": default_render, "production": production_render}[request.param]


@pytest.fixture(scope="module")
def docs(rendered: str) -> list[dict]:
    return manifests(rendered)


# ---------------------------------------------------------------------------------------------- CI checks


@pytest.mark.parametrize("values", [[], ["-f", str(EXAMPLE)]], ids=["default", "production"])
def test_helm_lint_strict_passes(values: list[str]) -> None:
    result = run(tool("helm"), "lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_manifests_pass_kubernetes_schemas(rendered: str, tmp_path: Path, kube_version: str) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered)
    result = run(tool("kubernetes-validate"), "--kubernetes-version", kube_version, "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # The only resources without a bundled schema are the two CRDs the chart knows (checked below by hand).
    unknown = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
    assert all("ScaledObject" in line or "ServiceMonitor" in line for line in unknown), unknown


def test_kubernetes_validate_catches_a_wrong_field(default_render: str, tmp_path: Path) -> None:
    """The schema check is a real one: a typo in a rendered field fails it."""
    path = tmp_path / "broken.yaml"
    path.write_text(default_render.replace("imagePullPolicy:", "imagePullPolicyy:", 1))
    result = run(
        tool("kubernetes-validate"), "--kubernetes-version", RENDER_KUBE_VERSION, "--strict", str(path)
    )
    assert result.returncode != 0
    assert "imagePullPolicyy" in result.stdout + result.stderr


def test_rendered_manifests_pass_yamllint(rendered: str, tmp_path: Path) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered)
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_yaml_files_pass_yamllint() -> None:
    files = [
        CHART / "Chart.yaml",
        CHART / "values.yaml",
        EXAMPLE,
        ROOT / ".yamllint.yaml",
        ROOT / ".hadolint.yaml",
        ROOT / "buf.yaml",
    ]
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("settings", "path", "words"),
    [
        (["stages.pose.replicas=-1"], "/stages/pose/replicas", "minimum"),
        (
            ["stages.diffusion.autoscaling.maxReplicas=many"],
            "/stages/diffusion/autoscaling/maxReplicas",
            "integer",
        ),
        (["stages.warp.backend=magic"], "/stages/warp/backend", "keypoint-tps"),
        (["stages.parsing.precision=int8"], "/stages/parsing/precision", "fp16"),
        (["stages.pose.replica=2"], "/stages/pose", "replica"),
        (["models.source=s3"], "/models/s3/uri", "s3://"),
        (["secrets.existingSecret="], "/secrets/existingSecret", "pattern"),
        (["podSecurityContext.runAsNonRoot=false"], "/podSecurityContext/runAsNonRoot", "true"),
        # a secret inlined as an env value: secrets come from a Secret through valueFrom
        (
            ["orchestrator.extraEnv[0].name=AWS_SECRET_ACCESS_KEY", "orchestrator.extraEnv[0].value=hunter2"],
            "/orchestrator/extraEnv/0",
            "valueFrom",
        ),
    ],
)
def test_schema_refuses_wrong_values_naming_the_value(settings: list[str], path: str, words: str) -> None:
    refusal = helm_refusal(*settings)
    assert path in refusal and words in refusal, refusal


def test_min_replicas_above_max_fails_with_a_message() -> None:
    refusal = helm_refusal("stages.warp.autoscaling.minReplicas=5", "stages.warp.autoscaling.maxReplicas=2")
    assert "warp.autoscaling: minReplicas (5) is above maxReplicas (2)" in refusal


# ---------------------------------------------------------------------------------------------- manifests


def test_the_charts_stages_and_ports_are_the_vocabularys(docs: list[dict]) -> None:
    """The chart spells the stages and their ports out (Helm cannot import Python): they must be vton.runtime.vocab's."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    listed = re.search(r'define "vton.stageNames" -}}\s*(\[.*?\])', helpers, re.S)
    assert listed and tuple(json.loads(listed.group(1))) == STAGES, (
        "vton.stageNames differs from the vocabulary"
    )
    values = yaml.safe_load((CHART / "values.yaml").read_text())["stages"]
    assert tuple(values) == STAGES
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["stages"]
    assert tuple(schema["required"]) == STAGES and set(schema["properties"]) == set(STAGES)
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    for stage in STAGES:
        assert (values[stage]["grpcPort"], values[stage]["metricsPort"]) == (
            GRPC_PORTS[stage],
            METRICS_PORTS[stage],
        )
        (container,) = deployments[stage]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": GRPC_PORTS[stage], "metrics": METRICS_PORTS[stage]}, stage
        served = {p["name"]: p["port"] for p in services[stage]["spec"]["ports"]}
        assert served == {"grpc": GRPC_PORTS[stage], "metrics": METRICS_PORTS[stage]}, stage


def test_the_schema_offers_exactly_the_backends_each_stage_serves() -> None:
    """`auto` and the registry's backends, less those a stage refuses at start (parsing: any without LIP labels)."""
    from services.parsing.service import without_lip

    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["stages"]["properties"]
    for stage in STAGES:
        registry = importlib.import_module(f"services.{stage}.backends").BACKENDS
        served = [name for name, spec in registry.items() if stage != "parsing" or without_lip(spec) is None]
        assert set(schema[stage]["properties"]["backend"]["enum"]) == {"auto", *served}, stage
    values = yaml.safe_load((CHART / "values.yaml").read_text())["stages"]
    manifest = yaml.safe_load((ROOT / "vton" / "runtime" / "manifest.yaml").read_text())["backends"]
    for stage in STAGES:
        assert set(values[stage]["weights"]) <= set(manifest), f"{stage} pulls weights the manifest lacks"


def test_one_deployment_service_autoscaler_and_pdb_per_component(docs: list[dict]) -> None:
    components = {*STAGES, "orchestrator"}
    assert set(of_kind(docs, "Deployment")) == components
    assert set(of_kind(docs, "Service")) == components
    assert set(of_kind(docs, "PodDisruptionBudget")) == components
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler") | of_kind(docs, "ScaledObject")
    assert set(autoscalers) == components


def test_every_gpu_stage_requests_a_gpu_and_tolerates_the_gpu_taint(docs: list[dict]) -> None:
    deployments = of_kind(docs, "Deployment")
    for stage in STAGES:
        pod = deployments[stage]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1, stage
        assert any(
            t.get("key") == "nvidia.com/gpu"
            and t.get("effect") == "NoSchedule"
            and (t.get("operator") == "Exists" or "value" in t)
            for t in pod.get("tolerations", [])
        ), f"{stage} does not tolerate the nvidia.com/gpu taint"
    orchestrator = deployments["orchestrator"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in orchestrator["resources"].get("limits", {})


def test_stages_have_native_grpc_probes_with_a_long_startup(docs: list[dict]) -> None:
    for stage, deployment in of_kind(docs, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, f"{stage} has no {probe}"
        if stage == "orchestrator":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            continue
        grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        # The kubelet probes the pod's IP, so the server must not listen on loopback alone.
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VTON_GRPC_HOST"] == "0.0.0.0" and env["VTON_GRPC_PORT"] == str(grpc_port)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["grpc"]["port"] == grpc_port, (stage, probe)
        # Readiness and startup follow the stage's own service (SERVING once its networks are loaded).
        assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAMES[stage]
        assert container["startupProbe"]["grpc"]["service"] == SERVICE_NAMES[stage]
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, (
            f"{stage}: startup budget too short"
        )


def _budget(probe: dict) -> int:
    """Seconds of failing answers before the kubelet acts on a probe (Kubernetes' defaults where unset)."""
    return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


def test_the_probes_catch_each_fault(docs: list[dict]) -> None:
    """What `vton up`'s supervisor does on one machine, the kubelet does in a cluster: per component,
    - a crash (kill -9, the OOM killer): the pod restarts its container (restartPolicy Always, with the
      kubelet's own doubling back-off);
    - a hung process: liveness fails within a minute and the container is restarted; readiness fails first,
      so the Service stops sending it calls before the restart;
    - a slow start (networks loading): the startup probe holds liveness off, so a loading pod is not killed;
    - shutting down: readiness fails at once (a stage reports NOT_SERVING, the orchestrator's /readyz 503),
      and the termination grace outlasts the drain.
    The orchestrator's /readyz also fails while S3 is down (next test), without liveness restarting it."""
    from orchestrator.settings import Settings

    for component, deployment in of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod.get("restartPolicy", "Always") == "Always", component
        live, ready, startup = (container[p] for p in ("livenessProbe", "readinessProbe", "startupProbe"))
        assert _budget(live) <= 60, f"{component}: a hung process must be restarted within a minute"
        assert _budget(ready) < _budget(live), f"{component}: readiness must fail before liveness restarts it"
        assert live.get("timeoutSeconds", 1) < live.get("periodSeconds", 10), component
        if component == "orchestrator":
            # drain (503 while load balancers move away), uvicorn's graceful close (10 s), jobs handed back
            drain = float(
                next(
                    (e["value"] for e in container["env"] if e["name"] == "VTON_SHUTDOWN_DRAIN_S"),
                    Settings.model_fields["shutdown_drain_s"].default,
                )
            )
            assert pod["terminationGracePeriodSeconds"] >= drain + 10 + 15, "the grace must outlast the drain"
            assert startup["httpGet"]["path"] == live["httpGet"]["path"] == "/healthz"
        else:
            # liveness asks the server (""), readiness the stage's service: a stage that is loading or
            # draining leaves the Service without being restarted
            assert live["grpc"]["service"] == "" and ready["grpc"]["service"] == SERVICE_NAMES[component]
            assert pod["terminationGracePeriodSeconds"] > 10, "the stage drains its calls for 10 s"


def test_the_orchestrator_probes_answer_as_the_chart_expects_while_s3_is_down(default_render, tmp_path):
    """The chart's probe paths asked of a real orchestrator whose S3 is down: readiness fails (the pod takes no
    new requests), liveness passes (a restart would not bring S3 back)."""
    from fastapi.testclient import TestClient

    from orchestrator.app import create_app
    from orchestrator.settings import Settings

    deployment = of_kind(manifests(default_render), "Deployment")["orchestrator"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = Settings(
        data_dir=tmp_path,
        s3_endpoint="http://127.0.0.1:9",  # nothing listens there
        s3_access_key="k",
        s3_secret_key="s",
        s3_startup_wait_s=0,
        workers=0,
        readiness_timeout_s=0.5,
        key_pepper="probe-test-pepper-0123",
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get(container["readinessProbe"]["httpGet"]["path"])
        live = client.get(container["livenessProbe"]["httpGet"]["path"])
    assert ready.status_code == 503 and ready.json()["storage"]["ok"] is False
    assert "127.0.0.1:9" in ready.json()["storage"]["error"]
    assert live.status_code == 200


def test_every_deployment_has_a_pdb_that_selects_its_pods(docs: list[dict]) -> None:
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for component, deployment in of_kind(docs, "Deployment").items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = pdbs[component]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), component
        assert "maxUnavailable" in pdbs[component]["spec"] or "minAvailable" in pdbs[component]["spec"]


def test_services_reach_their_pods_on_named_container_ports(docs: list[dict]) -> None:
    deployments = of_kind(docs, "Deployment")
    for component, service in of_kind(docs, "Service").items():
        pod = deployments[component]["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        names = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names, component


def test_orchestrator_dials_each_stage_service_on_its_grpc_port(docs: list[dict]) -> None:
    services = of_kind(docs, "Service")
    (container,) = of_kind(docs, "Deployment")["orchestrator"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for stage in STAGES:
        service = services[stage]
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
        namespace = service["metadata"]["namespace"]
        assert (
            env[f"VTON_{stage.upper()}_ADDR"]
            == f"dns:///{service['metadata']['name']}.{namespace}.svc:{port}"
        )


def test_a_stage_run_elsewhere_needs_its_address() -> None:
    assert "orchestrator.stageAddresses.diffusion" in helm_refusal("stages.diffusion.enabled=false")
    docs = manifests(
        helm_template(
            "--set",
            "stages.diffusion.enabled=false",
            "--set",
            "orchestrator.stageAddresses.diffusion=diffusion.gpu-pool.svc:50055",
        )
    )
    assert "diffusion" not in of_kind(docs, "Deployment")
    (container,) = of_kind(docs, "Deployment")["orchestrator"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VTON_DIFFUSION_ADDR"] == "diffusion.gpu-pool.svc:50055"


def test_secrets_are_referenced_by_name_and_never_inlined(docs: list[dict], rendered: str) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"
    assert "postgresql" not in rendered
    referenced = set()
    for deployment in of_kind(docs, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert "envFrom" not in container
            for env in container.get("env", []):
                if env["name"] in SECRET_ENV or env["name"].startswith("VTON_S3_"):
                    assert "value" not in env, f"{env['name']} is inlined in {container['name']}"
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "vton-platform"
                    referenced.add(env["name"])
    assert SECRET_ENV | {"VTON_S3_ENDPOINT", "VTON_S3_BUCKET"} <= referenced


def test_the_secret_name_is_the_operators() -> None:
    docs = manifests(
        helm_template(
            "--set",
            "secrets.existingSecret=shop-vton-credentials",
            "--set",
            "secrets.keys.databaseUrl=pg-url",
        )
    )
    (container,) = of_kind(docs, "Deployment")["orchestrator"]["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["VTON_DATABASE_URL"] == {"name": "shop-vton-credentials", "key": "pg-url"}
    assert refs["AWS_SECRET_ACCESS_KEY"]["name"] == "shop-vton-credentials"


def test_containers_run_as_non_root_with_a_read_only_root_filesystem(docs: list[dict]) -> None:
    for component, deployment in of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, (component, container["name"])
            assert security["readOnlyRootFilesystem"] is True, (component, container["name"])
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            # A read-only root needs a writable /tmp, and it is an emptyDir.
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]]


def test_gpu_stages_get_a_memory_backed_dev_shm_and_read_only_models(docs: list[dict]) -> None:
    deployments = of_kind(docs, "Deployment")
    for stage in STAGES:
        pod = deployments[stage]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
        assert mounts["/models"]["readOnly"] is True, stage


def test_turning_a_stages_autoscaling_off_removes_its_hpa_and_fixes_its_replicas() -> None:
    docs = manifests(
        helm_template("--set", "stages.warp.autoscaling.enabled=false", "--set", "stages.warp.replicas=3")
    )
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    assert "warp" not in hpas
    assert set(hpas) == {*STAGES, "orchestrator"} - {"warp"}
    deployments = of_kind(docs, "Deployment")
    assert deployments["warp"]["spec"]["replicas"] == 3
    # Where an HPA owns the count, the Deployment leaves it alone (an upgrade would reset it otherwise).
    assert "replicas" not in deployments["pose"]["spec"]


def test_in_flight_autoscaling_uses_the_stage_metric_through_prometheus_adapter() -> None:
    docs = manifests(
        helm_template(
            "--set",
            "stages.diffusion.autoscaling.metric=inFlight",
            "--set",
            "stages.diffusion.autoscaling.targetInFlightPerPod=3",
        )
    )
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["diffusion"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "vton_grpc_requests_in_flight"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "3"}
    cpu = of_kind(docs, "HorizontalPodAutoscaler")["pose"]["spec"]["metrics"][0]
    assert cpu["resource"]["name"] == "cpu"


def test_production_example_scales_stages_with_keda_on_in_flight_requests(production_render: str) -> None:
    docs = manifests(production_render)
    assert not of_kind(docs, "HorizontalPodAutoscaler"), "KEDA makes the HPAs itself"
    scaled = of_kind(docs, "ScaledObject")
    deployments = of_kind(docs, "Deployment")
    for stage in STAGES:
        spec = scaled[stage]["spec"]
        assert spec["scaleTargetRef"]["name"] == deployments[stage]["metadata"]["name"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["query"].startswith("sum(vton_grpc_requests_in_flight{")
        assert f'service="{deployments[stage]["metadata"]["name"]}"' in trigger["metadata"]["query"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert "vton_jobs_in_flight" in scaled["orchestrator"]["spec"]["triggers"][0]["metadata"]["query"]


def test_models_from_s3_are_pulled_by_an_init_container_into_the_pod(production_render: str) -> None:
    deployments = of_kind(manifests(production_render), "Deployment")
    for stage in STAGES:
        pod = deployments[stage]["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["command"] == ["python", "-m", "vton.weights_cli"] and init["args"][0] == "pull"
        assert init["args"][-2:] == ["--from", "s3://vton-models/v1"]
        assert init["image"] == pod["containers"][0]["image"]
        models = next(v for v in pod["volumes"] if v["name"] == "models")
        assert "emptyDir" in models
        init_mount = next(m for m in init["volumeMounts"] if m["name"] == "models")
        assert not init_mount.get("readOnly"), "the init container writes the weights"
        main_mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert main_mount["readOnly"] is True


def test_default_models_come_from_a_read_only_claim(default_render: str) -> None:
    for stage, deployment in of_kind(manifests(default_render), "Deployment").items():
        if stage == "orchestrator":
            continue
        models = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "models")
        assert models["persistentVolumeClaim"] == {"claimName": "vton-models", "readOnly": True}
        assert "initContainers" not in deployment["spec"]["template"]["spec"]


def test_service_monitors_only_where_the_prometheus_operator_exists(production_render: str) -> None:
    monitors = of_kind(manifests(production_render), "ServiceMonitor")
    services = of_kind(manifests(production_render), "Service")
    assert set(monitors) == {*STAGES, "orchestrator"}
    for component, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= services[component]["metadata"]["labels"].items()
        )
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # Same values on a cluster without the monitoring.coreos.com API: nothing to create.
    result = run(
        tool("helm"),
        "template",
        "vton",
        str(CHART),
        "-f",
        str(EXAMPLE),
        "--kube-version",
        RENDER_KUBE_VERSION,
    )
    assert result.returncode == 0, result.stderr
    assert "kind: ServiceMonitor" not in result.stdout


def test_ingress_routes_to_the_orchestrator_http_port(production_render: str) -> None:
    docs = manifests(production_render)
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    service = of_kind(docs, "Service")["orchestrator"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["tls"][0]["hosts"] == ["tryon.example.com"]
    assert not [d for d in manifests(helm_template()) if d["kind"] == "Ingress"], "ingress is off by default"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "kubectl -n shop port-forward service/vton-orchestrator 8080:80"),
        (["-f", str(EXAMPLE)], "https://tryon.example.com/docs"),
    ],
    ids=["port-forward", "ingress"],
)
def test_notes_tell_the_operator_how_to_reach_the_api(values: list[str], expected: str) -> None:
    result = run(
        tool("helm"), "install", "vton", str(CHART), "--namespace", "shop", "--dry-run=client", *values
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert expected in notes
    assert "/v1/tryon" in notes
