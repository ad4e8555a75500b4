"""VITON-HD's layout (Choi et al. 2021; HR-VITON's preprocessed release), 1024x768, upper body only:

    ROOT/train_pairs.txt, ROOT/test_pairs.txt      `person garment` a line (test: the unpaired list)
    ROOT/SPLIT/image/ID.jpg                        the person
    ROOT/SPLIT/cloth/ID.jpg, cloth-mask/ID.jpg     the garment the person wears, and its mask
    ROOT/SPLIT/image-parse-v3/ID.png               LIP indices, 10 = neck (palette PNG)
    ROOT/SPLIT/openpose_json/ID_keypoints.json     OpenPose BODY_25 (or COCO-18) in pixels of the photo
    ROOT/SPLIT/image-densepose/ID.jpg              DensePose parts coloured on black (optional)

Paired: each person with `cloth/` of its own name (as LaDI-VTON's loader pairs them); unpaired: the garment
the pairs file names. Without a pairs file every person of `image/` is taken, paired.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.parsing.labels import vitonhd_to_lip
from training.data.check import CheckReport
from training.data.dataset import Entry, TryOnDataset
from training.data.formats import (
    LIP_PALETTE_FLAT,
    lip_to_vitonhd,
    openpose_body25_json,
    parts_from_rendering,
    read_image,
    read_indices,
    read_mask,
    read_openpose,
    read_pairs,
    rendering_from_parts,
    resize_nearest,
    scale_keypoints,
    write_indices,
    write_jpeg,
    write_pairs,
)
from training.data.raw import RawSample

CATEGORY = "upper_body"
IMAGE_SIZE = (768, 1024)  # width, height
PARSE_CLASSES = 20  # LIP's indices, 10 being the neck


def _stem(name: str) -> str:
    return Path(name).stem


class VitonHDDataset(TryOnDataset):
    layout = "vitonhd"
    native_size = (1024, 768)

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        # Either folder: a release that lacks one is still read as VITON-HD, so `vton dataset check` names the
        # files it misses.
        return any(
            (root / split / "image-parse-v3").is_dir() or (root / split / "openpose_json").is_dir()
            for split in ("train", "test")
        )

    def _folder(self, name: str) -> Path:
        return self.root / self.split / name

    def list_entries(self) -> list[Entry]:
        pairs_path = self.root / f"{self.split}_pairs.txt"
        if pairs_path.is_file():
            pairs = read_pairs(pairs_path)
        else:
            people = sorted(p.name for p in self._folder("image").glob("*.jpg"))
            pairs = [(p, p) for p in people]
        return self.split_entries(pairs, CATEGORY, lambda person: person)

    def load(self, entry: Entry) -> RawSample:
        width, height = self.width, self.height
        person = read_image(entry.person)
        h0, w0 = person.shape[:2]
        stem = _stem(entry.name)
        keypoints = read_openpose(self._folder("openpose_json") / f"{stem}_keypoints.json")
        parse = vitonhd_to_lip(read_indices(self._folder("image-parse-v3") / f"{stem}.png"))
        densepose = None
        dense_path = self._folder("image-densepose") / entry.name
        if dense_path.is_file():
            # The picture gives the parts back; U and V are not in it and stay 0.
            parts = resize_nearest(parts_from_rendering(read_image(dense_path)), width, height)
            densepose = np.stack([parts, np.zeros_like(parts), np.zeros_like(parts)])
        return self.working_size_sample(
            entry,
            person,
            read_image(entry.garment),
            read_mask(self._folder("cloth-mask") / entry.garment_name),
            parse,
            scale_keypoints(keypoints, width / w0, height / h0),
            densepose,
        )

    @classmethod
    def check(cls, report: CheckReport) -> None:
        root = report.root
        splits = [s for s in ("train", "test") if (root / s).is_dir()]
        for split in splits:
            folder = root / split
            pairs_path = root / f"{split}_pairs.txt"
            pairs = report.pairs_file(pairs_path)
            if pairs is None:
                continue
            report.pairs += len(pairs)
            garments = set()
            for person, garment in pairs:
                garments.update((person, garment))
                stem = _stem(person)
                size = report.image_size(folder / "image" / person, "person photo")
                report.label_map(folder / "image-parse-v3" / f"{stem}.png", "parse map", PARSE_CLASSES, size)
                report.openpose(folder / "openpose_json" / f"{stem}_keypoints.json")
                dense = folder / "image-densepose" / person
                if dense.exists():
                    report.same_size(dense, "DensePose picture", size)
            for garment in sorted(garments):
                cloth_size = report.image_size(folder / "cloth" / garment, "garment photo")
                report.garment_mask(folder / "cloth-mask" / garment, cloth_size)


def write_sample(root: Path, split: str, raw: RawSample) -> None:
    """One person and its garment in VITON-HD's layout (the person's own name for both, as VITON-HD pairs)."""
    folder = Path(root) / split
    for sub in ("image", "cloth", "cloth-mask", "image-parse-v3", "openpose_json", "image-densepose"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stem = _stem(raw.name)
    write_jpeg(folder / "image" / raw.name, raw.person)
    write_jpeg(folder / "cloth" / raw.garment_name, raw.garment)
    write_jpeg(folder / "cloth-mask" / raw.garment_name, np.where(raw.garment_mask, 255, 0).astype(np.uint8))
    write_indices(folder / "image-parse-v3" / f"{stem}.png", lip_to_vitonhd(raw.parse), LIP_PALETTE_FLAT)
    (folder / "openpose_json" / f"{stem}_keypoints.json").write_text(openpose_body25_json(raw.keypoints))
    if raw.densepose is not None:
        write_jpeg(folder / "image-densepose" / raw.name, rendering_from_parts(raw.densepose[0]))


def write_split_pairs(root: Path, split: str, pairs: list[tuple[str, str]]) -> None:
    write_pairs(Path(root) / f"{split}_pairs.txt", pairs)
