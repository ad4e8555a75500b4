"""Pack a CP-VTON layout (VITON at 256x192) into shards small enough for the GPU machine, one shard a call.

    python -m training.recipes.pack_viton --data /work/data/viton/data --out /work/data/shards

Each shard is a `viton-NN.tar.gz` of at most `--max-mb` MB (default 55: a call takes 64 MiB with the working
tree) holding whole pairs under `viton/`, in the layout the CP-VTON reader reads, so the shards unpacked into one
folder are the dataset again:

    viton/{train,test}/image/ID_0.jpg, cloth/ID_1.jpg     the files' own bytes (JPEG is not compressed twice)
    viton/{train,test}/cloth-mask/ID_1.png                1-bit PNG, True where the JPEG mask is >= 128 (what
                                                         the reader reads from the JPEG: lossless for it)
    viton/{train,test}/image-parse/ID_0.png               the files' own bytes
    viton/{train,test}/pose/ID_0_keypoints.json           the files' own bytes
    viton/train_pairs.txt, viton/test_pairs.txt           the pairs packed (shard 0)
    viton/shard-NN.json                                   {"shard": NN, "shards": count, "pairs": ...}

Test pairs go first (the whole test split: its unpaired list names garments of other test pairs), then the train
pairs in the pairs file's order, the first `--train-pairs` of them when given.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = "viton"
MB = 1_000_000
SAMPLE_UNITS = 300  # pairs gzipped in memory to learn how much the shards' gzip saves on this data
MARGIN = 0.97  # of the largest shard, left for what a sample's ratio cannot foresee


@dataclass
class Unit:
    """One pair's files, ready to write: {path inside the shard: bytes}."""

    split: str
    person: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected `PERSON GARMENT`, got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def own_garment(person: str) -> str:
    return person.replace("_0.", "_1.")


def one_bit_png(mask_path: Path) -> bytes:
    """The mask as a 1-bit PNG: white where the (JPEG) mask is >= 128, as the reader thresholds it."""
    with Image.open(mask_path) as image:
        mask = np.asarray(image.convert("L")) >= 128
    out = io.BytesIO()
    Image.fromarray(mask).convert("1").save(out, format="PNG", optimize=True)
    return out.getvalue()


def mask_png_name(garment: str) -> str:
    return str(Path(garment).with_suffix(".png"))


def pair_unit(data: Path, split: str, person: str) -> Unit:
    folder = data / split
    garment = own_garment(person)
    stem = Path(person).stem
    unit = Unit(split, person)
    prefix = f"{ROOT}/{split}"
    for sub, name in (("image", person), ("cloth", garment), ("image-parse", f"{stem}.png")):
        unit.files[f"{prefix}/{sub}/{name}"] = (folder / sub / name).read_bytes()
    mask = folder / "cloth-mask" / garment
    if not mask.is_file():
        mask = folder / "cloth-mask" / mask_png_name(garment)
    unit.files[f"{prefix}/cloth-mask/{mask_png_name(garment)}"] = one_bit_png(mask)
    unit.files[f"{prefix}/pose/{stem}_keypoints.json"] = (
        folder / "pose" / f"{stem}_keypoints.json"
    ).read_bytes()
    return unit


def split_people(data: Path, split: str, limit: int | None = None) -> list[str]:
    """The people of a split's pairs file, in its order; the test split's unpaired list names each once."""
    path = data / f"{split}_pairs.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (CP-VTON's pairs file of the {split} split)")
    people = list(dict.fromkeys(person for person, _ in read_pairs(path)))
    return people[:limit] if limit is not None else people


