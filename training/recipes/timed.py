"""Training for a time, not a step count, in chunks that each fit one call of a machine held for minutes.

A module's run is a list of phases, each given seconds (the warp trainer has two: the TPS network, then the
refinement U-Net). A phase's first chunk is short and measures its speed (steps per second, from the times the
loop asks the trainer for a loss, after the first few); its step count is then fixed to what its seconds allow and
kept in the plan file, so later calls (and a rerun) train exactly the same steps. Every chunk is one call of the
shared loop up to a step target, resuming from the last checkpoint: the loop's schedule is constant after its
warm-up, so chunks give the run an uninterrupted one would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from training.loop import checkpoint_dirs, train
from training.trainers.base import ModuleTrainer

CALIBRATION_STEPS = 60
SKIPPED_STEPS = 10  # the first steps of a chunk pay for warm-up (kernels chosen, memory allocated)
RESERVE_S = 40.0  # a chunk's own start and end: the loop's set-up, resuming, the checkpoint and the export
MIN_CHUNK_STEPS = 20


@dataclass
class Phase:
    name: str
    seconds: float
    steps: int | None = None  # fixed after its first chunk
    rate: float | None = None  # steps per second, last measured


@dataclass
class ModulePlan:
    phases: list[Phase]
    train_seconds: float = 0.0  # wall-clock seconds of all chunks (set-up and checkpoints included)
    chunks: list[dict] = field(default_factory=list)

    def phase_at(self, step: int) -> tuple[int, int] | None:
        """(index of the phase `step` falls in, the phase's first step); None once every phase is done."""
        start = 0
        for index, phase in enumerate(self.phases):
            if phase.steps is None or step < start + phase.steps:
                return index, start
            start += phase.steps
        return None

    def boundaries(self) -> list[int | None]:
        """Each phase's last step + 1, None where not yet planned."""
        out: list[int | None] = []
        total = 0
        for phase in self.phases:
            if phase.steps is None:
                out.append(None)
                break
            total += phase.steps
            out.append(total)
        return out + [None] * (len(self.phases) - len(out))

    @property
    def total_steps(self) -> int | None:
        return self.boundaries()[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModulePlan:
        return cls([Phase(**p) for p in data["phases"]], data["train_seconds"], list(data["chunks"]))


class PlanFile:
    """Every module's plan in one JSON file, written after each chunk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.plans: dict[str, ModulePlan] = {}
        if self.path.is_file():
            raw = json.loads(self.path.read_text())
            self.plans = {name: ModulePlan.from_dict(plan) for name, plan in raw.items()}

    def get(self, name: str, phases: list[Phase]) -> ModulePlan:
        if name not in self.plans:
            self.plans[name] = ModulePlan(phases)
        return self.plans[name]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({k: v.to_dict() for k, v in self.plans.items()}, indent=2) + "\n")


def last_step(out_dir: Path) -> int:
    saved = checkpoint_dirs(Path(out_dir))
    return int(saved[-1].name.removeprefix("step-")) if saved else 0


class StepClock:
    """The times the loop asks `trainer` for a loss: one a step without accumulation."""

    def __init__(self, trainer: ModuleTrainer):
        self.times: list[float] = []
        loss = trainer.loss

        def timed(batch):
            self.times.append(time.perf_counter())
            return loss(batch)

        trainer.loss = timed  # type: ignore[method-assign]

    def rate(self) -> float | None:
        skip = min(SKIPPED_STEPS, len(self.times) // 4)
        times = self.times[skip:]
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])


def run_timed(
    plan: ModulePlan,
    build: Callable[[int, ModulePlan], ModuleTrainer],
    dataset: Dataset,
    out_dir: Path,
    deadline: float,
    save: Callable[[], None],
    log=print,
    calibration_steps: int = CALIBRATION_STEPS,
) -> bool:
    """Train chunks until the plan is done (True) or the next chunk would pass `deadline` (time.monotonic(); False).

    `build(steps, plan)` makes the trainer of a chunk that ends at `steps` (a trainer with phases reads their
    boundaries from the plan)."""
    while True:
        done = last_step(out_dir)
        where = plan.phase_at(done)
        if where is None:
            return True
        index, start = where
        phase = plan.phases[index]
        left = deadline - time.monotonic() - RESERVE_S
        if phase.steps is None:
            target = done + calibration_steps
            if left < 30:
                return False
        else:
            end = start + phase.steps
            afford = int((phase.rate or 0.0) * left)
            if afford < min(MIN_CHUNK_STEPS, end - done):
                return False
            target = min(end, done + afford)
        trainer = build(target, plan)
        clock = StepClock(trainer)
        started = time.monotonic()
        train(trainer, dataset, out_dir, resume=done > 0, log=log)
        seconds = time.monotonic() - started
        plan.train_seconds += seconds
        rate = clock.rate() or (target - done) / seconds
        phase.rate = rate
        if phase.steps is None:
            phase.steps = max(target - start, round(rate * phase.seconds))
            log(f"{phase.name}: {rate:.2f} steps/s, so {phase.steps} steps in {phase.seconds:.0f} s")
        plan.chunks.append({"phase": phase.name, "from": done, "to": target, "seconds": round(seconds, 1)})
        save()
