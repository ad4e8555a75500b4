"""The weights manifest, `vton weights`, and what a stage does when its backend's weights are missing."""

from __future__ import annotations

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


def test_pull_from_s3_fetches_and_checks_every_file(tmp_path, monkeypatch):
    """`vton weights pull NAME --from s3://...` is what the chart's init container runs: real S3, sha256 checked."""
    import boto3

    from vton_cli.s3server import SeaweedS3, free_s3_port

    source = tmp_path / "source"
    source.mkdir()
    (source / "pose_detection.tflite").write_bytes(b"not the detector")
    with SeaweedS3(tmp_path / "s3", free_s3_port(), "weights", "weights-secret") as s3:
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            aws_access_key_id="weights",
            aws_secret_access_key="weights-secret",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="models")
        for f in weights.load_manifest()["blazepose-litert"].files:
            real = weights.models_dir() / "blazepose-litert" / f.path
            client.upload_file(str(real), "models", f"prefix/blazepose-litert/{f.path}")
        monkeypatch.setenv("VTON_S3_ENDPOINT", s3.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "weights")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "weights-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        target = tmp_path / "models"
        weights.pull("blazepose-litert", target, from_s3="s3://models/prefix", log=lambda *_: None)
        assert weights.verify("blazepose-litert", target) == []
        # A corrupt object is refused by its sha256, not installed.
        client.put_object(
            Bucket="models",
            Key="prefix/blazepose-litert/pose_detection.tflite",
            Body=(source / "pose_detection.tflite").read_bytes(),
        )
        (target / "blazepose-litert" / "pose_detection.tflite").unlink()
        with pytest.raises(WeightsMissing, match="sha256"):
            weights.pull("blazepose-litert", target, from_s3="s3://models/prefix", log=lambda *_: None)
        assert not (target / "blazepose-litert" / "pose_detection.tflite").exists()