def compression_ratio(units: list[Unit]) -> float:
    """Bytes of a gzipped tar of `units` over their files' bytes (JPEGs shrink a little, headers vanish)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for unit in units:
            for name, data in unit.files.items():
                _add(tar, name, data)
    return len(buffer.getvalue()) / max(1, sum(unit.size for unit in units))


def assign(units: list[Unit], max_bytes: int, ratio: float) -> list[list[Unit]]:
    """Consecutive units into shards whose gzipped size, `ratio` of their bytes, stays under `max_bytes`."""
    shards: list[list[Unit]] = [[]]
    size = 0.0
    for unit in units:
        cost = unit.size * ratio
        if shards[-1] and size + cost > max_bytes:
            shards.append([])
            size = 0.0
        shards[-1].append(unit)
        size += cost
    return shards


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # the same files give the same shard
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, index: int, count: int, units: list[Unit], extra: dict[str, bytes]) -> None:
    manifest = {
        "shard": index,
        "shards": count,
        "pairs": {s: sum(u.split == s for u in units) for s in ("train", "test")},
    }
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        for name, data in extra.items():
            _add(tar, name, data)
        for unit in units:
            for name, data in unit.files.items():
                _add(tar, name, data)
        _add(tar, f"{ROOT}/shard-{index:02d}.json", json.dumps(manifest).encode())


def pack(
    data: Path, out: Path, max_mb: float = 55.0, train_pairs: int | None = None, log=print
) -> list[Path]:
    """Write the shards of the dataset at `data` into `out`; returns their paths."""
    data, out = Path(data), Path(out)
    started = time.monotonic()
    test = split_people(data, "test")
    train = split_people(data, "train", train_pairs)
    units = [pair_unit(data, "test", p) for p in test] + [pair_unit(data, "train", p) for p in train]
    ratio = compression_ratio(units[:: max(1, len(units) // SAMPLE_UNITS)])
    groups = assign(units, int(max_mb * MB * MARGIN), ratio)
    test_lines = (data / "test_pairs.txt").read_text()
    train_lines = "".join(f"{p} {own_garment(p)}\n" for p in train)
    extra = {f"{ROOT}/test_pairs.txt": test_lines.encode(), f"{ROOT}/train_pairs.txt": train_lines.encode()}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("viton-*.tar.gz"):
        stale.unlink()
    paths = []
    for index, group in enumerate(groups):
        path = out / f"viton-{index:02d}.tar.gz"
        write_shard(path, index, len(groups), group, extra if index == 0 else {})
        size = path.stat().st_size
        if size > max_mb * MB:
            raise RuntimeError(
                f"{path} is {size / MB:.3f} MB, over {max_mb} MB: pack again with a lower --max-mb"
            )
        log(f"{path.name}: {len(group)} pairs, {size / MB:.1f} MB")
        paths.append(path)
    log(
        f"{len(test)} test and {len(train)} train pairs in {len(paths)} shards ({time.monotonic() - started:.0f} s)"
    )
    return paths


def unpack(shards: Path, data: Path, log=print) -> tuple[int, int | None]:
    """Extract the shards in `shards` into `data` (each once: its manifest marks it done); returns (shards
    present in `data`, how many the set has; None before any)."""
    shards, data = Path(shards), Path(data)
    data.mkdir(parents=True, exist_ok=True)
    for path in sorted(shards.glob("viton-*.tar.gz")) if shards.is_dir() else []:
        index = int(path.name.removeprefix("viton-").removesuffix(".tar.gz"))
        if (data / ROOT / f"shard-{index:02d}.json").is_file():
            continue
        with tarfile.open(path) as tar:
            tar.extractall(data, filter="data")
        log(f"{path.name}: unpacked into {data / ROOT}")
    manifests = [json.loads(p.read_text()) for p in sorted((data / ROOT).glob("shard-*.json"))]
    return len(manifests), (manifests[0]["shards"] if manifests else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the CP-VTON folder (train/, test/, *_pairs.txt)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where the shards go (outside the repository)"
    )
    parser.add_argument("--max-mb", type=float, default=55.0, help="largest shard, in MB (default 55)")
    parser.add_argument("--train-pairs", type=int, default=None, help="pack only the first N train pairs")
    args = parser.parse_args(argv)
    pack(args.data, args.out, args.max_mb, args.train_pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
