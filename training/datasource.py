"""The training set behind `--data`: a local dataset folder, or one fetched from S3 first.

The folder is read by the dataset readers of training/data (one per layout, behind one TryOnSample interface) at
the run's working size; the readers apply their papers' augmentations.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from training.config import TrainConfig


def open_training_set(data: str, config: TrainConfig, out: Path) -> Dataset:
    if data.startswith("s3://"):
        from training.s3transfer import download_tree

        data = str(download_tree(data, out / "dataset"))
    folder = Path(data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {folder} is not a folder")
    from training.data.dataset import open_dataset

    return open_dataset(folder, split="train", size=(config.height, config.width))
