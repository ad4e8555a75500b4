"""tryon-lite's trainer and its VITON recipe: it learns, its checkpoint is served, the GPU recipe runs end to end.

The recipe runs here on the CPU on a tiny CP-VTON tree written by the test (256x192 photos of a coloured torso),
packed into shards as the real set is, in a Python that cannot import diffusers (the GPU machine has none).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from services.diffusion.backends.tryon_lite import TryOnLiteBackend
from services.warp.backends.ladi_vton import LadiVtonWarpBackend
from services.warp.testing import save_random
from services.warp.types import WarpInputs
from tests.training.conftest import tiny_config
from training.config import TrainConfig
from training.data.dataset import open_dataset
from training.data.sample import TryOnSample, collate
from training.loop import train
from training.recipes.gpu_pairs import GpuPairs
from training.recipes.pack_viton import pack, unpack
from training.trainers.tryon_lite import TryOnLiteTrainer, ssim_map, warp_batch
from vton.runtime import messages
from vton.v1 import common_pb2, diffusion_pb2, diffusion_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
TINY_OPTIONS = {"channels": [8, 16, 32], "vgg_weight": 0.0}
GARMENT = (5, 6, 7)  # LIP upper clothes, dress, coat


class PerfectWarps(torch.utils.data.Dataset):
    """Synthetic pairs whose cached warp is the person's own garment on white: what a perfect warp would give."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> TryOnSample:
        sample = self.base[index]
        region = torch.isin(sample.parse, torch.tensor(GARMENT))[None].float()
        warped = sample.person * region + (1 - region)  # the garment's pixels on white, as a warp renders it
        return dataclasses.replace(sample, warped_garment=warped, warped_mask=region)


def config(steps: int, **changes) -> TrainConfig:
    """tiny_config's run from scratch, with the tiny generator and a faster learning rate."""
    return tiny_config(
        None, steps, **{"learning_rate": 3e-3, "init": "scratch", "options": TINY_OPTIONS, **changes}
    )


def fixed_loss(trainer: TryOnLiteTrainer, batch: TryOnSample) -> float:
    with torch.no_grad():
        trainer.trainable["generator"].eval()
        value = trainer.loss(batch)["loss"].item()
    trainer.train_mode()
    return value


def test_tryon_lite_halves_its_loss_on_one_fixed_batch(synthetic, tmp_path):
    dataset = PerfectWarps(synthetic(2, 64, 48))
    batch = collate([dataset[0], dataset[1]])
    before_trainer = TryOnLiteTrainer(config(30))
    before_trainer.setup(torch.device("cpu"), torch.float32)
    before = fixed_loss(before_trainer, batch)

    trainer = TryOnLiteTrainer(config(30))
    result = train(trainer, dataset, tmp_path, log=lambda *_: None)
    after = fixed_loss(trainer, batch)
    assert result.step == 30
    assert after <= before / 2, f"loss {before:.4f} -> {after:.4f}"
    assert {"l1", "ssim", "mask"} <= set(result.losses[30])


def test_init_official_continues_from_the_models_directorys_tryon_lite(tmp_path):
    trained = TryOnLiteTrainer(config(1))
    trained.setup(torch.device("cpu"), torch.float32)
    trained.export(trained.trainable, tmp_path / "tryon-lite")
    trainer = TryOnLiteTrainer(config(1, init="official", models_dir=str(tmp_path)))
    trainer.setup(torch.device("cpu"), torch.float32)
    for name, value in trained.trainable["generator"].state_dict().items():
        assert torch.equal(trainer.trainable["generator"].state_dict()[name], value), name
    other = TryOnLiteTrainer(config(1, init="official", models_dir=str(tmp_path), height=128, width=96))
    with pytest.raises(ValueError, match="trained at 64x48; set height and width to it"):
        other.setup(torch.device("cpu"), torch.float32)


def test_ssim_map_is_one_for_equal_images_and_lower_for_noise():
    a = torch.rand(1, 3, 32, 24) * 2 - 1
    assert torch.allclose(ssim_map(a, a), torch.ones(1, 1, 32, 24), atol=1e-5)
    noisy = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
    assert ssim_map(a, noisy).mean() < 0.9
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 run's loss: computed in float32 all the same
        mixed = ssim_map(a, noisy)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, ssim_map(a, noisy), atol=1e-6)


