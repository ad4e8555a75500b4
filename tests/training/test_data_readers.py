"""The three layout readers behind one TryOnSample: the CP-VTON reader on the viton256 sample, the VITON-HD and
Dress Code readers on small trees written here, the augmentations, and the layout detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from services.densepose.visualize import render_iuv
from services.parsing.labels import get_palette
from training.data import dresscode, vitonhd
from training.data.augment import Augmentation, augment
from training.data.dataset import DatasetError, detect_layout, open_dataset
from training.data.formats import read_openpose
from training.data.raw import RawSample, image_array, to_sample
from training.data.sample import TryOnSample, collate
from vton.runtime.vocab import Keypoint, Lip


def _check_sample(sample: TryOnSample, height: int, width: int) -> None:
    assert sample.person.shape == sample.garment.shape == sample.masked_person.shape == (3, height, width)
    assert sample.garment_mask.shape == sample.agnostic_mask.shape == (1, height, width)
    assert sample.parse.shape == (height, width) and sample.parse.dtype == torch.int64
    assert sample.pose_map.shape == (18, height, width)
    assert sample.keypoints.shape == (18, 3)
    assert sample.person.min() >= -1 and sample.person.max() <= 1
    assert set(sample.garment_mask.unique().tolist()) <= {0.0, 1.0}
    assert int(sample.parse.max()) < len(Lip)
    found = sample.keypoints[:, 2] > 0
    assert (sample.keypoints[found, 0] < width).all() and (sample.keypoints[found, 1] < height).all()
    # The pose map peaks at each found keypoint.
    for i in torch.nonzero(found).flatten().tolist():
        x, y = (int(v) for v in sample.keypoints[i, :2])
        assert sample.pose_map[i, y, x] > 0.9
    # The masked person is grey exactly where the agnostic mask is.
    inside = sample.agnostic_mask[0] > 0
    assert inside.any()
    grey = image_array(sample.masked_person)[inside.numpy()]
    assert (grey == 128).all()


def test_cpvton_reader_on_the_viton256_sample(viton256):
    dataset = open_dataset(viton256, "test")
    assert type(dataset).__name__ == "CPVtonDataset" and dataset.layout == "cpvton"
    assert len(dataset) > 100
    sample = dataset[0]
    _check_sample(sample, 256, 192)
    assert sample.name == "000001_0.jpg" and sample.garment_name == "000001_1.jpg"
    assert sample.category == "upper_body" and sample.densepose is None
    # The keypoints are the file's, in pixels of the 192x256 photo.
    on_file = read_openpose(viton256 / "test" / "pose" / "000001_0_keypoints.json")
    assert np.allclose(sample.keypoints.numpy(), on_file)
    # The person wears its garment: the agnostic mask covers the upper clothes of the parse.
    upper = sample.parse == Lip.UPPER_CLOTHES
    assert upper.sum() > 500 and sample.agnostic_mask[0][upper].float().mean() > 0.95
    # The garment mask is the file's.
    mask = np.asarray(Image.open(viton256 / "test" / "cloth-mask" / "000001_1.png").convert("L")) >= 128
    assert np.array_equal(sample.garment_mask[0].numpy() > 0, mask)


def test_cpvton_reader_at_another_size_and_in_batches(viton256):
    dataset = open_dataset(viton256, "test", size=(512, 384))
    sample = dataset[0]
    _check_sample(sample, 512, 384)
    on_file = read_openpose(viton256 / "test" / "pose" / "000001_0_keypoints.json")
    found = on_file[:, 2] > 0
    assert np.allclose(sample.keypoints.numpy()[found, :2], on_file[found, :2] * 2, atol=1e-3)
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate)))
    assert batch.person.shape == (3, 3, 512, 384) and batch.name[:2] == ["000001_0.jpg", "000097_0.jpg"]


def test_cpvton_unpaired_takes_the_pairs_file_garments_that_are_present(viton256):
    dataset = open_dataset(viton256, "test", "unpaired")
    pairs = dict(line.split() for line in (viton256 / "test" / "test_pairs.txt").read_text().splitlines())
    assert 0 < len(dataset) < len(pairs)
    for entry in dataset.entries:
        assert entry.garment_name == pairs[entry.name] and entry.garment.is_file()
    assert dataset[0].garment_name != dataset[0].name.replace("_0", "_1")


# --- VITON-HD: a tree written here in the files' own formats -------------------------------------------------


def _person_picture(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A picture of a 'person' and its VITON-HD parse: a torso of upper clothes, arms, a head with a neck."""
    image = np.full((height, width, 3), 230, np.uint8)
    parse = np.zeros((height, width), np.uint8)
    regions = {
        Lip.FACE: (slice(80, 200), slice(320, 448)),
        10: (slice(200, 260), slice(350, 418)),  # VITON-HD's neck
        Lip.UPPER_CLOTHES: (slice(260, 700), slice(230, 540)),
        Lip.LEFT_ARM: (slice(260, 650), slice(540, 600)),
        Lip.RIGHT_ARM: (slice(260, 650), slice(170, 230)),
        Lip.PANTS: (slice(700, 1024), slice(250, 520)),
    }
    for label, (rows, cols) in regions.items():
        parse[rows, cols] = label
        image[rows, cols] = (label * 12) % 255
    return image, parse


