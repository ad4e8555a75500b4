"""The one training loop every module trainer runs on, over Hugging Face Accelerate.

Accelerate gives the devices (CPU, one GPU, several GPUs or hosts through `accelerate launch` or `torchrun`),
mixed precision (bf16 by default) and gradient accumulation; this loop adds what the papers' scripts each did their
own way:

- a seed, and a sample order that depends only on it (training/batches.py), so `--resume` continues from the
  saved step with the same batches, the same random draws and therefore the same losses;
- checkpoints every `checkpoint_every` steps under OUT/checkpoints/step-NNNNNNN (models, optimizer, learning-rate
  schedule, EMA, every process's random state), the last `keep_checkpoints` kept;
- at each checkpoint and at the end, the trained weights exported as the stage's own files under
  OUT/weights/<backend>/ (a models directory: `VTON_MODELS_DIR=OUT/weights vton serve STAGE` serves them), with
  provenance.json and SHA256SUMS (training/provenance.py);
- TensorBoard logs under OUT/logs (losses, learning rate, sample grids) and a progress bar;
- an exponential moving average of the weights when `ema_decay` > 0 (then the export holds the average).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from training.batches import MicroBatchPlan, micro_batches, to_device
from training.config import ConfigError
from training.provenance import write_records
from training.tensorboard import RunLog
from training.trainers.base import ModuleTrainer

CHECKPOINTS = "checkpoints"
WEIGHTS = "weights"
LOGS = "logs"
SUMMARY = "training.json"


@dataclass
class RunResult:
    first_step: int  # 0, or the step a resumed run started from
    step: int  # the last completed optimizer step
    losses: dict[int, dict[str, float]] = field(default_factory=dict)  # per step, mean over processes
    exported: list[Path] = field(default_factory=list)


class _Progress:
    """The loop's position, saved in every checkpoint."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Saved training states, oldest first."""
    root = out_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def _constant_with_warmup(warmup: int):
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0

    return factor


