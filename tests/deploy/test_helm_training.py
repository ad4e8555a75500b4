"""The chart's optional training run: a single-node Job, or a Kubeflow PyTorchJob where its CRD is served; both
read the dataset from S3, pull the official files first, and push the trained weights to the weights bucket."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.test_helm import CHART, RENDER_KUBE_VERSION
from tests.deploy.tools import run, tool

ENABLED = [
    "--set", "training.enabled=true",
    "--set", "training.module=unet",
    "--set", "training.dataset=s3://datasets/shop-vitonhd",
    "--set", "models.source=s3",
    "--set", "models.s3.uri=s3://weights/models",
    "--set", "training.weights={ladi-vton-vitonhd,ladi-vton-warp-vitonhd}",
    "--set", "training.config.steps=20000",
    "--set", "training.gpusPerNode=8",
]  # fmt: skip


def render(*extra: str, kubeflow: bool = False) -> tuple[int, str, str]:
    apis = ["--api-versions", "kubeflow.org/v1"] if kubeflow else []
    result = run(tool("helm"), "template", "vton", str(CHART), "--namespace", "vton", "--kube-version",
                 RENDER_KUBE_VERSION, *apis, *extra)  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def training_docs(rendered: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    return {
        d["kind"]: d for d in docs if d["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    }


def test_no_training_resources_unless_enabled():
    code, out, err = render()
    assert code == 0, err
    assert training_docs(out) == {}


def test_without_the_crd_a_single_node_job_trains_and_pushes_to_the_weights_bucket(tmp_path):
    code, out, err = render(*ENABLED)
    assert code == 0, err
    docs = training_docs(out)
    assert set(docs) == {"ConfigMap", "Job"}
    assert yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"]) == {
        "steps": 20000,
        "models_dir": "/models",
    }
    pod = docs["Job"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", "8", "-m", "training", "unet",
        "--data", "s3://datasets/shop-vitonhd", "--out", "/work/out", "--config", "/etc/vton-training/config.yaml",
        "--push", "s3://weights/models",
    ]  # fmt: skip
    (init,) = pod["initContainers"]
    assert init["command"] == ["python", "-m", "vton.weights_cli"]  # the training image has no `vton` CLI
    assert init["args"] == [
        "pull",
        "ladi-vton-vitonhd",
        "ladi-vton-warp-vitonhd",
        "--from",
        "s3://weights/models",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vton-platform"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True

    path = tmp_path / "training.yaml"
    path.write_text(out)
    check = run(tool("kubernetes-validate"), "--kubernetes-version", "1.33.0", "--strict", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    lint = run(tool("helm"), "lint", "--strict", str(CHART), *ENABLED)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_with_the_crd_a_pytorchjob_spreads_the_run_over_nodes():
    code, out, err = render(*ENABLED, "--set", "training.nodes=3", kubeflow=True)
    assert code == 0, err
    job = training_docs(out)["PyTorchJob"]
    assert job["apiVersion"] == "kubeflow.org/v1" and job["spec"]["nprocPerNode"] == "8"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    for spec in replicas.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"  # the training operator's required name
        assert container["command"][:4] == ["torchrun", "-m", "training", "unet"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "training.nodes=2"], "needs Kubeflow's PyTorchJob"),
        (["--set", "training.dataset="], "/training/dataset"),
        (["--set", "training.module=vae"], "/training/module"),
        (
            ["--set", "models.s3.uri=", "--set", "models.source=pvc"],
            "the s3://BUCKET/PREFIX the trained weights",
        ),
    ],
)
def test_an_unusable_training_block_is_refused_with_its_name(extra, message):
    code, _, err = render(*ENABLED, *extra)
    assert code != 0 and message in err, err
