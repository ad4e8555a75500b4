"""The weights manifest, `vton weights`, and what a stage does when its backend's weights are missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vton.runtime import weights
from vton.runtime.backend import select_backend
from vton.runtime.errors import WeightsMissing
from vton.runtime.vocab import STAGES

REPO = Path(__file__).resolve().parents[2]


def _registry(stage: str):
    return __import__(f"services.{stage}.backends", fromlist=["BACKENDS"]).BACKENDS


def test_every_backend_of_every_stage_is_in_the_manifest_with_its_licence_and_version():
    manifest = weights.load_manifest()
    for stage in STAGES:
        for name, spec in _registry(stage).items():
            assert name in manifest, f"{stage} backend {name} is missing from the manifest"
            assert spec.info.name == name, f"{stage} registers {spec.info.name!r} under {name!r}"
            assert manifest[name].license and spec.info.weights_license == manifest[name].license, name
            assert manifest[name].version and spec.info.version == manifest[name].version, name
            assert stage in manifest[name].stage, f"the manifest does not list {name} under {stage}"


def test_a_manifest_entry_without_a_version_is_refused_naming_it(tmp_path):
    broken = tmp_path / "manifest.yaml"
    broken.write_text("backends:\n  tps:\n    stage: warp\n    license: MIT\n    description: no weights\n")
    with pytest.raises(ValueError, match="backend 'tps' has no version"):
        weights.load_manifest(broken)


def test_require_names_the_missing_files_and_the_command(tmp_path):
    with pytest.raises(WeightsMissing) as err:
        weights.require("ladi-vton-warp-vitonhd", tmp_path)
    assert "warping_vitonhd.pth" in str(err.value) and "vton weights pull ladi-vton-warp-vitonhd" in str(
        err.value
    )


def test_auto_takes_the_best_backend_whose_weights_are_present(tmp_path, monkeypatch):
    from services.warp.testing import save_random

    monkeypatch.setenv("VTON_MODELS_DIR", str(tmp_path))
    info, _ = select_backend(_registry("warp"), "auto")
    assert info.name == "keypoint-tps"
    save_random(tmp_path / "ladi-vton-warp-vitonhd", "vitonhd")
    info, _ = select_backend(_registry("warp"), "auto")
    assert info.name == "ladi-vton-warp-vitonhd"


@pytest.mark.parametrize(
    ("stage", "backend", "says", "not_said"),
    [
        ("diffusion", "ladi-vton-vitonhd", ["unet_vitonhd.pth", "vton weights pull ladi-vton-vitonhd"], None),
        # Refused for the labels it makes, before its (absent) weights are even looked for.
        *(
            (
                "parsing",
                name,
                [
                    f"cannot serve with backend {name!r}",
                    "need LIP labels; choose one of: auto, schp-lip, geometric",
                ],
                "vton weights pull",
            )
            for name in ("schp-atr", "schp-pascal")
        ),
    ],
)
def test_a_stage_that_cannot_serve_with_its_backend_exits_at_start_saying_why(
    tmp_path, stage, backend, says, not_said
):
    env = {
        **os.environ,
        "VTON_MODELS_DIR": str(tmp_path),
        "VTON_BACKEND": backend,
        "VTON_GRPC_PORT": "0",
        "VTON_METRICS_PORT": "0",
    }
    run = subprocess.run(
        [sys.executable, "-m", f"services.{stage}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 2
    assert all(words in run.stderr for words in says), run.stderr
    assert not_said is None or not_said not in run.stderr


def test_weights_list_and_verify_report_what_is_present(tmp_path):
    models = tmp_path / "models"
    (models / "keypoint-tps").mkdir(parents=True)
    listing = subprocess.run(
        [sys.executable, "-m", "vton_cli.cli", "weights", "list", "--models-dir", str(models)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert listing.returncode == 0
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert (
        "missing 1 of 1 files" in lines["openpose-body"]
        and "OpenPose-Academic-NonCommercial" in lines["openpose-body"]
    )
    assert "present" in lines["composite"] and "Apache-2.0" in lines["composite"]
    folder = models / "openpose-body"
    folder.mkdir()
    (folder / "body_pose_model.pth").write_bytes(b"not the real file")
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "vton_cli.cli",
            "weights",
            "verify",
            "openpose-body",
            "--models-dir",
            str(models),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert verify.returncode == 1 and "sha256 mismatch" in verify.stdout


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 server (SeaweedFS) with an empty `models` bucket, and a boto3 client of it."""
    import boto3

    from vton_cli.s3server import SeaweedS3, free_s3_port

    with SeaweedS3(tmp_path_factory.mktemp("s3"), free_s3_port(), "weights", "weights-secret") as server:
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="weights",
            aws_secret_access_key="weights-secret",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="models")
        yield server, client


