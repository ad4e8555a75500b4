"""The shared loop: resume continues with the same step and the same losses; logs, checkpoints and refusals."""

from __future__ import annotations

import json

import pytest
import torch

from services.warp.models.tps_regression import ConvNetTPS, TPSConfig, tps_regularisers
from tests.training.conftest import tiny_config
from training.config import ConfigError, TrainConfig
from training.loop import CHECKPOINTS, LOGS, SUMMARY, checkpoint_dirs, train
from training.trainers import make_trainer


def _config(tiny_models, steps: int, **changes) -> TrainConfig:
    """Checkpoints every 2 steps, accumulation 2 and an EMA: what resuming must restore."""
    settings = dict(gradient_accumulation=2, checkpoint_every=2, log_every=1, sample_every=2, ema_decay=0.9)
    return tiny_config(tiny_models, steps, **{**settings, **changes})


def test_a_resumed_run_continues_from_the_saved_step_with_the_same_losses(tiny_models, synthetic, tmp_path):
    # The try-on UNet draws noise, timesteps and guidance dropout every step: only a restored random state and the
    # same batches give the same losses. Six samples, two per micro-batch, two micro-batches per step: the epochs
    # turn over mid-run, so the sample order is exercised too.
    dataset = synthetic(6, 64, 48)
    whole = train(
        make_trainer("unet", _config(tiny_models, 4)), dataset, tmp_path / "whole", log=lambda *_: None
    )

    interrupted = tmp_path / "interrupted"
    first = train(make_trainer("unet", _config(tiny_models, 2)), dataset, interrupted, log=lambda *_: None)
    said = []
    resumed = train(
        make_trainer("unet", _config(tiny_models, 4)), dataset, interrupted, resume=True, log=said.append
    )

    assert first.losses == {s: whole.losses[s] for s in (1, 2)}
    assert resumed.first_step == 2 and sorted(resumed.losses) == [3, 4]
    for step in (3, 4):
        for key, value in whole.losses[step].items():
            assert resumed.losses[step][key] == pytest.approx(value, rel=1e-6, abs=1e-7), (step, key)
    assert any("resuming from step-0000002" in line for line in said)
    # the exported (EMA) weights agree as well
    a = torch.load(tmp_path / "whole/weights/ladi-vton-vitonhd/unet_vitonhd.pth", weights_only=True)
    b = torch.load(interrupted / "weights/ladi-vton-vitonhd/unet_vitonhd.pth", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_run_writes_tensorboard_logs_checkpoints_and_a_summary(tiny_models, synthetic, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(tiny_models, 6, gradient_accumulation=1, ema_decay=0.0, keep_checkpoints=2)
    train(make_trainer("emasc", config), synthetic(2, 64, 48), tmp_path, log=lambda *_: None)

    events = EventAccumulator(str(tmp_path / LOGS))
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/l1", "train/learning_rate"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert "samples" in tags["images"]
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000004", "step-0000006"]
    summary = json.loads((tmp_path / SUMMARY).read_text())
    assert summary["step"] == 6 and summary["backend"] == "ladi-vton-vitonhd"
    assert any(
        "VGG perceptual loss skipped" in note for note in summary["notes"]
    )  # no vgg_weights file given
    sums = (tmp_path / "weights/ladi-vton-vitonhd/SHA256SUMS").read_text().split()
    assert sums[1::2] == ["emasc_vitonhd.pth", "provenance.json"] and len(sums[0]) == 64


def test_the_loop_refuses_to_overwrite_a_run_or_to_resume_nothing(tiny_models, synthetic, tmp_path):
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        train(make_trainer("pose", _config(tiny_models, 2)), synthetic(2, 64, 48), tmp_path, resume=True)
    (tmp_path / CHECKPOINTS / "step-0000002").mkdir(parents=True)
    with pytest.raises(ConfigError, match="pass --resume"):
        train(make_trainer("pose", _config(tiny_models, 2)), synthetic(2, 64, 48), tmp_path)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_mapping({"stepz": 3})
    with pytest.raises(ConfigError, match="mixed_precision must be one of"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="unknown option.*tps_stepz"):
        make_trainer("warp", TrainConfig(options={"tps_stepz": 1}))


def _reference_regularisers(coor: torch.Tensor, num: int) -> tuple[torch.Tensor, ...]:
    """LaDI-VTON's BoundedGridLocNet loops (get_row, get_col, grad_row, grad_col), written out as they are there."""

    def second_differences(index):
        out = []
        for j in range(num):
            previous = None
            for i in range(num - 1):
                differ = (coor[:, index(j, i + 1), :] - coor[:, index(j, i), :]) ** 2
                if previous is not None:
                    out.append(torch.abs(differ - previous))
                previous = differ
        return torch.stack(out, dim=1)

    def collinearity(index):
        terms = []
        for j in range(num):
            for i in range(1, num - 1):
                x0, y0 = coor[:, index(j, i - 1), :][0]
                x1, y1 = coor[:, index(j, i), :][0]
                x2, y2 = coor[:, index(j, i + 1), :][0]
                terms.append(torch.abs((y1 - y0) * (x1 - x2) - (y1 - y2) * (x1 - x0)))
        return sum(terms)

    row, col = (lambda j, i: j * num + i), (lambda j, i: i * num + j)
    rows, cols = second_differences(row), second_differences(col)
    rg = torch.max(collinearity(row), torch.tensor(0.02))
    cg = torch.max(collinearity(col), torch.tensor(0.02))
    floor = torch.tensor(0.08)
    return (
        torch.max(floor, rows[:, :, 0]).mean(),
        torch.max(floor, rows[:, :, 1]).mean(),
        torch.max(floor, cols[:, :, 0]).mean(),
        torch.max(floor, cols[:, :, 1]).mean(),
        rg,
        cg,
    )


def test_the_tps_regularisers_are_the_reference_ones():
    torch.manual_seed(0)
    points = torch.rand(3, 25, 2) * 1.8 - 0.9
    points[0] += torch.randn(25, 2) * 0.3  # a bent grid, so no floor hides the terms
    ours = tps_regularisers(points, 5)
    for name, value, expected in zip(ours._fields, ours, _reference_regularisers(points, 5), strict=True):
        assert torch.allclose(value, expected, atol=1e-6), name
    assert ours.rg > 0.02 and ours.rx > 0.08

    network = ConvNetTPS(
        TPSConfig(height=128, width=96, ngf=4, max_channels=32, regression_channels=(8, 8, 8, 8))
    )
    grid, control_points, regularisers = network(torch.rand(2, 3, 128, 96), torch.rand(2, 21, 128, 96), True)
    assert grid.shape == (2, 128, 96, 2) and len(regularisers) == 6
    assert torch.equal(regularisers.total(), tps_regularisers(control_points, 5).total())
    assert len(network(torch.rand(1, 3, 128, 96), torch.rand(1, 21, 128, 96))) == 2  # inference: unchanged


def test_schp_self_correction_aggregates_refines_labels_and_resumes(tiny_models, synthetic, tmp_path):
    options = {"input_size": 48, "self_correction_start": 2, "cycle_steps": 2, "bn_batches": 1}
    dataset = synthetic(4, 64, 48)
    whole_trainer = make_trainer("parsing", _config(tiny_models, 6, options=options, learning_rate=1e-2))
    whole = train(whole_trainer, dataset, tmp_path / "whole", log=lambda *_: None)
    # aggregations at steps 2 and 4, each completed by one batch of statistics: cycles 0, 0, 1, 1, 2, 2
    assert [whole.losses[s]["self_correction_cycles"] for s in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    exported = torch.load(
        tmp_path / "whole/weights/schp-lip/exp-schp-201908261155-lip.pth", weights_only=True
    )
    aggregated = whole_trainer.correction.model.state_dict()
    assert all(torch.equal(exported["state_dict"][f"module.{k}"], v.cpu()) for k, v in aggregated.items())

    interrupted = tmp_path / "interrupted"
    first = make_trainer("parsing", _config(tiny_models, 3, options=options, learning_rate=1e-2))
    train(first, dataset, interrupted, log=lambda *_: None)  # checkpoints at steps 2 and 3: mid-cycle
    again = make_trainer("parsing", _config(tiny_models, 6, options=options, learning_rate=1e-2))
    resumed = train(again, dataset, interrupted, resume=True, log=lambda *_: None)
    assert resumed.first_step == 3
    for step in (4, 5, 6):
        for key, value in whole.losses[step].items():
            assert resumed.losses[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)
