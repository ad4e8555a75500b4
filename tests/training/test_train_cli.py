"""`vton train` from the command line: a run from a config file, then --resume; mistakes answered in one line."""

from __future__ import annotations

import json

import pytest
import yaml

import training.data.dataset
from vton_cli.cli import main


@pytest.fixture
def dataset_folder(tmp_path, synthetic, monkeypatch):
    """A dataset folder whose reader yields synthetic samples at the run's size (the layout readers' contract)."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    opened = []

    def open_dataset(path, split, size):
        opened.append((path, split, size))
        return synthetic(2, *size)

    monkeypatch.setattr(training.data.dataset, "open_dataset", open_dataset)
    return folder, opened


def test_vton_train_runs_from_a_config_file_and_resumes(dataset_folder, tiny_models, tmp_path, capsys):
    folder, opened = dataset_folder
    config = tmp_path / "warp.yaml"
    settings = {
        "steps": 2, "batch_size": 2, "mixed_precision": "no", "device": "cpu", "height": 64, "width": 48,
        "checkpoint_every": 1, "models_dir": str(tiny_models), "options": {"tps_steps": 1},
    }  # fmt: skip
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    assert main(["train", "warp", "--data", str(folder), "--out", str(out), "--config", str(config)]) == 0
    assert opened == [(folder, "train", (64, 48))]
    assert (out / "weights/ladi-vton-warp-vitonhd/warping_vitonhd.pth").is_file()
    assert json.loads((out / "training.json").read_text())["step"] == 2

    args = ["train", "warp", "--data", str(folder), "--out", str(out), "--config", str(config)]
    assert main([*args, "--resume", "--steps", "3"]) == 0
    assert json.loads((out / "training.json").read_text())["first_step"] == 2
    assert "done: weights under" in capsys.readouterr().out


def test_vton_train_names_what_is_wrong(dataset_folder, tmp_path, capsys):
    folder, _ = dataset_folder
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 2\nlearning_rat: 0.1\n")
    assert (
        main(["train", "pose", "--data", str(folder), "--out", str(tmp_path / "a"), "--config", str(bad)])
        == 2
    )
    assert "unknown setting(s) learning_rat" in capsys.readouterr().err
    assert main(["train", "pose", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    missing = tmp_path / "empty-models"
    missing.mkdir()
    code = main(
        ["train", "pose", "--data", str(folder), "--out", str(tmp_path / "c"), "--models-dir", str(missing)]
    )
    assert code == 2 and "vton weights pull openpose-body" in capsys.readouterr().err