@pytest.fixture
def s3_env(s3, monkeypatch):
    """The environment `vton weights` reads the server's address and credentials from; the client."""
    server, client = s3
    monkeypatch.setenv("VTON_S3_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "weights")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "weights-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return client


def test_pull_from_s3_fetches_and_checks_every_file(tmp_path, s3_env):
    """`vton weights pull NAME --from s3://...` is what the chart's init container runs: real S3, sha256 checked."""
    client = s3_env
    for f in weights.load_manifest()["blazepose-litert"].files:
        real = weights.models_dir() / "blazepose-litert" / f.path
        client.upload_file(str(real), "models", f"prefix/blazepose-litert/{f.path}")
    target = tmp_path / "models"
    weights.pull("blazepose-litert", target, from_s3="s3://models/prefix", log=lambda *_: None)
    assert weights.verify("blazepose-litert", target) == []
    # A corrupt object is refused by its sha256, not installed.
    client.put_object(Bucket="models", Key="prefix/blazepose-litert/pose_detection.tflite", Body=b"not it")
    (target / "blazepose-litert" / "pose_detection.tflite").unlink()
    with pytest.raises(WeightsMissing, match="sha256"):
        weights.pull("blazepose-litert", target, from_s3="s3://models/prefix", log=lambda *_: None)
    assert not (target / "blazepose-litert" / "pose_detection.tflite").exists()


def _self_trained_openpose(models: Path, data: bytes = b"fine-tuned body pose weights") -> Path:
    """An export as `vton train pose` writes it: the backend's file (not the published one), provenance.json and
    SHA256SUMS over both."""
    folder = models / "openpose-body"
    folder.mkdir(parents=True)
    (folder / "body_pose_model.pth").write_bytes(data)
    record = weights.Provenance(
        module="pose",
        init="official",
        data="s3://datasets/shop",
        steps=2000,
        trained_at="2025-01-01T00:00:00+00:00",
        base="openpose-body: OpenPose-Academic-NonCommercial",
    ).write(folder)
    weights.write_checksums([folder / "body_pose_model.pth", record], folder)
    return folder


def _weights_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vton.weights_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=os.environ.copy(),
    )


SELF_TRAINED_POSE = (
    "self-trained (fine-tuned on s3://datasets/shop; from openpose-body: OpenPose-Academic-NonCommercial)"
)


def test_a_self_trained_export_is_pushed_pulled_listed_and_verified_by_its_own_checksums(tmp_path, s3_env):
    local = tmp_path / "trained"
    _self_trained_openpose(local)
    assert weights.verify("openpose-body", local) == [], "its SHA256SUMS, not the manifest's sha256, applies"

    pushed = _weights_cli("push", "openpose-body", "--to", "s3://models/shop", "--models-dir", str(local))
    assert pushed.returncode == 0, pushed.stderr
    assert "s3://models/shop/openpose-body/SHA256SUMS" in pushed.stdout

    served = tmp_path / "served"
    pulled = _weights_cli("pull", "openpose-body", "--from", "s3://models/shop", "--models-dir", str(served))
    assert pulled.returncode == 0, pulled.stderr
    folder = served / "openpose-body"
    assert (folder / "body_pose_model.pth").read_bytes() == b"fine-tuned body pose weights"
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "body_pose_model.pth",
        "provenance.json",
    ]
    assert weights.verify("openpose-body", served) == []
    assert weights.weights_license("openpose-body", served) == SELF_TRAINED_POSE

    listing = _weights_cli("list", "openpose-body", "blazepose-litert", "--models-dir", str(served))
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert SELF_TRAINED_POSE in lines["openpose-body"] and "present, self-trained" in lines["openpose-body"]
    published = _weights_cli("list", "blazepose-litert")  # the developer's models directory: the real files
    assert "Apache-2.0" in published.stdout and "present, published" in published.stdout

    # Pulled again: present, nothing fetched (its own checksums hold), not replaced by the published file.
    again = _weights_cli("pull", "openpose-body", "--from", "s3://models/shop", "--models-dir", str(served))
    assert again.returncode == 0 and "body_pose_model.pth: present" in again.stdout


def test_a_corrupted_file_of_an_export_is_refused_by_name_and_nothing_is_installed(tmp_path, s3_env):
    client = s3_env
    weights.push("openpose-body", "s3://models/corrupt", _self_trained_openpose(tmp_path / "trained").parent)
    client.put_object(Bucket="models", Key="corrupt/openpose-body/body_pose_model.pth", Body=b"truncated")
    served = tmp_path / "served"
    pulled = _weights_cli(
        "pull", "openpose-body", "--from", "s3://models/corrupt", "--models-dir", str(served)
    )
    assert pulled.returncode == 1
    assert "body_pose_model.pth from s3://models/corrupt: sha256" in pulled.stderr
    assert "is not SHA256SUMS of the export" in pulled.stderr
    assert not any((served / "openpose-body").iterdir()), "nothing of a refused export is installed"