def _weight_dtype(mixed_precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def _mixed_precision(config) -> str:
    """The run's precision: the config's on a GPU; float32 on the CPU, whose bf16 kernels are many times slower."""
    on_cpu = config.device == "cpu" or not torch.cuda.is_available()
    return "no" if on_cpu else config.mixed_precision


def _make_accelerator(config):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # Accelerate keeps its settings in process-wide singletons; a second run in the same process (tests, a
    # notebook) may use another precision or accumulation. The distributed set-up itself (PartialState) stays.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    try:
        return Accelerator(
            mixed_precision=_mixed_precision(config),
            gradient_accumulation_steps=config.gradient_accumulation,
            cpu=config.device == "cpu",
        )
    except ValueError as exc:  # e.g. fp16 asked for on a machine without a GPU
        raise ConfigError(f"mixed_precision={config.mixed_precision}: {exc}") from exc


def train(
    trainer: ModuleTrainer,
    dataset: Dataset,
    out_dir: Path,
    resume: bool = False,
    log=print,
    data: str = "unnamed data",
) -> RunResult:
    """Run `trainer` on `dataset` up to `trainer.config.steps`, writing everything under `out_dir`; `data` names the
    dataset in the export's provenance.json (`vton train` gives its --data)."""
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    config = trainer.config
    out_dir = Path(out_dir)
    saved = checkpoint_dirs(out_dir)
    if resume and not saved:
        raise ConfigError(f"--resume: {out_dir / CHECKPOINTS} holds no checkpoint to resume from")
    if saved and not resume:
        raise ConfigError(
            f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --out"
        )

    accelerator = _make_accelerator(config)
    main = accelerator.is_main_process
    set_seed(config.seed)  # the same initial weights on every process
    device = accelerator.device
    trainer.setup(device, _weight_dtype(accelerator.mixed_precision))
    if accelerator.mixed_precision != config.mixed_precision:
        trainer.note(f"mixed_precision {config.mixed_precision} is off on the CPU (float32 is faster there)")
    if main:
        for message in trainer.notes:
            log(f"{trainer.name}: {message}")

    names = list(trainer.trainable)
    learning_rate = config.learning_rate or trainer.learning_rate
    optimizer = trainer.optimizer(learning_rate)
    # Stepped by this loop once per optimizer step (Accelerate would step it once per process).
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _constant_with_warmup(config.warmup_steps))
    prepared = accelerator.prepare(*trainer.trainable.values(), optimizer)
    trainer.trainable = dict(zip(names, prepared[:-1], strict=True))
    optimizer = prepared[-1]

    ema = {}
    if config.ema_decay > 0:
        from diffusers.training_utils import EMAModel

        ema = {
            name: EMAModel(accelerator.unwrap_model(m).parameters(), decay=config.ema_decay)
            for name, m in trainer.trainable.items()
        }
    progress_state = _Progress()
    accelerator.register_for_checkpointing(
        schedule, progress_state, *ema.values(), *trainer.checkpoint_state()
    )

    if resume:
        accelerator.load_state(str(saved[-1]))
        if main:
            log(f"{trainer.name}: resuming from {saved[-1].name} (step {progress_state.step})")
    first_step = progress_state.step
    if first_step >= config.steps:
        raise ConfigError(f"the checkpoint is at step {first_step}; set steps above it to train further")

    plan = MicroBatchPlan(
        len(dataset), config.batch_size, accelerator.num_processes, accelerator.process_index, config.seed
    )
    accumulation = config.gradient_accumulation
    batches = micro_batches(
        dataset,
        plan,
        first_step * accumulation,
        (config.steps - first_step) * accumulation,
        config.num_workers,
    )
    run_log = RunLog(out_dir / LOGS, enabled=main)
    if main and first_step == 0:
        run_log.text("config", f"```\n{json.dumps(config.to_dict(), indent=2)}\n```")
    result = RunResult(first_step=first_step, step=first_step)
    bar = tqdm(total=config.steps, initial=first_step, desc=f"train {trainer.name}", disable=not main)
    trainer.train_mode()

    for step in range(first_step, config.steps):
        totals: dict[str, torch.Tensor] = {}
        trainer.step = step
        for _ in range(accumulation):
            batch = to_device(next(batches), device)
            with accelerator.accumulate(*trainer.trainable.values()):
                with accelerator.autocast():
                    losses = trainer.loss(batch)
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trainer.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float() / accumulation
        schedule.step()
        for name, average in ema.items():
            average.step(accelerator.unwrap_model(trainer.trainable[name]).parameters())
        progress_state.step = step + 1

        keys = sorted(totals)
        means = accelerator.reduce(torch.stack([totals[k] for k in keys]), reduction="mean").tolist()
        values = dict(zip(keys, means, strict=True))
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"step {step + 1}: a loss is not finite: {values}")
        result.losses[step + 1] = values
        result.step = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.4f}")
        if (step + 1) % config.log_every == 0 or step == first_step:
            run_log.scalars({f"train/{k}": v for k, v in values.items()}, step + 1)
            run_log.scalars({"train/learning_rate": schedule.get_last_lr()[0]}, step + 1)
        if main and ((step + 1) % config.sample_every == 0 or step + 1 == config.steps):
            run_log.grid("samples", _samples(trainer, accelerator, batch), step + 1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            result.exported = _checkpoint(trainer, accelerator, ema, out_dir, step + 1, data)
    bar.close()
    run_log.close()
    accelerator.wait_for_everyone()
    if main:
        summary = {
            "module": trainer.name,
            "backend": trainer.backend,
            "first_step": first_step,
            "step": result.step,
            "processes": accelerator.num_processes,
            "effective_batch": config.batch_size * accelerator.num_processes * accumulation,
            "last_losses": result.losses.get(result.step, {}),
            "weights": [str(p.relative_to(out_dir)) for p in result.exported],
            "notes": trainer.notes,
            "config": config.to_dict(),
        }
        (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.end_training()
    return result


def _samples(trainer: ModuleTrainer, accelerator, batch) -> list[torch.Tensor]:
    """The trainer's sample rows, computed on the unwrapped networks in eval mode, leaving the random state alone."""
    wrapped = trainer.trainable
    trainer.trainable = {name: accelerator.unwrap_model(m) for name, m in wrapped.items()}
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), accelerator.autocast():
            for module in trainer.trainable.values():
                module.eval()
            return [row.float() for row in trainer.samples(batch)]
    finally:
        trainer.trainable = wrapped
        trainer.train_mode()


def _checkpoint(
    trainer: ModuleTrainer, accelerator, ema: dict, out_dir: Path, step: int, data: str
) -> list[Path]:
    """Save the training state (all processes), export the weights and drop old states (main process)."""
    state_dir = out_dir / CHECKPOINTS / f"step-{step:07d}"
    accelerator.save_state(str(state_dir))
    exported: list[Path] = []
    if accelerator.is_main_process:
        modules = {}
        for name, module in trainer.trainable.items():
            plain = accelerator.unwrap_model(module)
            if name in ema:
                plain = copy.deepcopy(plain)
                ema[name].copy_to(plain.parameters())
            modules[name] = plain
        folder = out_dir / WEIGHTS / trainer.backend
        folder.mkdir(parents=True, exist_ok=True)
        exported = trainer.export(modules, folder)
        exported += write_records(trainer, exported, folder, step, data)
        for old in checkpoint_dirs(out_dir)[: -trainer.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return exported