BODY25 = {
    0: (384, 140),
    1: (384, 265),
    2: (240, 270),
    3: (200, 450),
    4: (200, 640),
    5: (530, 270),
    6: (570, 450),
    7: (570, 640),
    9: (300, 700),
    12: (470, 700),
}


def _write_vitonhd(root: Path) -> None:
    test = root / "test"
    for sub in ("image", "cloth", "cloth-mask", "image-parse-v3", "openpose_json", "image-densepose"):
        (test / sub).mkdir(parents=True)
    for name in ("00001_00", "00002_00"):
        image, parse = _person_picture(1024, 768)
        Image.fromarray(image).save(test / "image" / f"{name}.jpg", quality=95)
        labels = Image.fromarray(parse, mode="P")
        labels.putpalette(get_palette(20))
        labels.save(test / "image-parse-v3" / f"{name}.png")
        cloth = np.full((1024, 768, 3), 255, np.uint8)
        cloth[200:800, 150:620] = (20, 90, 200) if name.endswith("1_00") else (200, 30, 30)
        Image.fromarray(cloth).save(test / "cloth" / f"{name}.jpg", quality=95)
        Image.fromarray(np.where(cloth[..., 0] < 250, 255, 0).astype(np.uint8)).save(
            test / "cloth-mask" / f"{name}.jpg"
        )
        points = [0.0] * 75
        for index, (x, y) in BODY25.items():
            points[3 * index : 3 * index + 3] = [x, y, 0.9]
        (test / "openpose_json" / f"{name}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": points}]})
        )
        iuv = np.zeros((3, 1024, 768), np.float32)
        iuv[0][parse == Lip.UPPER_CLOTHES] = 2
        iuv[0][parse == Lip.LEFT_ARM] = 15
        Image.fromarray(render_iuv(None, iuv)).save(test / "image-densepose" / f"{name}.jpg", quality=90)
    (root / "test_pairs.txt").write_text("00001_00.jpg 00002_00.jpg\n00002_00.jpg 00001_00.jpg\n")


def test_vitonhd_reader_on_a_tree_in_its_own_formats(tmp_path):
    _write_vitonhd(tmp_path)
    assert detect_layout(tmp_path) == "vitonhd"
    dataset = open_dataset(tmp_path, "test", size=(512, 384))
    assert [e.name for e in dataset.entries] == ["00001_00.jpg", "00002_00.jpg"]
    sample = dataset[0]
    _check_sample(sample, 512, 384)
    assert sample.garment_name == "00001_00.jpg"  # paired: the person's own garment
    # VITON-HD's neck (10) is LIP's face; the other labels are LIP's own.
    assert Lip.JUMPSUITS not in sample.parse.unique().tolist()
    assert sample.parse[115, 192] == Lip.FACE and sample.parse[240, 192] == Lip.UPPER_CLOTHES
    # BODY_25 is mapped to COCO-18 (the right hip is BODY_25's 9) and scaled to the working size.
    assert sample.keypoints[Keypoint.R_HIP].tolist() == pytest.approx([150, 350, 0.9])
    assert sample.keypoints[Keypoint.L_SHOULDER].tolist() == pytest.approx([265, 135, 0.9])
    assert sample.keypoints[Keypoint.R_EYE, 2] == 0
    # The DensePose picture gives its parts back despite the JPEG.
    parts = sample.densepose[0]
    assert (parts[sample.parse == Lip.UPPER_CLOTHES] == 2).float().mean() > 0.97
    assert (parts[sample.parse == Lip.LEFT_ARM] == 15).float().mean() > 0.9
    assert (sample.densepose[1:] == 0).all()  # U and V are not in the picture
    unpaired = open_dataset(tmp_path, "test", "unpaired", size=(512, 384))
    assert [(e.name, e.garment_name) for e in unpaired.entries] == [
        ("00001_00.jpg", "00002_00.jpg"),
        ("00002_00.jpg", "00001_00.jpg"),
    ]


