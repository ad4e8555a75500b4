"""CP-VTON's layout of VITON (Han et al. 2018) at 256x192, as CP-VTON+ redistributes it:

    ROOT/SPLIT_pairs.txt (or ROOT/SPLIT/SPLIT_pairs.txt)   `ID_0.jpg ID_1.jpg` a line (test: the unpaired list)
    ROOT/SPLIT/image/ID_0.jpg                              the person
    ROOT/SPLIT/cloth/ID_1.jpg, cloth-mask/ID_1.jpg|png     the garment and its mask
    ROOT/SPLIT/image-parse/ID_0.png                        LIP indices (palette PNG)
    ROOT/SPLIT/pose/ID_0_keypoints.json                    OpenPose COCO-18 in `people[0].pose_keypoints`

Paired: each person `ID_0` with its own garment `ID_1`; unpaired: the garment the pairs file names.
"""

from __future__ import annotations

from pathlib import Path

from training.data.check import CheckReport
from training.data.dataset import Entry, TryOnDataset
from training.data.formats import (
    lip_from_cpvton,
    read_image,
    read_indices,
    read_mask,
    read_openpose,
    read_pairs,
    scale_keypoints,
)
from training.data.raw import RawSample

CATEGORY = "upper_body"
PARSE_CLASSES = 21  # LIP's 20, and 20 for the neck in the test split's image-parse-new


def own_garment(person: str) -> str:
    """`000001_0.jpg` -> `000001_1.jpg`"""
    return person.replace("_0.", "_1.")


def _pairs_path(root: Path, split: str) -> Path | None:
    for path in (root / f"{split}_pairs.txt", root / split / f"{split}_pairs.txt"):
        if path.is_file():
            return path
    return None


def _mask_path(folder: Path, garment: str) -> Path:
    """cloth-mask/ID_1 with the garment's extension, or PNG (the sample's 1-bit masks)."""
    stem = Path(garment).stem
    for suffix in (Path(garment).suffix, ".png", ".jpg"):
        path = folder / "cloth-mask" / f"{stem}{suffix}"
        if path.is_file():
            return path
    return folder / "cloth-mask" / garment


class CPVtonDataset(TryOnDataset):
    layout = "cpvton"
    native_size = (256, 192)
    telling_folders = ("pose", "image-parse")

    def list_entries(self) -> list[Entry]:
        folder = self.root / self.split
        pairs_path = _pairs_path(self.root, self.split)
        if pairs_path is not None:
            pairs = read_pairs(pairs_path)
        else:
            pairs = [(p.name, own_garment(p.name)) for p in sorted((folder / "image").glob("*_0.jpg"))]
        return self.split_entries(pairs, CATEGORY, own_garment)

    def load(self, entry: Entry) -> RawSample:
        width, height = self.width, self.height
        folder = self.root / self.split
        person = read_image(entry.person)
        h0, w0 = person.shape[:2]
        stem = Path(entry.name).stem
        return self.working_size_sample(
            entry,
            person,
            read_image(entry.garment),
            read_mask(_mask_path(folder, entry.garment_name)),
            lip_from_cpvton(read_indices(folder / "image-parse" / f"{stem}.png")),
            scale_keypoints(
                read_openpose(folder / "pose" / f"{stem}_keypoints.json"), width / w0, height / h0
            ),
        )

    @classmethod
    def check(cls, report: CheckReport) -> None:
        root = report.root
        for split in ("train", "test"):
            folder = root / split
            if not folder.is_dir():
                continue
            pairs_path = _pairs_path(root, split)
            if pairs_path is None:
                report.add(root / f"{split}_pairs.txt", f"missing (pairs file of the {split} split)")
                people = sorted(p.name for p in (folder / "image").glob("*_0.jpg"))
            else:
                people = sorted({person for person, _ in report.read(pairs_path, read_pairs) or []})
            report.pairs += len(people)
            for person in people:
                stem = Path(person).stem
                size = report.image_size(folder / "image" / person, "person photo")
                report.label_map(folder / "image-parse" / f"{stem}.png", "parse map", PARSE_CLASSES, size)
                report.openpose(folder / "pose" / f"{stem}_keypoints.json")
                garment = own_garment(person)
                cloth_size = report.image_size(folder / "cloth" / garment, "the person's own garment photo")
                report.garment_mask(_mask_path(folder, garment), cloth_size)
