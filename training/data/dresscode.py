"""Dress Code's layout (Morelli et al. 2022), 1024x768, one folder per category:

    ROOT/CATEGORY/images/ID_0.jpg, ID_1.jpg         the person, the garment
    ROOT/CATEGORY/masks/ID_1.png                    the garment's mask (LaDI-VTON's loader; computed if absent)
    ROOT/CATEGORY/label_maps/ID_4.png               Dress Code's 18 labels (palette PNG)
    ROOT/CATEGORY/keypoints/ID_2.json               {"keypoints": [[x, y, score, id], ...]} on a 384x512 grid
    ROOT/CATEGORY/skeletons/ID_5.jpg                the OpenPose skeleton (not read: derived from keypoints)
    ROOT/CATEGORY/dense/ID_5.png, ID_5_uv.npz       DensePose parts and UV (optional)
    ROOT/CATEGORY/train_pairs.txt, test_pairs_paired.txt, test_pairs_unpaired.txt

As LaDI-VTON's loader does, the garment photo is put on white outside its mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.parsing.labels import DRESSCODE_LABELS
from services.pose.openpose_format import draw_skeleton
from services.warp.garment import garment_mask
from training.data.check import CheckReport
from training.data.dataset import DatasetError, Entry, TryOnDataset
from training.data.formats import (
    DRESSCODE_PALETTE_FLAT,
    dresscode_keypoints_json,
    lip_from_dresscode,
    lip_to_dresscode,
    read_dresscode_dense,
    read_dresscode_keypoints,
    read_image,
    read_indices,
    read_mask,
    read_pairs,
    resize_nearest,
    write_dresscode_dense,
    write_indices,
    write_jpeg,
    write_pairs,
)
from training.data.raw import RawSample
from vton.runtime.vocab import CATEGORIES


def _id(name: str) -> str:
    """`048462_0.jpg` -> `048462`"""
    return Path(name).stem.rsplit("_", 1)[0]


def pairs_file_name(split: str, pairing: str) -> str:
    return "train_pairs.txt" if split == "train" else f"test_pairs_{pairing}.txt"


class DressCodeDataset(TryOnDataset):
    layout = "dresscode"
    native_size = (1024, 768)
    data_folders = CATEGORIES
    telling_folders = ("images",)

    def categories(self) -> list[str]:
        return [c for c in CATEGORIES if (self.root / c / "images").is_dir()]

    def list_entries(self) -> list[Entry]:
        if self.split == "train" and self.pairing == "unpaired":
            raise DatasetError("Dress Code's train split is paired only (train_pairs.txt)")
        entries = []
        for category in self.categories():
            folder = self.root / category
            pairs_path = folder / pairs_file_name(self.split, self.pairing)
            if not pairs_path.is_file():
                raise DatasetError(
                    f"{pairs_path} is missing: Dress Code lists each split's pairs per category"
                )
            for person, garment in read_pairs(pairs_path):
                entries.append(
                    Entry(person, garment, category, folder / "images" / person, folder / "images" / garment)
                )
        return entries

    def load(self, entry: Entry) -> RawSample:
        width, height = self.width, self.height
        folder = entry.person.parent.parent
        person_id, garment_id = _id(entry.name), _id(entry.garment_name)
        garment = read_image(entry.garment)
        mask_path = folder / "masks" / f"{garment_id}_1.png"
        mask = read_mask(mask_path) if mask_path.is_file() else garment_mask(garment) > 0
        garment = np.where(mask[..., None], garment, 255).astype(np.uint8)
        densepose = None
        dense_path = folder / "dense" / f"{person_id}_5.png"
        if dense_path.is_file():
            densepose = resize_nearest(
                read_dresscode_dense(dense_path, folder / "dense" / f"{person_id}_5_uv.npz"), width, height
            )
        return self.working_size_sample(
            entry,
            read_image(entry.person),
            garment,
            mask,
            lip_from_dresscode(read_indices(folder / "label_maps" / f"{person_id}_4.png")),
            read_dresscode_keypoints(folder / "keypoints" / f"{person_id}_2.json", (width, height)),
            densepose,
        )

    @classmethod
    def check(cls, report: CheckReport) -> None:
        root = report.root
        for category in CATEGORIES:
            folder = root / category
            if not folder.is_dir():
                continue
            names = [
                n
                for n in ("train_pairs.txt", "test_pairs_paired.txt", "test_pairs_unpaired.txt")
                if (folder / n).is_file()
            ]
            if not names:
                report.add(
                    folder,
                    "no pairs file (train_pairs.txt, test_pairs_paired.txt or test_pairs_unpaired.txt)",
                )
            people, garments = set(), set()
            for name in names:
                pairs = report.pairs_file(folder / name) or []
                report.pairs += len(pairs)
                for person, garment in pairs:
                    people.add(person)
                    garments.add(garment)
            for person in sorted(people):
                person_id = _id(person)
                size = report.image_size(folder / "images" / person, "person photo")
                report.label_map(
                    folder / "label_maps" / f"{person_id}_4.png", "label map", len(DRESSCODE_LABELS), size
                )
                keypoints = folder / "keypoints" / f"{person_id}_2.json"
                if not keypoints.is_file():
                    report.add(keypoints, "missing (Dress Code keypoints JSON)")
                else:
                    try:
                        read_dresscode_keypoints(keypoints, (384, 512))
                    except ValueError as exc:
                        report.add(keypoints, str(exc).removeprefix(f"{keypoints}: "))
                dense = folder / "dense" / f"{person_id}_5.png"
                if dense.is_file():
                    report.label_map(dense, "DensePose parts", 25, size)
                    if not (folder / "dense" / f"{person_id}_5_uv.npz").is_file():
                        report.add(
                            folder / "dense" / f"{person_id}_5_uv.npz",
                            "missing (DensePose UV beside its parts)",
                        )
            for garment in sorted(garments):
                size = report.image_size(folder / "images" / garment, "garment photo")
                mask = folder / "masks" / f"{_id(garment)}_1.png"
                # The mask is optional here (the reader computes it when absent); a present one must be right.
                if mask.is_file():
                    report.garment_mask(mask, size)


def write_sample(root: Path, raw: RawSample) -> None:
    """One person (`ID_0.jpg`) and its garment (`ID_1.jpg`) with every annotation Dress Code keeps."""
    folder = Path(root) / raw.category
    for sub in ("images", "masks", "label_maps", "keypoints", "skeletons", "dense"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    person_id = _id(raw.name)
    height, width = raw.size
    write_jpeg(folder / "images" / raw.name, raw.person)
    write_jpeg(folder / "images" / raw.garment_name, raw.garment)
    from PIL import Image

    Image.fromarray(np.where(raw.garment_mask, 255, 0).astype(np.uint8)).save(
        folder / "masks" / f"{_id(raw.garment_name)}_1.png"
    )
    write_indices(
        folder / "label_maps" / f"{person_id}_4.png", lip_to_dresscode(raw.parse), DRESSCODE_PALETTE_FLAT
    )
    (folder / "keypoints" / f"{person_id}_2.json").write_text(
        dresscode_keypoints_json(raw.keypoints, (width, height))
    )
    write_jpeg(folder / "skeletons" / f"{person_id}_5.jpg", draw_skeleton(raw.keypoints, width, height))
    if raw.densepose is not None:
        write_dresscode_dense(
            folder / "dense" / f"{person_id}_5.png", folder / "dense" / f"{person_id}_5_uv.npz", raw.densepose
        )


def write_split_pairs(root: Path, category: str, split: str, pairs: dict[str, list[tuple[str, str]]]) -> None:
    """`pairs` by pairing ("paired", "unpaired"); train keeps the paired list only."""
    folder = Path(root) / category
    folder.mkdir(parents=True, exist_ok=True)
    for pairing, listed in pairs.items():
        if split == "train" and pairing != "paired":
            continue
        write_pairs(folder / pairs_file_name(split, pairing), listed)