def _raw_sample(
    category: str = "upper_body", name: str = "000001_0.jpg", garment: str = "000001_1.jpg"
) -> RawSample:
    image, parse = _person_picture(1024, 768)
    parse[parse == 10] = Lip.FACE
    keypoints = np.zeros((18, 3), np.float32)
    for coco, body25 in enumerate((0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)):
        if body25 in BODY25:
            keypoints[coco] = (*BODY25[body25], 0.9)
    cloth = np.full((1024, 768, 3), 255, np.uint8)
    cloth[200:800, 150:620] = (20, 90, 200)
    densepose = np.zeros((3, 1024, 768), np.uint8)
    densepose[0][parse == Lip.UPPER_CLOTHES] = 2
    densepose[1][parse == Lip.UPPER_CLOTHES] = 100
    densepose[2][parse == Lip.UPPER_CLOTHES] = 200
    return RawSample(name, garment, category, image, cloth, cloth[..., 0] < 250, parse, keypoints, densepose)


@pytest.mark.parametrize("layout", ["vitonhd", "dresscode"])
def test_what_the_builder_writes_reads_back_the_same(tmp_path, layout):
    raw = _raw_sample(
        name="000001.jpg" if layout == "vitonhd" else "000001_0.jpg",
        garment="000001.jpg" if layout == "vitonhd" else "000001_1.jpg",
    )
    if layout == "vitonhd":
        vitonhd.write_sample(tmp_path, "test", raw)
        vitonhd.write_split_pairs(tmp_path, "test", [(raw.name, raw.garment_name)])
    else:
        dresscode.write_sample(tmp_path, raw)
        dresscode.write_split_pairs(
            tmp_path, raw.category, "test", {"paired": [(raw.name, raw.garment_name)]}
        )
    dataset = open_dataset(tmp_path, "test")
    assert dataset.layout == layout
    back = dataset.raw(0)
    assert np.array_equal(back.parse, raw.parse)
    assert np.array_equal(back.garment_mask, raw.garment_mask)
    assert np.allclose(back.keypoints, raw.keypoints, atol=0.02)
    assert np.abs(back.person.astype(int) - raw.person).mean() < 2
    if layout == "vitonhd":  # parts from a JPEG picture: right but for a few edge pixels
        assert (back.densepose[0] == raw.densepose[0]).mean() > 0.995
    else:
        assert np.array_equal(back.densepose[0], raw.densepose[0])
        assert np.abs(back.densepose[1:].astype(int) - raw.densepose[1:]).max() <= 1


def test_dresscode_reader_maps_its_labels_keypoints_and_garment(tmp_path):
    raw = _raw_sample("lower_body")
    dresscode.write_sample(tmp_path, raw)
    folder = tmp_path / "lower_body"
    # Dress Code's own label indices and keypoint grid, written as its files hold them.
    labels = np.zeros((1024, 768), np.uint8)
    labels[300:700, 200:500] = 6  # pants
    labels[700:900, 200:350] = 12  # left leg
    labels[100:200, 300:450] = 11  # head
    labels[750:800, 600:700] = 16  # bag
    image = Image.fromarray(labels, mode="P")
    image.putpalette(get_palette(18))
    image.save(folder / "label_maps" / "000001_4.png")
    points = [[-1.0, -1.0, 0.0, float(i)] for i in range(18)]
    points[8] = [100.0, 250.0, 0.8, 8.0]  # right hip on the 384x512 grid
    (folder / "keypoints" / "000001_2.json").write_text(json.dumps({"keypoints": points}))
    for name in ("train_pairs.txt", "test_pairs_paired.txt"):
        (folder / name).write_text("000001_0.jpg 000001_1.jpg\n")
    dataset = open_dataset(tmp_path, "test", size=(512, 384))
    sample = dataset[0]
    assert sample.category == "lower_body"
    assert sample.parse[250, 170] == Lip.PANTS and sample.parse[400, 120] == Lip.LEFT_LEG
    assert sample.parse[75, 180] == Lip.FACE and sample.parse[385, 320] == Lip.BACKGROUND  # the bag
    assert sample.keypoints[Keypoint.R_HIP].tolist() == pytest.approx([100, 250, 0.8])
    assert (sample.keypoints[[i for i in range(18) if i != Keypoint.R_HIP], 2] == 0).all()
    # The garment is put on white outside its mask, as LaDI-VTON's loader does.
    garment = image_array(sample.garment)
    assert (garment[sample.garment_mask[0].numpy() == 0] == 255).all()
    with pytest.raises(DatasetError, match="paired only"):
        open_dataset(tmp_path, "train", "unpaired")


