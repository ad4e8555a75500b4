"""`vton dataset build`: raw photos of people and garments -> a dataset in VITON-HD's or Dress Code's layout.

Each person photo is matched with its garment photo (same file name, or a pairs file), both are framed to the
layouts' 768x1024 (padded to 3:4 with the photo's border colour, never cropped), and the platform's stages
annotate them (in this process, or through a running platform). A photo that cannot make a sample is refused
with its reason: no person, several people, a body cut off where the garment goes, no garment photo, no
garment in it. The build keeps its progress in OUT/.build/, so a run that was interrupted resumes where it
stopped; it ends with the layout's pairs files and a report (OUT/build_report.json) of what it refused.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from training.data import dresscode, vitonhd
from training.data.annotate import Annotation, Refused
from training.data.formats import FormatError, read_image, resize, resize_nearest
from training.data.progress import progress_bar
from training.data.raw import RawSample
from vton.runtime.vocab import CATEGORIES, Keypoint

LAYOUT_SIZE = (768, 1024)  # width, height: VITON-HD's and Dress Code's photos
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
STATE_DIR = ".build"
REPORT = "build_report.json"

# Folder names that say a garment's category (the shared data's garments/upper|lower|dresses, Dress Code's own).
CATEGORY_ALIASES = {
    "upper": "upper_body",
    "upper_body": "upper_body",
    "tops": "upper_body",
    "shirts": "upper_body",
    "jackets": "upper_body",
    "lower": "lower_body",
    "lower_body": "lower_body",
    "pants": "lower_body",
    "trousers": "lower_body",
    "skirts": "lower_body",
    "dress": "dresses",
    "dresses": "dresses",
}

# The joints a garment of each category covers: a photo missing one of them cuts the body off where the
# garment goes (the pose backends leave out joints outside the frame). Lower-body garments ask for the knees,
# not the ankles: shorts and skirts end above them, and shop photos of trousers often crop the feet.
REQUIRED_JOINTS = {
    "upper_body": (Keypoint.NECK, Keypoint.R_SHOULDER, Keypoint.L_SHOULDER, Keypoint.R_HIP, Keypoint.L_HIP),
    "lower_body": (Keypoint.R_HIP, Keypoint.L_HIP, Keypoint.R_KNEE, Keypoint.L_KNEE),
    "dresses": (
        Keypoint.R_SHOULDER,
        Keypoint.L_SHOULDER,
        Keypoint.R_HIP,
        Keypoint.L_HIP,
        Keypoint.R_KNEE,
        Keypoint.L_KNEE,
    ),
}


class BuildError(ValueError):
    """The build cannot start: bad folders, a malformed pairs file, an OUT_DIR of another build."""


@dataclass(frozen=True)
class Job:
    person: Path
    garment: Path | None  # None: no garment photo matched
    category: str
    missing: str = ""  # why no garment matched


@dataclass
class Outcome:
    person: str  # the person photo, relative to PEOPLE_DIR
    garment: str | None
    category: str
    status: str  # "written" or "refused"
    name: str = ""  # the person's file name in the dataset
    garment_name: str = ""
    reason: str = ""
    detail: str = ""


@dataclass
class BuildReport:
    layout: str
    split: str
    out: str
    backends: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def written(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "written"]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "refused"]

    def as_dict(self) -> dict:
        return {
            "layout": self.layout,
            "split": self.split,
            "out": self.out,
            "backends": self.backends,
            "people": len(self.outcomes),
            "written": len(self.written),
            "refused": len(self.refused),
            "refused_by_reason": dict(Counter(o.reason for o in self.refused)),
            "refusals": [
                {"person": o.person, "garment": o.garment, "reason": o.reason, "detail": o.detail}
                for o in self.refused
            ],
        }

    def summary(self) -> str:
        lines = [
            f"{self.layout} {self.split} split in {self.out}: {len(self.written)} pairs written, {len(self.refused)} photos refused"
        ]
        for reason, count in Counter(o.reason for o in self.refused).most_common():
            lines.append(f"  {reason}: {count}")
        for o in self.refused:
            lines.append(f"    {o.person}: {o.detail}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ matching


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and STATE_DIR not in p.parts
    )


def _category_of(garment: Path, garments_dir: Path, default: str) -> str:
    for part in reversed(garment.relative_to(garments_dir).parts[:-1]):
        if part.lower() in CATEGORY_ALIASES:
            return CATEGORY_ALIASES[part.lower()]
    return default


def match(people_dir: Path, garments_dir: Path, pairs_file: Path | None, default_category: str) -> list[Job]:
    """The person photos, each with its garment photo: from the pairs file (`PERSON GARMENT [CATEGORY]` a line,
    paths relative to the two folders), else the garment of the same file name (stem) anywhere under
    GARMENTS_DIR. The category: the pairs file's, else a garment folder's name (upper/lower/dresses...), else
    the default."""
    for folder, what in ((people_dir, "PEOPLE_DIR"), (garments_dir, "GARMENTS_DIR")):
        if not folder.is_dir():
            raise BuildError(f"{what} {folder} is not a folder")
    if default_category not in CATEGORIES:
        raise BuildError(f"unknown category {default_category!r}: expected one of {', '.join(CATEGORIES)}")
    garments = _images_under(garments_dir)
    if pairs_file is not None:
        return _match_pairs_file(people_dir, garments_dir, pairs_file, default_category)
    by_stem: dict[str, list[Path]] = {}
    for garment in garments:
        by_stem.setdefault(garment.stem, []).append(garment)
    jobs = []
    people = _images_under(people_dir)
    if not people:
        raise BuildError(f"PEOPLE_DIR {people_dir} holds no photos ({', '.join(IMAGE_SUFFIXES)})")
    for person in people:
        found = by_stem.get(person.stem, [])
        if len(found) == 1:
            jobs.append(Job(person, found[0], _category_of(found[0], garments_dir, default_category)))
        elif not found:
            jobs.append(
                Job(
                    person,
                    None,
                    default_category,
                    f"no garment photo named {person.stem}.* in {garments_dir}",
                )
            )
        else:
            names = ", ".join(str(g.relative_to(garments_dir)) for g in found)
            jobs.append(
                Job(
                    person,
                    None,
                    default_category,
                    f"{len(found)} garment photos named {person.stem}: {names}",
                )
            )
    return jobs


def _match_pairs_file(
    people_dir: Path, garments_dir: Path, pairs_file: Path, default_category: str
) -> list[Job]:
    if not pairs_file.is_file():
        raise BuildError(f"the pairs file {pairs_file} does not exist")
    jobs = []
    for number, line in enumerate(pairs_file.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in CATEGORIES):
            raise BuildError(
                f"{pairs_file}:{number}: expected 'PERSON GARMENT [CATEGORY]' with CATEGORY one of "
                f"{', '.join(CATEGORIES)}, got {line.strip()!r}"
            )
        person, garment = people_dir / fields[0], garments_dir / fields[1]
        if not person.is_file():
            raise BuildError(f"{pairs_file}:{number}: the person photo {person} does not exist")
        category = fields[2] if len(fields) == 3 else _category_of(garment, garments_dir, default_category)
        if garment.is_file():
            jobs.append(Job(person, garment, category))
        else:
            jobs.append(
                Job(
                    person,
                    None,
                    category,
                    f"the pairs file names {fields[1]}, which is not in {garments_dir}",
                )
            )
    if not jobs:
        raise BuildError(f"the pairs file {pairs_file} lists no pairs")
    return jobs


# ------------------------------------------------------------------------------------------- framing


def frame(image: np.ndarray, width: int = LAYOUT_SIZE[0], height: int = LAYOUT_SIZE[1]) -> np.ndarray:
    """The photo padded to the layout's aspect with its border's median colour, then resized to it."""
    h, w = image.shape[:2]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    colour = tuple(int(c) for c in np.median(border, axis=0))
    if w * height > h * width:  # wider than the layout: pad above and below
        pad = round(w * height / width) - h
        image = cv2.copyMakeBorder(image, pad // 2, pad - pad // 2, 0, 0, cv2.BORDER_CONSTANT, value=colour)
    elif w * height < h * width:
        pad = round(h * width / height) - w
        image = cv2.copyMakeBorder(image, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_CONSTANT, value=colour)
    return resize(image, width, height)


def _joint_name(joint: Keypoint) -> str:
    side, _, part = joint.name.lower().partition("_")
    return {"r": f"right {part}", "l": f"left {part}"}.get(side, joint.name.lower())


def check_body(keypoints: np.ndarray, category: str) -> None:
    missing = [_joint_name(j) for j in REQUIRED_JOINTS[category] if keypoints[j, 2] <= 0]
    if missing:
        raise Refused(
            "cut_off_body",
            f"cut-off body: no {', '.join(missing)} in the photo (the {category} garment covers them)",
        )


def _safe_stem(path: Path) -> str:
    # Pairs files are space-separated: keep names to plain characters (Dress Code splits at the last "_").
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-") or "photo"


def names_for(layout: str, person: Path) -> tuple[str, str]:
    stem = _safe_stem(person)
    if layout == "dresscode":
        return f"{stem}_0.jpg", f"{stem}_1.jpg"
    return f"{stem}.jpg", f"{stem}.jpg"


# -------------------------------------------------------------------------------------------- build


class Builder:
    def __init__(self, out: Path, layout: str, split: str, annotator) -> None:
        if layout not in ("vitonhd", "dresscode"):
            raise BuildError(f"unknown layout {layout!r}: the builder writes vitonhd or dresscode")
        if split not in ("train", "test"):
            raise BuildError(f"unknown split {split!r}: expected train or test")
        self.out, self.layout, self.split, self.annotator = Path(out), layout, split, annotator
        self.state_dir = self.out / STATE_DIR
        self.state_file = self.state_dir / "state.jsonl"

    def _start(self) -> list[Outcome]:
        """The outcomes of an earlier run of the same build (resume), after checking OUT_DIR is that build's."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        options_file = self.state_dir / "options.json"
        options = {"layout": self.layout, "split": self.split}
        if options_file.is_file():
            earlier = json.loads(options_file.read_text())
            if earlier != options:
                raise BuildError(
                    f"{self.out} holds a {earlier['layout']} {earlier['split']} build; this one is {self.layout} "
                    f"{self.split}: use another OUT_DIR"
                )
        else:
            options_file.write_text(json.dumps(options))
        done = []
        if self.state_file.is_file():
            for line in self.state_file.read_text().splitlines():
                try:
                    done.append(Outcome(**json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    continue  # a line cut short by the interruption: that pair runs again
        return done

    def _record(self, outcome: Outcome) -> None:
        with self.state_file.open("a") as f:
            f.write(json.dumps(asdict(outcome)) + "\n")

    def run(
        self,
        jobs: list[Job],
        people_dir: Path,
        garments_dir: Path,
        progress: bool = True,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> BuildReport:
        done = {(o.person, o.garment): o for o in self._start()}
        used_names = {o.name: o.person for o in done.values() if o.status == "written"}
        report = BuildReport(self.layout, self.split, str(self.out))

        def key(job: Job) -> tuple[str, str | None]:
            garment = None if job.garment is None else str(job.garment.relative_to(garments_dir))
            return str(job.person.relative_to(people_dir)), garment

        bar = progress_bar(len(jobs), progress, "photo", "dataset build")
        bar.update(sum(1 for job in jobs if key(job) in done))
        try:
            for job in jobs:
                if key(job) in done:
                    report.outcomes.append(done[key(job)])
                    continue
                outcome = self._one(job, *key(job), used_names)
                self._record(outcome)
                report.outcomes.append(outcome)
                bar.update(1)
                bar.set_postfix(written=len(report.written), refused=len(report.refused))
                if on_done is not None:
                    on_done(outcome)
        finally:
            bar.close()
        report.backends = dict(getattr(self.annotator, "backends", {}))
        self._finish(report)
        return report

    def _one(self, job: Job, key: str, garment_key: str | None, used_names: dict[str, str]) -> Outcome:
        outcome = Outcome(key, garment_key, job.category, "refused")
        try:
            if job.garment is None:
                raise Refused("garment_not_found", job.missing)
            if self.layout == "vitonhd" and job.category != "upper_body":
                raise Refused(
                    "category", f"VITON-HD holds upper-body garments only; this pair is {job.category}"
                )
            name, garment_name = names_for(self.layout, job.person)
            if used_names.get(name, key) != key:
                raise Refused(
                    "duplicate_name", f"{used_names[name]} already gives the dataset the name {name}"
                )
            try:
                person, garment = frame(read_image(job.person)), frame(read_image(job.garment))
            except FormatError as exc:
                raise Refused("unreadable", str(exc)) from None
            annotation = self.annotator.annotate(person, garment, job.category)
            check_body(annotation.keypoints, job.category)
            self._write(_raw(name, garment_name, job.category, person, garment, annotation))
        except Refused as refusal:
            outcome.reason, outcome.detail = refusal.reason, str(refusal)
            return outcome
        used_names[name] = key
        outcome.status, outcome.name, outcome.garment_name = "written", name, garment_name
        return outcome

    def _write(self, raw: RawSample) -> None:
        if self.layout == "vitonhd":
            vitonhd.write_sample(self.out, self.split, raw)
        else:
            dresscode.write_sample(self.out, raw)

    def _finish(self, report: BuildReport) -> None:
        written = report.written
        if self.layout == "vitonhd":
            paired = [(o.name, o.garment_name) for o in written]
            # VITON-HD's train list pairs each person with its own garment; its test list is the unpaired one.
            vitonhd.write_split_pairs(
                self.out, self.split, paired if self.split == "train" else _unpaired(paired)
            )
        else:
            for category in CATEGORIES:
                paired = [(o.name, o.garment_name) for o in written if o.category == category]
                if paired:
                    dresscode.write_split_pairs(
                        self.out, category, self.split, {"paired": paired, "unpaired": _unpaired(paired)}
                    )
        (self.out / REPORT).write_text(json.dumps(report.as_dict(), indent=2))


def _unpaired(paired: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each person with the next person's garment (the same as paired for a single person)."""
    garments = [g for _, g in paired]
    return [(p, garments[(i + 1) % len(garments)]) for i, (p, _) in enumerate(paired)]


def _raw(
    name: str, garment_name: str, category: str, person: np.ndarray, garment: np.ndarray, a: Annotation
) -> RawSample:
    height, width = person.shape[:2]
    return RawSample(
        name=name,
        garment_name=garment_name,
        category=category,
        person=person,
        garment=garment,
        garment_mask=resize_nearest(a.garment_mask, garment.shape[1], garment.shape[0]),
        parse=resize_nearest(a.parse, width, height),
        keypoints=a.keypoints,
        densepose=a.densepose,
    )


def build_dataset(
    people_dir: Path | str,
    garments_dir: Path | str,
    out: Path | str,
    layout: str,
    split: str = "train",
    pairs_file: Path | str | None = None,
    category: str = "upper_body",
    annotator=None,
    server: str | None = None,
    backends: dict[str, str] | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    progress: bool = True,
    on_done: Callable[[Outcome], None] | None = None,
) -> BuildReport:
    """Build (or resume building) a dataset; returns the report it also writes to OUT/build_report.json."""
    people_dir, garments_dir = Path(people_dir), Path(garments_dir)
    jobs = match(people_dir, garments_dir, Path(pairs_file) if pairs_file else None, category)
    builder = Builder(Path(out), layout, split, None)
    if annotator is None:
        from training.data.annotate import InProcessAnnotator, PlatformAnnotator

        annotator = PlatformAnnotator(server) if server else InProcessAnnotator(backends, device, precision)
    builder.annotator = annotator
    return builder.run(jobs, people_dir, garments_dir, progress, on_done)