def test_its_checkpoint_loads_through_the_backend_and_answers_a_tryon_over_grpc(
    synthetic, tmp_path, monkeypatch
):
    dataset = PerfectWarps(synthetic(2, 64, 48))
    train(TryOnLiteTrainer(config(3)), dataset, tmp_path / "run", log=lambda *_: None)
    models = tmp_path / "run" / "weights"
    assert {p.name for p in (models / "tryon-lite").iterdir()} >= {
        "config.json",
        "diffusion_pytorch_model.safetensors",
    }
    monkeypatch.setenv("VTON_MODELS_DIR", str(models))
    from services.diffusion.service import build_server

    server, port, _ = build_server(backend="tryon-lite", port=0)
    try:
        h, w = 200, 150
        rng = np.random.default_rng(0)
        person = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[50:150, 40:110] = 255
        request = diffusion_pb2.TryOnRequest(
            person=messages.png_image(person),
            masked_person=messages.png_image(np.where(mask[..., None] > 0, 128, person).astype(np.uint8)),
            agnostic_mask=messages.png_image(mask),
            warped_garment=messages.png_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
            warped_mask=messages.png_image(mask),
            garment=messages.png_image(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)),
            label_map=messages.label_map(np.full((h, w), 5, np.uint8), "lip"),
            options=common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY),
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = diffusion_pb2_grpc.DiffusionServiceStub(channel)
            reply = stub.TryOn(request, timeout=60)
            lower = diffusion_pb2.TryOnRequest()
            lower.CopyFrom(request)
            lower.options.category = common_pb2.CATEGORY_LOWER_BODY
            with pytest.raises(grpc.RpcError) as refused:
                stub.TryOn(lower, timeout=60)
        image = messages.rgb_from(reply.image, "image")
        assert reply.backend.name == "tryon-lite" and image.shape == (h, w, 3)
        assert np.array_equal(image[mask == 0], person[mask == 0])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "upper_body garments only" in refused.value.details()
    finally:
        server.stop(0)


def test_without_cached_warps_the_trained_warp_module_warps_as_the_warp_stage_does(synthetic, tmp_path):
    folder = tmp_path / "ladi-vton-warp-vitonhd"
    save_random(folder)
    backend = LadiVtonWarpBackend.from_pretrained(folder)
    sample = synthetic(1, 128, 96)[0]
    batch = collate([sample])
    warped, mask = warp_batch(backend, batch)

    def uint8(image: torch.Tensor) -> np.ndarray:
        return ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)

    agnostic = (sample.agnostic_mask[0].numpy() * 255).astype(np.uint8)
    served = backend.warp(
        WarpInputs(
            garment=uint8(sample.garment),
            person=uint8(sample.person),
            masked_person=uint8(sample.masked_person),
            agnostic_mask=agnostic,
            keypoints=sample.keypoints.numpy(),
            labels=sample.parse.numpy().astype(np.uint8),
            category="upper_body",
            pose_map=(sample.pose_map.numpy() * 255).round().astype(np.uint8),
            garment_mask=(sample.garment_mask[0].numpy() * 255).astype(np.uint8),
            width=96,
            height=128,
        )
    )
    difference = np.abs(uint8(warped[0]).astype(int) - served.warped_garment.astype(int))
    assert difference.mean() < 1.5, difference.mean()
    assert np.mean((mask[0, 0].numpy() > 0) == (served.warped_mask > 0)) > 0.99

    trainer = TryOnLiteTrainer(config(1, height=128, width=96, options={**TINY_OPTIONS, "warp": str(folder)}))
    trainer.setup(torch.device("cpu"), torch.float32)
    assert torch.isfinite(trainer.loss(batch)["loss"])
    plain = TryOnLiteTrainer(config(1, height=128, width=96))
    plain.setup(torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="carries no warped garments"):
        plain.loss(batch)


# -- the VITON recipe ----------------------------------------------------------------------------------------