@pytest.mark.parametrize(
    ("folders", "layout"),
    [
        (["test/image-parse-v3"], "vitonhd"),  # either of VITON-HD's own folders is enough
        (["train/openpose_json"], "vitonhd"),
        (["dresses/images"], "dresscode"),
        (["train/pose", "train/image-parse"], "cpvton"),
        (["train/pose", "test/image-parse"], None),  # CP-VTON's two folders in one split, not across two
        (["upper_body/label_maps"], None),
    ],
)
def test_detect_layout_tells_each_layout_by_its_folders(tmp_path, folders, layout):
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True)
    if layout is None:
        with pytest.raises(DatasetError, match="none of the layouts"):
            detect_layout(tmp_path)
    else:
        assert detect_layout(tmp_path) == layout


def test_open_dataset_names_the_layouts_it_knows(tmp_path):
    with pytest.raises(DatasetError, match="none of the layouts"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown split"):
        open_dataset(tmp_path, "val", layout="cpvton")


# --- augmentations ---------------------------------------------------------------------------------------------


def test_a_flip_swaps_left_and_right_everywhere():
    raw = _raw_sample()
    flipped = augment(raw, np.random.default_rng(0), Augmentation(flip=1.0, geometry=0.0, colour=0.0))
    width = raw.size[1]
    assert np.array_equal(flipped.person, raw.person[:, ::-1])
    # The left arm is now on the other side of the picture and labelled right arm.
    assert np.array_equal(flipped.parse == Lip.RIGHT_ARM, (raw.parse == Lip.LEFT_ARM)[:, ::-1])
    right_shoulder = flipped.keypoints[Keypoint.R_SHOULDER]
    assert right_shoulder[0] == pytest.approx(width - 1 - raw.keypoints[Keypoint.L_SHOULDER, 0])
    assert np.array_equal(flipped.garment_mask, raw.garment_mask[:, ::-1])
    twice = augment(flipped, np.random.default_rng(0), Augmentation(flip=1.0, geometry=0.0, colour=0.0))
    assert np.array_equal(twice.parse, raw.parse) and np.allclose(twice.keypoints, raw.keypoints)


def test_a_shift_moves_keypoints_with_the_pixels_and_drops_those_it_pushes_out():
    raw = _raw_sample()
    # Only the person's geometry: scale and shift drawn for sure, no flip, no colour.
    moved = augment(raw, np.random.default_rng(4), Augmentation(flip=0.0, geometry=1.0, colour=0.0))
    assert not np.array_equal(moved.parse, raw.parse)
    for joint in range(18):
        if raw.keypoints[joint, 2] == 0 or moved.keypoints[joint, 2] == 0:
            continue
        x0, y0 = (int(round(v)) for v in raw.keypoints[joint, :2])
        x1, y1 = (int(round(v)) for v in moved.keypoints[joint, :2])
        assert moved.parse[y1, x1] == raw.parse[y0, x0]
    sample = to_sample(moved)  # the agnostic mask follows the moved parse and pose
    upper = sample.parse == Lip.UPPER_CLOTHES
    assert sample.agnostic_mask[0][upper].mean() > 0.95
    far = augment(
        raw, np.random.default_rng(0), Augmentation(flip=0.0, geometry=1.0, scale=0.0, shift=0.2, colour=0.0)
    )
    far_out = (far.keypoints[:, 2] == 0) & (raw.keypoints[:, 2] > 0)
    assert far_out.sum() + (far.keypoints[:, 2] > 0).sum() == (raw.keypoints[:, 2] > 0).sum()


def test_colour_changes_person_and_garment_alike_and_augmentation_is_seeded():
    raw = _raw_sample()
    blue = np.array([20, 90, 200], np.uint8)
    raw.person[0:40, 0:40] = blue  # the garment's colour, on the person too
    config = Augmentation(flip=0.0, geometry=0.0, colour=1.0, contrast=0.0)  # the HSV shift alone
    a = augment(raw, np.random.default_rng(7), config)
    b = augment(raw, np.random.default_rng(7), config)
    assert np.array_equal(a.person, b.person) and np.array_equal(a.garment, b.garment)
    assert not np.array_equal(a.person, raw.person) and np.array_equal(a.parse, raw.parse)
    # The garment's blue changed exactly as the same blue on the person did.
    assert not np.array_equal(a.garment[500, 380], blue)
    assert np.array_equal(a.garment[500, 380], a.person[20, 20])


def test_the_dataset_augments_only_when_asked(viton256):
    plain = open_dataset(viton256, "test")
    augmented = open_dataset(viton256, "test", augmentation=Augmentation(flip=1.0, geometry=0.0, colour=0.0))
    torch.manual_seed(0)
    assert torch.equal(augmented[0].person, plain[0].person.flip(-1))
    assert torch.equal(plain[0].person, plain[0].person.clone())  # no augmentation: the files as they are
