"""Which samples each process trains on at each micro-step: a pure function of the seed and the position.

Every epoch is a permutation of the dataset drawn from its own generator (seed + epoch), cut into global
micro-batches of `batch_size * processes` samples (the last incomplete one dropped); process r takes the r-th
slice of each. Because nothing here touches the global random state, a resumed run continues with exactly the
samples and random draws of an uninterrupted one, and two processes with batch B see the same samples as one
process with batch 2B.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

import torch
from torch.utils.data import DataLoader, Dataset

from training.data.sample import TryOnSample, collate


class MicroBatchPlan:
    def __init__(self, dataset_size: int, batch_size: int, processes: int, rank: int, seed: int):
        self.global_batch = batch_size * processes
        if dataset_size < self.global_batch:
            raise ValueError(
                f"the dataset has {dataset_size} samples, fewer than one batch of {batch_size} x {processes} "
                "process(es): lower batch_size or add samples"
            )
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.rank = rank
        self.seed = seed
        self.per_epoch = dataset_size // self.global_batch

    def indices(self, micro_step: int) -> list[int]:
        epoch, position = divmod(micro_step, self.per_epoch)
        order = self._order(epoch)
        start = position * self.global_batch + self.rank * self.batch_size
        return order[start : start + self.batch_size]

    def _order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()


class _PlannedBatches(torch.utils.data.Sampler[list[int]]):
    """A batch sampler over the plan from `first` on, for `count` micro-steps."""

    def __init__(self, plan: MicroBatchPlan, first: int, count: int):
        self.plan, self.first, self.count = plan, first, count

    def __iter__(self) -> Iterator[list[int]]:
        for micro_step in range(self.first, self.first + self.count):
            yield self.plan.indices(micro_step)

    def __len__(self) -> int:
        return self.count


def micro_batches(
    dataset: Dataset, plan: MicroBatchPlan, first: int, count: int, num_workers: int
) -> Iterator[TryOnSample]:
    """Collated batches of micro-steps first .. first + count - 1 for this process."""
    loader = DataLoader(
        dataset,
        batch_sampler=_PlannedBatches(plan, first, count),
        collate_fn=collate,
        num_workers=num_workers,
        # A generator of its own: creating the iterator must not draw from the global random state.
        generator=torch.Generator().manual_seed(plan.seed + first),
        persistent_workers=False,
    )
    return iter(loader)


def to_device(batch: TryOnSample, device: torch.device) -> TryOnSample:
    values = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        values[f.name] = value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
    return TryOnSample(**values)
