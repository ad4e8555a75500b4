"""`vton dataset check` on a broken tree: every missing or malformed file is named, with what is wrong."""

from __future__ import annotations

import numpy as np
from PIL import Image

from training.data import dresscode, vitonhd
from training.data.check import check_dataset
from training.data.raw import RawSample
from vton_cli.cli import main as vton


def _raw(name: str, garment: str, category: str = "upper_body") -> RawSample:
    height, width = 256, 192
    person = np.full((height, width, 3), 200, np.uint8)
    parse = np.zeros((height, width), np.uint8)
    parse[60:180, 50:140] = 5
    parse[20:60, 70:120] = 13
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[[1, 2, 5, 8, 11]] = [(95, 62, 1), (60, 65, 1), (130, 65, 1), (70, 170, 1), (120, 170, 1)]
    garment_image = np.full((height, width, 3), 255, np.uint8)
    garment_image[40:200, 30:160] = 40
    return RawSample(
        name, garment, category, person, garment_image, garment_image[..., 0] < 128, parse, keypoints
    )


def test_check_names_every_broken_file_of_a_vitonhd_tree(tmp_path, capsys):
    names = [f"0000{i}_00.jpg" for i in range(1, 5)]
    for name in names:
        vitonhd.write_sample(tmp_path, "train", _raw(name, name))
    vitonhd.write_split_pairs(tmp_path, "train", [(n, n) for n in names] + [("09999_00.jpg", "09999_00.jpg")])
    assert check_dataset(tmp_path).problems[0].path == "train/image/09999_00.jpg"
    train = tmp_path / "train"
    (train / "image-parse-v3" / "00001_00.png").unlink()
    (train / "openpose_json" / "00002_00_keypoints.json").write_text(
        '{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}'
    )
    (train / "cloth" / "00003_00.jpg").write_bytes(b"\xff\xd8 truncated")
    bad_labels = np.full((256, 192), 33, np.uint8)
    Image.fromarray(bad_labels, mode="L").save(train / "image-parse-v3" / "00004_00.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(train / "cloth-mask" / "00004_00.jpg")

    report = check_dataset(tmp_path)
    found = {p.path: p.message for p in report.problems}
    assert found["train/image/09999_00.jpg"] == "missing (person photo)"
    assert found["train/image-parse-v3/00001_00.png"] == "missing (parse map)"
    assert (
        "3 pose numbers; expected 54 (COCO-18) or 75 (BODY_25)"
        in found["train/openpose_json/00002_00_keypoints.json"]
    )
    assert found["train/cloth/00003_00.jpg"].startswith("not a readable image (garment photo)")
    assert "holds label 33; its label set has 20 classes" in found["train/image-parse-v3/00004_00.png"]
    assert found["train/cloth-mask/00004_00.jpg"] == "garment mask is 10x10, the garment photo 192x256"
    assert vton(["dataset", "check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "train/image-parse-v3/00001_00.png: missing (parse map)" in out.out
    assert f"{len(report.problems)} problems" in out.err


def test_check_of_a_dresscode_tree_names_missing_pairs_files_and_annotations(tmp_path):
    dresscode.write_sample(tmp_path, _raw("000001_0.jpg", "000001_1.jpg"))
    dresscode.write_sample(tmp_path, _raw("000002_0.jpg", "000002_1.jpg", "dresses"))
    dresscode.write_split_pairs(
        tmp_path, "upper_body", "train", {"paired": [("000001_0.jpg", "000001_1.jpg")]}
    )
    (tmp_path / "upper_body" / "keypoints" / "000001_2.json").write_text('{"points": []}')
    (tmp_path / "upper_body" / "masks" / "000001_1.png").unlink()
    report = check_dataset(tmp_path)
    found = {p.path: p.message for p in report.problems}
    assert found["dresses"].startswith("no pairs file")
    assert "not Dress Code keypoints" in found["upper_body/keypoints/000001_2.json"]
    assert len(report.problems) == 2  # the garment mask is optional (computed when absent)
