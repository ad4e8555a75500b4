"""A dataset split held whole on the GPU, for runs where the CPU cannot feed the GPU fast enough.

`GpuPairs.load(reader)` reads every pair once through the layout's own reader (CPU threads: the files, the
agnostic mask and the pose map by the platform's own functions) and keeps them as uint8 tensors on the device:
about 1.3 MB a pair at 256x192, 19 GB for VITON's 14,221 train pairs. A batch is then a gather and a cast on the
device. The samples are the reader's, field for field (no augmentation), plus the warped garment and its mask
once `set_warps` has cached them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.dataset import TryOnDataset
from training.data.raw import derive
from training.data.sample import TryOnSample

# The masked person's grey inside the agnostic mask: uint8 128 in [-1, 1], as the reader's image tensors have it.
MASK_GREY = 128 / 127.5 - 1


def _arrays(reader: TryOnDataset, index: int) -> dict[str, np.ndarray]:
    """The reader's pair `index` as uint8 arrays, images channels first."""
    raw = reader.raw(index)
    derived = derive(raw)
    return {
        "person": raw.person.transpose(2, 0, 1),
        "garment": raw.garment.transpose(2, 0, 1),
        "garment_mask": raw.garment_mask.astype(np.uint8),
        "parse": raw.parse,
        "keypoints": raw.keypoints.astype(np.float32),
        "agnostic_mask": (derived.agnostic_mask > 0).astype(np.uint8),
        "pose_map": derived.pose_map,
    }


class GpuPairs(Dataset):
    """TryOnSample on `device`, from uint8 tensors kept there; `__getitems__` builds a whole batch at once."""

    def __init__(
        self, tensors: dict[str, torch.Tensor], names: list[str], garments: list[str], categories: list[str]
    ):
        self.tensors = tensors
        self.names, self.garments, self.categories = names, garments, categories

    @classmethod
    def load(cls, reader: TryOnDataset, device: str | torch.device, threads: int | None = None) -> GpuPairs:
        """Every pair of `reader`, read by `threads` threads (the decoding and OpenCV let go of the GIL; threads
        need no shared memory, which a GPU machine's /dev/shm may lack) into uint8 tensors on `device`."""
        device = torch.device(device)
        threads = threads or min(16, os.cpu_count() or 1)
        first = _arrays(reader, 0)
        tensors = {
            key: torch.empty((len(reader), *value.shape), dtype=torch.from_numpy(value).dtype, device=device)
            for key, value in first.items()
        }

        def put(index: int) -> None:
            arrays = first if index == 0 else _arrays(reader, index)
            for key, value in arrays.items():
                tensors[key][index] = torch.from_numpy(np.ascontiguousarray(value)).to(device)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, range(len(reader))))
        entries = reader.entries
        return cls(
            tensors,
            [e.name for e in entries],
            [e.garment_name for e in entries],
            [e.category for e in entries],
        )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def device(self) -> torch.device:
        return self.tensors["person"].device

    def set_warps(self, warped_garment: torch.Tensor, warped_mask: torch.Tensor) -> None:
        """Cache a warp's output for every pair: uint8 [N, 3, H, W] and bool or uint8 [N, 1, H, W]."""
        if len(warped_garment) != len(self) or len(warped_mask) != len(self):
            raise ValueError(f"warps for {len(warped_garment)} pairs given, the split has {len(self)}")
        self.tensors["warped_garment"] = warped_garment.to(self.device, torch.uint8)
        self.tensors["warped_mask"] = warped_mask.to(self.device, torch.uint8)

    def batch(self, indices: list[int]) -> TryOnSample:
        """The collated TryOnSample of `indices`, computed on the device."""
        positions = [int(i) for i in indices]
        idx = torch.tensor(positions, dtype=torch.long).to(self.device, non_blocking=True)
        t = {key: value[idx] for key, value in self.tensors.items()}
        person = _image(t["person"])
        agnostic = t["agnostic_mask"][:, None].float()
        return TryOnSample(
            name=[self.names[i] for i in positions],
            garment_name=[self.garments[i] for i in positions],
            category=[self.categories[i] for i in positions],
            person=person,
            garment=_image(t["garment"]),
            garment_mask=t["garment_mask"][:, None].float(),
            parse=t["parse"].long(),
            keypoints=t["keypoints"],
            pose_map=t["pose_map"].float() / 255.0,
            agnostic_mask=agnostic,
            masked_person=torch.where(agnostic > 0, torch.full_like(person, MASK_GREY), person),
            warped_garment=_image(t["warped_garment"]) if "warped_garment" in t else None,
            warped_mask=t["warped_mask"].float() if "warped_mask" in t else None,
        )

    def __getitems__(self, indices: list[int]) -> list[TryOnSample]:
        """The DataLoader's batched fetch: the batch computed at once, handed back per sample for its collate."""
        batch = self.batch(indices)
        samples = []
        for k in range(len(indices)):
            values = {}
            for name, value in vars(batch).items():
                values[name] = value[k] if value is not None else None
            samples.append(TryOnSample(**values))
        return samples

    def __getitem__(self, index: int) -> TryOnSample:
        return self.__getitems__([index])[0]


def _image(u8: torch.Tensor) -> torch.Tensor:
    return u8.float() / 127.5 - 1.0
