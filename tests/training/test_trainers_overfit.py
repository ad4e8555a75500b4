"""Each trainer learns: on one fixed batch of synthetic samples, a tiny network's loss falls by half or more.

The loss is measured before and after training on the same batch with the same random draws (noise, timesteps,
augmentations, dropout), so a diffusion trainer's random timesteps cannot fake or hide the progress.

The inversion adapter's only lever on the frozen UNet's noise prediction is the prompt, so it is trained against a
tiny SD-2 UNet that its prompt steers, as SD-2's own is (tests/training/conftest.py: PROMPT_GAIN); a random UNet's
prediction hardly depends on the prompt.
"""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import tiny_config
from training.batches import to_device
from training.data.sample import collate
from training.loop import train
from training.trainers import make_trainer

# MODULE: (steps, learning rate, trainer options): a few steps of a learning rate high enough for tiny networks.
RUNS = {
    "warp-tps": ("warp", 12, 3e-3, {"tps_steps": 12}),
    "warp-tps-with-mask-loss": ("warp", 12, 3e-3, {"tps_steps": 12, "mask_weight": 1.0}),
    "warp-refinement": ("warp", 25, 1e-2, {"tps_steps": 0}),
    "emasc": ("emasc", 25, 3e-3, {"vgg_weight": 0.0}),
    "inversion": ("inversion", 20, 1e-2, {}),
    "unet": ("unet", 25, 2e-3, {}),
    "pose": ("pose", 30, 3e-3, {}),
    "parsing": ("parsing", 30, 1e-1, {"input_size": 48}),
}


def fixed_draw_loss(trainer, batch, step: int) -> float:
    """The training loss on `batch` (training mode: batch statistics, dropout) with the random state fixed."""
    trainer.step = step
    trainer.train_mode()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        return trainer.loss(batch)["loss"].item()


@pytest.mark.parametrize("run", list(RUNS))
def test_a_trainer_halves_its_loss_on_one_fixed_batch(run, tiny_models, synthetic, tmp_path):
    module, steps, learning_rate, options = RUNS[run]
    config = tiny_config(tiny_models, steps, learning_rate=learning_rate, options=options)
    dataset = synthetic(2, 64, 48)
    batch = to_device(collate([dataset[0], dataset[1]]), torch.device("cpu"))
    phase_step = 0 if run != "warp-refinement" else steps

    before_trainer = make_trainer(module, config)
    before_trainer.setup(torch.device("cpu"), torch.float32)
    before = fixed_draw_loss(before_trainer, batch, phase_step)

    trainer = make_trainer(module, config)
    result = train(trainer, dataset, tmp_path, log=lambda *_: None)
    after = fixed_draw_loss(trainer, batch, phase_step)

    assert result.step == steps and len(result.losses) == steps
    assert after <= before / 2, f"{run}: loss {before:.4f} -> {after:.4f} in {steps} steps"
