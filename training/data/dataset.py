"""One torch Dataset interface over the three layouts: every reader lists its pairs as Entries and loads one
as a RawSample at the working size; this base class augments it (when asked) and derives the TryOnSample.

`open_dataset(root, split)` finds the layout of a folder and returns its reader.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.augment import Augmentation, augment
from training.data.formats import resize, resize_nearest
from training.data.raw import RawSample, to_sample
from training.data.sample import TryOnSample

log = logging.getLogger(__name__)

Pairing = Literal["paired", "unpaired"]
PAIRINGS = ("paired", "unpaired")
SPLITS = ("train", "test")


class DatasetError(ValueError):
    """The folder is not a dataset of the layout asked for, or the request does not fit it."""


@dataclass(frozen=True)
class Entry:
    """One pair of a split: the person photo and the garment photo it is paired with, by path."""

    name: str  # the person image's file name
    garment_name: str  # the garment image's file name
    category: str
    person: Path
    garment: Path


class TryOnDataset(Dataset):
    """Yields TryOnSample at `size` = (height, width). `augmentation` (training only) is drawn from torch's
    generator, so `torch.manual_seed` and the DataLoader's per-worker seeds govern it."""

    layout: str = ""
    native_size: tuple[int, int] = (1024, 768)
    # What tells the layout from a folder (`detect_layout`): one of `data_folders` (the splits; Dress Code's
    # categories) holds every one of `telling_folders`.
    data_folders: tuple[str, ...] = SPLITS
    telling_folders: tuple[str, ...]

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        pairing: Pairing = "paired",
        size: tuple[int, int] | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        if pairing not in PAIRINGS:
            raise DatasetError(f"unknown pairing {pairing!r}: expected paired or unpaired")
        self.root = Path(root)
        self.split, self.pairing = split, pairing
        self.height, self.width = size or self.native_size
        if self.height < 32 or self.width < 32:
            raise DatasetError(
                f"the working size {self.height}x{self.width} is too small (32 pixels at least)"
            )
        self.augmentation = augmentation
        entries = self.list_entries()
        self.entries = [e for e in entries if e.person.is_file() and e.garment.is_file()]
        dropped = len(entries) - len(self.entries)
        if dropped:
            # CP-VTON's and VITON-HD's unpaired lists name garments of the whole set; a sample of it lacks most.
            log.warning(
                "%s %s/%s: %d of %d pairs left out, their photo or garment is absent",
                self.layout,
                split,
                pairing,
                dropped,
                len(entries),
            )

    # --- what a layout defines ----------------------------------------------------------------------------
    @classmethod
    def looks_like(cls, root: Path) -> bool:
        return any(
            all((root / folder / telling).is_dir() for telling in cls.telling_folders)
            for folder in cls.data_folders
        )

    def list_entries(self) -> list[Entry]:
        raise NotImplementedError

    def load(self, entry: Entry) -> RawSample:
        raise NotImplementedError

    def split_entries(
        self, pairs: list[tuple[str, str]], category: str, own_garment: Callable[[str], str]
    ) -> list[Entry]:
        """The pairs of a split folder with `image/` and `cloth/` (VITON-HD's and CP-VTON's): paired, each
        person with the garment it wears (`own_garment(person)`); unpaired, with the garment its pair names."""
        folder = self.root / self.split
        entries = []
        for person, garment in pairs:
            garment = own_garment(person) if self.pairing == "paired" else garment
            entries.append(
                Entry(person, garment, category, folder / "image" / person, folder / "cloth" / garment)
            )
        return entries

    def working_size_sample(
        self,
        entry: Entry,
        person: np.ndarray,
        garment: np.ndarray,
        garment_mask: np.ndarray,
        parse: np.ndarray,
        keypoints: np.ndarray,
        densepose: np.ndarray | None = None,
    ) -> RawSample:
        """`entry`'s sample from its files' arrays at their own size, resized to the working size (photos
        smoothly, the mask and the labels to the nearest pixel, so no label is blended into another);
        `keypoints` and `densepose` are given at the working size already."""
        width, height = self.width, self.height
        return RawSample(
            name=entry.name,
            garment_name=entry.garment_name,
            category=entry.category,
            person=resize(person, width, height),
            garment=resize(garment, width, height),
            garment_mask=resize_nearest(garment_mask, width, height),
            parse=resize_nearest(parse, width, height),
            keypoints=keypoints,
            densepose=densepose,
        )

    # --- the Dataset ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def raw(self, index: int) -> RawSample:
        """The sample as its files give it, at the working size, without augmentation."""
        return self.load(self.entries[index])

    def __getitem__(self, index: int) -> TryOnSample:
        raw = self.raw(index)
        if self.augmentation is not None:
            seed = int(torch.randint(0, 2**62, ()).item())
            raw = augment(raw, np.random.default_rng(seed), self.augmentation)
        return to_sample(raw)


def _readers() -> dict[str, type[TryOnDataset]]:
    from training.data.cpvton import CPVtonDataset
    from training.data.dresscode import DressCodeDataset
    from training.data.vitonhd import VitonHDDataset

    return {"vitonhd": VitonHDDataset, "dresscode": DressCodeDataset, "cpvton": CPVtonDataset}


LAYOUTS = ("vitonhd", "dresscode", "cpvton")


def detect_layout(root: Path | str) -> str:
    """The layout of a dataset folder, from the folders its layout requires."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    for name, reader in _readers().items():
        if reader.looks_like(root):
            return name
    raise DatasetError(
        f"{root} is in none of the layouts: VITON-HD has train/ or test/ with image/, cloth/, image-parse-v3/ and "
        "openpose_json/; Dress Code has upper_body/, lower_body/ or dresses/ with images/, label_maps/ and "
        "keypoints/; CP-VTON has train/ or test/ with image/, cloth/, image-parse/ and pose/"
    )


def open_dataset(
    root: Path | str,
    split: str = "train",
    pairing: Pairing = "paired",
    size: tuple[int, int] | None = None,
    augmentation: Augmentation | None = None,
    layout: str | None = None,
) -> TryOnDataset:
    """The reader of the dataset at `root` (its layout found from its folders unless given)."""
    layout = layout or detect_layout(root)
    readers = _readers()
    if layout not in readers:
        raise DatasetError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    return readers[layout](root, split, pairing, size, augmentation)