def write_cpvton(root: Path, train: int, test: int, height: int = 256, width: int = 192) -> Path:
    """A CP-VTON tree as the full set ships it (JPEG masks), each person in a coloured top on grey; the figure
    is drawn at 256x192 and scaled to the size asked for."""
    rng = np.random.default_rng(0)
    palette = list(rng.integers(0, 256, 60).tolist())
    sy, sx = height / 256, width / 192

    def box(y0: int, y1: int, x0: int, x1: int) -> tuple[slice, slice]:
        return slice(round(y0 * sy), round(y1 * sy)), slice(round(x0 * sx), round(x1 * sx))

    joints = {0: (96, 40), 1: (96, 62), 2: (60, 64), 5: (132, 64), 3: (48, 100), 6: (144, 100), 4: (46, 135),
              7: (146, 135), 8: (80, 150), 11: (112, 150)}  # fmt: skip
    keypoints = np.zeros((18, 3))
    for part, (x, y) in joints.items():
        keypoints[part] = (x * sx, y * sy, 0.9)
    for split, count, first in (("train", train, 1), ("test", test, 100)):
        lines = []
        for sub in ("image", "cloth", "cloth-mask", "image-parse", "pose"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(first, first + count):
            person, garment = f"{i:06d}_0.jpg", f"{i:06d}_1.jpg"
            colour = rng.integers(30, 226, 3)
            parse = np.zeros((height, width), np.uint8)
            for label, area in ((13, (20, 60, 80, 112)), (5, (60, 150, 55, 137)), (14, (60, 140, 40, 55)),
                                (15, (60, 140, 137, 152)), (9, (150, 250, 60, 132))):  # fmt: skip
                parse[box(*area)] = label
            image = np.full((height, width, 3), 200, np.uint8)
            image[parse == 13] = (220, 180, 160)
            image[np.isin(parse, (14, 15))] = (210, 170, 150)
            image[parse == 5] = colour
            image[parse == 9] = (40, 40, 90)
            cloth = np.full((height, width, 3), 255, np.uint8)
            cloth[box(50, 210, 30, 162)] = colour
            mask = np.zeros((height, width), np.uint8)
            mask[box(50, 210, 30, 162)] = 255
            Image.fromarray(image).save(root / split / "image" / person, quality=95)
            Image.fromarray(cloth).save(root / split / "cloth" / garment, quality=95)
            Image.fromarray(mask).save(root / split / "cloth-mask" / garment, quality=90)
            label = Image.fromarray(parse, mode="P")
            label.putpalette(palette + [0] * (768 - len(palette)))
            label.save(root / split / "image-parse" / f"{i:06d}_0.png")
            document = {"version": 1.0, "people": [{"pose_keypoints": keypoints.ravel().tolist()}]}
            (root / split / "pose" / f"{i:06d}_0_keypoints.json").write_text(json.dumps(document))
            lines.append(f"{person} {garment}")
        if split == "test":  # the unpaired list: each person with the next one's garment
            lines = [
                f"{a.split()[0]} {b.split()[1]}" for a, b in zip(lines, lines[1:] + lines[:1], strict=True)
            ]
        (root / f"{split}_pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def test_the_shards_unpack_into_the_same_dataset_and_the_gpu_copy_yields_its_samples(tmp_path):
    original = write_cpvton(tmp_path / "cpvton", train=5, test=3)
    shards = pack(original, tmp_path / "shards", max_mb=0.02, log=lambda *_: None)
    assert len(shards) >= 2 and all(p.stat().st_size <= 20_000 for p in shards)
    assert unpack(tmp_path / "shards", tmp_path / "data", log=lambda *_: None) == (len(shards), len(shards))
    assert unpack(tmp_path / "shards", tmp_path / "data", log=lambda *_: None) == (len(shards), len(shards))
    packed = tmp_path / "data" / "viton"
    assert sorted(p.name for p in (packed / "train" / "cloth-mask").iterdir())[0] == "000001_1.png"

    for split in ("train", "test"):
        before = open_dataset(original, split, "paired", layout="cpvton")
        after = open_dataset(packed, split, "paired", layout="cpvton")
        assert len(before) == len(after) == (5 if split == "train" else 3)
        for i in range(len(before)):
            a, b = before[i], after[i]
            for field in (
                "person",
                "garment",
                "garment_mask",
                "parse",
                "keypoints",
                "agnostic_mask",
                "pose_map",
            ):
                assert torch.equal(getattr(a, field), getattr(b, field)), (split, i, field)
    assert len(open_dataset(packed, "test", "unpaired", layout="cpvton")) == 3

    reader = open_dataset(packed, "train", "paired", layout="cpvton")
    pairs = GpuPairs.load(reader, "cpu", threads=2)
    assert len(pairs) == 5
    for i in (0, 4):
        expected, got = reader[i], pairs[i]
        for field in dataclasses.fields(TryOnSample):
            a, b = getattr(expected, field.name), getattr(got, field.name)
            if isinstance(a, torch.Tensor):
                torch.testing.assert_close(b, a, msg=field.name)
            else:
                assert a == b, field.name
    batch = collate(pairs.__getitems__([0, 2, 3]))
    assert batch.person.shape == (3, 3, 256, 192) and batch.warped_garment is None
    pairs.set_warps(
        torch.zeros(5, 3, 256, 192, dtype=torch.uint8), torch.ones(5, 1, 256, 192, dtype=torch.uint8)
    )
    batch = collate(pairs.__getitems__([1]))
    assert batch.warped_garment.min() == -1 and batch.warped_mask.min() == 1


# The device machine's Python has no diffusers: the driver runs in one that cannot import it.
DRIVER = (
    "import runpy, sys; sys.modules['diffusers'] = None; sys.argv[0] = 'viton_device'; "
    "runpy.run_module('training.recipes.viton_device', run_name='__main__')"
)


def test_the_gpu_recipe_runs_call_after_call_from_shards_to_the_learned_chains_metrics(tmp_path):
    original = write_cpvton(tmp_path / "cpvton", train=6, test=2)
    shards = pack(original, tmp_path / "all-shards", max_mb=0.02, log=lambda *_: None)
    assert len(shards) >= 2
    carried = tmp_path / "carried"
    carried.mkdir()
    tiny_warp = {"tps": {"ngf": 4, "max_channels": 32, "regression_channels": [16, 16, 8, 8]}}
    tiny_warp["refinement"] = {"base_channels": 4}
    common = [
        "--shards", str(carried), "--data", str(tmp_path / "data"), "--work", str(tmp_path / "work"),
        "--device", "cpu", "--warp-minutes", "0.02", "--tryon-minutes", "0.02", "--warp-batch", "2",
        "--tryon-batch", "2", "--calibration-steps", "4", "--warp-options", json.dumps(tiny_warp), "--tryon-options", json.dumps(TINY_OPTIONS),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def call(out: Path, *extra: str) -> subprocess.CompletedProcess:
        run = subprocess.run(
            [sys.executable, "-c", DRIVER, *common, "--out", str(out), *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    (carried / shards[0].name).write_bytes(shards[0].read_bytes())
    first = call(tmp_path / "out1")
    assert "carry the next one" in first.stdout
    assert json.loads((tmp_path / "out1" / "progress.json").read_text())["stage"] == "shards"
    for shard in shards[1:]:  # one a call on the GPU machine; all at once here
        (carried / shard.name).write_bytes(shard.read_bytes())
    second = call(tmp_path / "out2")
    out = tmp_path / "out2"
    assert "done" in second.stdout, second.stdout
    summary = json.loads((out / "learned-chain.json").read_text())
    assert summary["pairs"] == 2 and summary["backends"] == {
        "warp": "ladi-vton-warp-vitonhd",
        "diffusion": "tryon-lite",
    }
    for key in ("warp_mask_iou", "ssim", "ssim_garment_region", "l1_garment_region", "warp_ssim_garment"):
        assert 0 <= summary[key] <= 1, key
    assert set(summary["train_minutes"]) == {"warp", "tryon-lite"} and summary["gpu"] == "cpu"
    assert (out / "sheet-unpaired.png").stat().st_size > 0 and (out / "sheet-paired.png").stat().st_size > 0
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    assert [p["name"] for p in plan["warp"]["phases"]] == ["warp-tps", "warp-refinement"]
    assert all(p["steps"] for p in plan["warp"]["phases"] + plan["tryon-lite"]["phases"])
    generator = TryOnLiteBackend.from_pretrained(out / "tryon-lite")  # the float16 copy that comes back
    assert generator.size == (256, 192)

    third = call(tmp_path / "out3")  # a call after the end does no work again and brings the results back
    assert "done" in third.stdout and (tmp_path / "out3" / "learned-chain.json").is_file()

    # A new warp evaluated with the generator that came back (the last option argparse sees wins)
    fourth = call(
        tmp_path / "out4", "--work", str(tmp_path / "work4"), "--generator", str(out / "tryon-lite")
    )
    assert "done" in fourth.stdout, fourth.stdout
    reused = json.loads((tmp_path / "out4" / "learned-chain.json").read_text())
    assert set(reused["train_minutes"]) == {"warp"} and "trained earlier" in reused["generator"]
    assert reused["pairs"] == 2 and not (tmp_path / "out4" / "tryon-lite").exists()
