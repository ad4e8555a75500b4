"""`vton dataset check`: what a dataset folder lacks or holds malformed, file by file.

Each layout module lists the files each of its pairs needs and calls the checks here; `check_dataset` finds
the layout and gathers every problem, so one run reports them all instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from training.data.formats import FormatError, read_indices, read_openpose, read_pairs

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    path: str  # the file (or folder) at fault, relative to the dataset's root
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class CheckReport:
    root: Path
    layout: str
    pairs: int = 0  # pairs the pairs files list (or persons, without a pairs file)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: Path, message: str) -> None:
        try:
            shown = str(Path(path).relative_to(self.root))
        except ValueError:
            shown = str(path)
        self.problems.append(Problem(shown, message))

    def read(self, path: Path, reader: Callable[[Path], T]) -> T | None:
        """What `reader` makes of the file, or None with its FormatError recorded as the file's problem."""
        try:
            return reader(path)
        except FormatError as exc:
            self.add(path, str(exc).removeprefix(f"{path}: "))
            return None

    def garment_mask(self, path: Path, garment_size: tuple[int, int] | None) -> None:
        """The garment's mask: readable, as large as the garment photo, and neither empty nor full."""
        if self.same_size(path, "garment mask", garment_size, "the garment photo") and not mask_values_ok(
            path
        ):
            self.add(path, "the garment mask is empty or covers the whole photo")

    def image_size(self, path: Path, what: str) -> tuple[int, int] | None:
        """(width, height) of an image file, or None with a problem recorded when it is absent or unreadable."""
        if not path.is_file():
            self.add(path, f"missing ({what})")
            return None
        try:
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                return image.size
        except (OSError, SyntaxError) as exc:
            self.add(path, f"not a readable image ({what}): {exc}")
            return None

    def same_size(
        self, path: Path, what: str, expected: tuple[int, int] | None, reference: str = "the person photo"
    ) -> bool:
        """Whether the image is readable and as large as `reference` (a problem is recorded when not)."""
        size = self.image_size(path, what)
        if size is not None and expected is not None and size != expected:
            self.add(path, f"{what} is {size[0]}x{size[1]}, {reference} {expected[0]}x{expected[1]}")
            return False
        return size is not None

    def label_map(self, path: Path, what: str, classes: int, expected: tuple[int, int] | None) -> None:
        size = self.image_size(path, what)
        if size is None:
            return
        labels = self.read(path, read_indices)
        if labels is None:
            return
        if expected is not None and size != expected:
            self.add(path, f"{what} is {size[0]}x{size[1]}, the person photo {expected[0]}x{expected[1]}")
        top = int(labels.max(initial=0))
        if top >= classes:
            self.add(
                path, f"{what} holds label {top}; its label set has {classes} classes (0..{classes - 1})"
            )

    def openpose(self, path: Path) -> None:
        if not path.is_file():
            self.add(path, "missing (OpenPose keypoints JSON)")
            return
        keypoints = self.read(path, read_openpose)
        if keypoints is None:
            return
        if not (keypoints[:, 2] > 0).any():
            self.add(path, "no person in the keypoints file (people is empty or every confidence is 0)")

    def pairs_file(self, path: Path) -> list[tuple[str, str]] | None:
        if not path.is_file():
            self.add(path, "missing (pairs file: one 'PERSON GARMENT' a line)")
            return None
        pairs = self.read(path, read_pairs)
        if pairs is None:
            return None
        if not pairs:
            self.add(path, "the pairs file is empty")
        return pairs


def check_dataset(root: Path | str) -> CheckReport:
    """Every problem of the dataset at `root`, in whichever of the three layouts it is."""
    from training.data.dataset import _readers, detect_layout

    root = Path(root)
    layout = detect_layout(root)
    report = CheckReport(root, layout)
    _readers()[layout].check(report)  # type: ignore[attr-defined]
    return report


def mask_values_ok(path: Path) -> bool:
    """A garment mask holds a garment: some pixels at or above half grey, and not all of them."""
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"))
    share = float((grey >= 128).mean())
    return 0.0 < share < 1.0