def test_checksums_without_provenance_or_leaving_the_folder_are_refused(tmp_path, s3_env):
    client = s3_env
    digest = "0" * 64
    client.put_object(
        Bucket="models", Key="bare/openpose-body/SHA256SUMS", Body=f"{digest}  body_pose_model.pth\n"
    )
    with pytest.raises(WeightsMissing, match="lists no provenance.json: it is not an export of `vton train`"):
        weights.pull("openpose-body", tmp_path, from_s3="s3://models/bare", log=lambda *_: None)
    client.put_object(
        Bucket="models",
        Key="escape/openpose-body/SHA256SUMS",
        Body=f"{digest}  provenance.json\n{digest}  ../../outside.pth\n",
    )
    with pytest.raises(WeightsMissing, match="line 2 is not `SHA256  RELATIVE/PATH`"):
        weights.pull("openpose-body", tmp_path, from_s3="s3://models/escape", log=lambda *_: None)
    assert not (tmp_path.parent / "outside.pth").exists()


def test_push_refuses_a_folder_that_does_not_verify(tmp_path, s3_env):
    folder = _self_trained_openpose(tmp_path)
    (folder / "body_pose_model.pth").write_bytes(b"changed after the export")
    pushed = _weights_cli("push", "openpose-body", "--to", "s3://models/bad", "--models-dir", str(tmp_path))
    assert pushed.returncode == 1
    assert "cannot be pushed: body_pose_model.pth (sha256 mismatch)" in pushed.stderr
    assert s3_env.list_objects_v2(Bucket="models", Prefix="bad/").get("KeyCount") == 0
    usage = _weights_cli("push", "openpose-body")
    assert usage.returncode == 2 and "give --to s3://BUCKET/PREFIX" in usage.stderr


def test_a_malformed_provenance_is_named_where_the_licence_is_shown(tmp_path):
    folder = tmp_path / "tryon-lite"
    folder.mkdir()
    (folder / "provenance.json").write_text("{not json")
    with pytest.raises(WeightsMissing, match="provenance.json is not a provenance record of `vton train`"):
        weights.weights_license("tryon-lite", tmp_path)
    listing = _weights_cli("list", "tryon-lite", "--models-dir", str(tmp_path))
    assert listing.returncode == 0 and "BAD:" in listing.stdout and "provenance.json" in listing.stdout


def test_vton_train_pushes_an_export_the_stage_pulls_and_serves_as_self_trained(
    tmp_path, s3_env, monkeypatch
):
    """The loop of a shop: `vton train --push s3://...` (the chart's training job), `vton weights pull --from` (a
    stage's init container), the stage's backend loads it and reports its licence as self-trained."""
    import training.data.dataset
    from services.warp.testing import TINY_REFINEMENT, TINY_TPS
    from tests.training.conftest import SyntheticTryOn
    from vton_cli.cli import main

    monkeypatch.setattr(
        training.data.dataset, "open_dataset", lambda path, split, size: SyntheticTryOn(2, *size)
    )
    settings = {
        "steps": 2, "batch_size": 2, "mixed_precision": "no", "device": "cpu", "height": 64, "width": 48,
        "init": "scratch", "weights_license": "Shop-Internal",
        "options": {"tps_steps": 1, "tps": TINY_TPS.to_dict(), "refinement": TINY_REFINEMENT.to_dict()},
    }  # fmt: skip
    config = tmp_path / "warp.json"
    config.write_text(json.dumps(settings))
    data = tmp_path / "shop"
    data.mkdir()
    run = ["train", "warp", "--data", str(data), "--out", str(tmp_path / "run"), "--config", str(config)]
    assert main([*run, "--push", "s3://models/trained"]) == 0

    served = tmp_path / "served"
    assert (
        main(
            [
                "weights",
                "pull",
                "ladi-vton-warp-vitonhd",
                "--from",
                "s3://models/trained",
                "--models-dir",
                str(served),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (served / "ladi-vton-warp-vitonhd").iterdir()) == [
        "SHA256SUMS", "provenance.json", "vton_config.json", "warping_vitonhd.pth",
    ]  # fmt: skip
    monkeypatch.setenv("VTON_MODELS_DIR", str(served))
    info, backend = select_backend(_registry("warp"), "ladi-vton-warp-vitonhd")
    assert info.weights_license == f"self-trained (Shop-Internal; from scratch on {data})"
    assert backend.size == (64, 48), "served at the size it was trained at"
