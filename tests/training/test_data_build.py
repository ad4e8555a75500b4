"""`vton dataset build` with the platform's embedded stages in this process: tiny datasets from the openvto
example photos (a fresh clone has them) and from ../shared/data, the refusal report, resuming after an
interruption, and `vton dataset check` on what it wrote."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.data.build import BuildError, build_dataset
from training.data.check import check_dataset
from training.data.dataset import open_dataset
from vton.runtime import images
from vton_cli.cli import main as vton

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VTON_SHARED_DIR", REPO.parent / "shared")) / "data"

pytest.importorskip("ai_edge_litert")


class CountingAnnotator:
    """The in-process annotator, counting the photos it is asked about (to prove a resume skips done ones)."""

    def __init__(self) -> None:
        from training.data.annotate import InProcessAnnotator

        self.inner = InProcessAnnotator()
        self.backends = self.inner.backends
        self.calls = 0

    def annotate(self, person, garment, category):
        self.calls += 1
        return self.inner.annotate(person, garment, category)


@pytest.fixture(scope="module")
def annotator() -> CountingAnnotator:
    from vton.runtime.errors import WeightsMissing

    try:
        return CountingAnnotator()
    except WeightsMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def photos(examples, tmp_path_factory) -> tuple[Path, Path, Path]:
    """People and garments from the openvto examples, plus a photo of two people and one of nobody."""
    root = tmp_path_factory.mktemp("photos")
    people, garments = root / "people", root / "garments"
    people.mkdir()
    shutil.copytree(examples / "clothes", garments)
    for name in ("1.png", "3.png"):
        shutil.copy(examples / "avatars" / name, people / f"avatar{name}")
    shutil.copy(examples / "people" / "1_selfie.jpg", people / "selfie.jpg")
    a, b = (
        images.read_rgb(str(examples / "avatars" / "1.png")),
        images.read_rgb(str(examples / "avatars" / "3.png")),
    )
    images.write_png(str(people / "two.png"), np.concatenate([a, b[: a.shape[0], : a.shape[1]]], 1))
    images.write_png(str(people / "nobody.png"), np.full((1024, 768, 3), 200, np.uint8))
    pairs = root / "pairs.txt"
    pairs.write_text(
        "avatar1.png shirts/1_front.jpg\n"
        "avatar3.png pants/3_front.jpg lower_body\n"
        "selfie.jpg shirts/2_front.jpg\n"
        "two.png shirts/3_front.jpg\n"
        "nobody.png shirts/4_front.jpg\n"
        "avatar1.png shirts/9_front.jpg\n"  # no such garment
    )
    return people, garments, pairs


@pytest.fixture(scope="module")
def built(photos, annotator, tmp_path_factory):
    people, garments, pairs = photos
    out = tmp_path_factory.mktemp("built") / "dresscode"
    report = build_dataset(
        people, garments, out, "dresscode", "test", pairs_file=pairs, annotator=annotator, progress=False
    )
    return out, report


def test_the_build_writes_the_layout_and_refuses_what_cannot_make_a_sample(built):
    out, report = built
    written = {o.person: o for o in report.written}
    assert set(written) == {"avatar1.png", "avatar3.png"}
    assert written["avatar3.png"].category == "lower_body" and written["avatar3.png"].name == "avatar3_0.jpg"
    reasons = {o.person: o.reason for o in report.refused}
    # avatar1.png's second pair names a garment that does not exist; the selfie shows no hips.
    assert sorted(reasons.values()) == ["cut_off_body", "garment_not_found", "no_person", "several_people"]
    assert reasons["selfie.jpg"] == "cut_off_body" and reasons["two.png"] == "several_people"
    assert reasons["nobody.png"] == "no_person"
    on_disk = json.loads((out / "build_report.json").read_text())
    assert on_disk["written"] == 2 and on_disk["refused"] == 4
    assert on_disk["refused_by_reason"]["several_people"] == 1
    refusal = next(r for r in on_disk["refusals"] if r["person"] == "selfie.jpg")
    assert "hip" in refusal["detail"]
    assert (out / "upper_body" / "test_pairs_paired.txt").read_text() == "avatar1_0.jpg avatar1_1.jpg\n"
    assert (out / "lower_body" / "test_pairs_unpaired.txt").is_file()


def test_what_the_build_writes_passes_the_check_and_reads_as_samples(built):
    out, _ = built
    check = check_dataset(out)
    assert check.layout == "dresscode" and check.ok, [str(p) for p in check.problems]
    dataset = open_dataset(out, "test", size=(512, 384))
    assert sorted(s.name for s in dataset.entries) == ["avatar1_0.jpg", "avatar3_0.jpg"]
    for index in range(len(dataset)):
        sample = dataset[index]
        assert (sample.keypoints[:, 2] > 0).sum() >= 12
        assert sample.densepose is not None and sample.densepose[0].max() > 0
        garment_labels = (5, 6, 7) if sample.category == "upper_body" else (9, 12)
        worn = np.isin(sample.parse.numpy(), garment_labels)
        assert worn.sum() > 1000
        assert sample.agnostic_mask[0].numpy()[worn].mean() > 0.9


def test_an_interrupted_build_resumes_where_it_stopped(photos, annotator, tmp_path):
    people, garments, pairs = photos
    out = tmp_path / "resumed"

    def stop_after_first(outcome):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(
            people,
            garments,
            out,
            "dresscode",
            "test",
            pairs_file=pairs,
            annotator=annotator,
            progress=False,
            on_done=stop_after_first,
        )
    assert not (out / "build_report.json").exists()
    before = annotator.calls
    report = build_dataset(
        people, garments, out, "dresscode", "test", pairs_file=pairs, annotator=annotator, progress=False
    )
    # The first photo was done before the interruption; the garment-less pair never reaches the stages.
    assert annotator.calls - before == 4
    assert [o.person for o in report.written] == ["avatar1.png", "avatar3.png"]
    assert len(report.refused) == 4
    assert check_dataset(out).ok
    with pytest.raises(BuildError, match="holds a dresscode test build"):
        build_dataset(
            people, garments, out, "vitonhd", "test", pairs_file=pairs, annotator=annotator, progress=False
        )


def test_people_and_garments_are_matched_by_file_name(examples, annotator, tmp_path):
    people, garments = tmp_path / "people", tmp_path / "garments" / "upper"
    people.mkdir()
    garments.mkdir(parents=True)
    shutil.copy(examples / "avatars" / "2.png", people / "look-2.png")
    shutil.copy(examples / "clothes" / "shirts" / "2_front.jpg", garments / "look-2.jpg")
    shutil.copy(examples / "avatars" / "4.png", people / "look-4.png")  # no garment of that name
    report = build_dataset(
        people,
        tmp_path / "garments",
        tmp_path / "out",
        "vitonhd",
        "train",
        annotator=annotator,
        progress=False,
    )
    assert [o.name for o in report.written] == ["look-2.jpg"]
    assert [(o.person, o.reason) for o in report.refused] == [("look-4.png", "garment_not_found")]
    assert (tmp_path / "out" / "train_pairs.txt").read_text() == "look-2.jpg look-2.jpg\n"
    assert check_dataset(tmp_path / "out").ok
    sample = open_dataset(tmp_path / "out", "train")[0]
    assert sample.person.shape == (3, 1024, 768) and sample.densepose is not None


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is not on this machine")
def test_vton_dataset_build_and_check_on_the_shared_photos(tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("01861_00.jpg upper/00126_00.jpg\nfashn_model.webp upper/02015_00.jpg\n")
    out = tmp_path / "vitonhd"
    code = vton(
        [
            "dataset",
            "build",
            str(SHARED_DATA / "people"),
            str(SHARED_DATA / "garments"),
            str(out),
            "--layout",
            "vitonhd",
            "--split",
            "test",
            "--pairs",
            str(pairs),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "2 pairs written, 0 photos refused" in printed
    assert vton(["dataset", "check", str(out)]) == 0
    assert "vitonhd layout, 2 pairs, no problems" in capsys.readouterr().out
    dataset = open_dataset(out, "test", "unpaired", size=(512, 384))
    assert [(e.name, e.garment_name) for e in dataset.entries] == [
        ("01861_00.jpg", "fashn_model.jpg"),
        ("fashn_model.jpg", "01861_00.jpg"),
    ]
    assert dataset[1].garment.shape == (3, 512, 384)


def test_a_bad_pairs_file_stops_the_build_before_any_photo(photos, tmp_path, capsys):
    people, garments, _ = photos
    bad = tmp_path / "bad.txt"
    bad.write_text("avatar1.png shirts/1_front.jpg sweaters\n")
    code = vton(
        [
            "dataset",
            "build",
            str(people),
            str(garments),
            str(tmp_path / "out"),
            "--layout",
            "vitonhd",
            "--pairs",
            str(bad),
        ]
    )
    assert code == 2
    assert "bad.txt:1: expected 'PERSON GARMENT [CATEGORY]'" in capsys.readouterr().err
