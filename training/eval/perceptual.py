"""Metrics that need a network's weights, computed only when the weight files are given:

- LPIPS (Zhang et al. 2018), version 0.1 on AlexNet, the variant torchmetrics and the try-on papers report:
  AlexNet's five ReLU feature maps of both images (inputs scaled by LPIPS's shift and scale), each
  unit-normalised over channels, squared differences weighted by LPIPS's learned 1x1 layers, averaged over
  space and summed over layers. Weights: torchvision's AlexNet (`alexnet-owt-7be5be79.pth`, keys
  `features.N.*`) and LPIPS's `weights/v0.1/alex.pth` (keys `linN.model.1.weight`), as two files or one.
- FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) on the 2048 pool features of the TorchScript
  Inception that clean-fid and StyleGAN's metrics load (`inception-2015-12-05.pt`, called with
  `return_features=True` on float 0..255 images resized to 299x299 bicubic, clean-fid's recipe). FID is the
  Frechet distance of the two Gaussians; KID the unbiased MMD^2 with the cubic polynomial kernel
  (x.y / d + 1)^3, averaged over 100 subsets of at most 1000 images, as clean-fid computes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from vton.runtime.errors import WeightsMissing

# AlexNet's feature layers (torchvision's `features`), conv index -> (in, out, kernel, stride, padding).
_ALEX_CONVS = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}
_POOL_AFTER = (
    0,
    3,
)  # max pools (3, stride 2) follow the first and second conv's ReLU (the last pool is unused)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _load_state(paths: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        if not Path(path).is_file():
            raise WeightsMissing(f"{path} does not exist")
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        state.update(loaded.get("state_dict", loaded))
    return state


class LPIPS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.ModuleDict(
            {str(i): nn.Conv2d(cin, cout, k, s, p) for i, (cin, cout, k, s, p) in _ALEX_CONVS.items()}
        )
        self.lins = nn.ModuleList(nn.Conv2d(cout, 1, 1, bias=False) for _, cout, *_ in _ALEX_CONVS.values())
        # LPIPS's constants, not weights: kept out of the state dict the files fill.
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_files(cls, paths: list[Path]) -> LPIPS:
        """From torchvision's AlexNet and LPIPS's v0.1 linear layers (two files, or one holding both)."""
        state = _load_state(paths)
        model = cls()
        sources = {
            f"features.{i}.{kind}": f"features.{i}.{kind}" for i in _ALEX_CONVS for kind in ("weight", "bias")
        }
        sources.update({f"lins.{n}.weight": f"lin{n}.model.1.weight" for n in range(len(_ALEX_CONVS))})
        absent = [source for source in sources.values() if source not in state]
        if absent:
            raise WeightsMissing(
                f"LPIPS needs torchvision's AlexNet (features.N.*) and LPIPS v0.1 alex.pth (linN.model.1.weight); "
                f"{', '.join(str(p) for p in paths)} lack {', '.join(absent[:4])}{' ...' if len(absent) > 4 else ''}"
            )
        mapped = {name: state[source] for name, source in sources.items()}
        model.load_state_dict(mapped)
        return model.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for index, conv in self.features.items():
            x = torch.relu(conv(x))
            taps.append(x)
            if int(index) in _POOL_AFTER:
                x = nn.functional.max_pool2d(x, 3, 2)
        return taps

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[N] distances of images [N, 3, H, W] in [-1, 1]."""
        total = torch.zeros(a.shape[0], device=a.device)
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b), strict=True):
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += lin((na - nb) ** 2).mean((1, 2, 3))
        return total

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """LPIPS of two uint8 RGB images [H, W, 3] of the same size."""
        device = self.shift.device

        def tensor(image: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)

        return float(self(tensor(a), tensor(b))[0])


INCEPTION_SIZE = 299


class InceptionFeatures:
    """The TorchScript Inception's pool features of uint8 RGB images."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        if not Path(path).is_file():
            raise WeightsMissing(f"{path} does not exist")
        try:
            self.model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as exc:
            raise WeightsMissing(
                f"{path} is not a TorchScript Inception (inception-2015-12-05.pt): {exc}"
            ) from None
        self.device = device

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        batch = []
        for image in images:
            resized = Image.fromarray(image).resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.BICUBIC)
            batch.append(torch.from_numpy(np.array(resized)).permute(2, 0, 1).float())
        features = self.model(torch.stack(batch).to(self.device), return_features=True)
        return features.double().cpu().numpy()


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance of the Gaussians fitted to two feature sets [N, D] (N >= 2 each).

    tr(sqrt(S1 S2)) is computed as tr(sqrt(sqrt(S1) S2 sqrt(S1))), the same value from a symmetric matrix,
    so no complex square root is needed.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least two images in each set")
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    root1 = _sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> float:
    """Kernel inception distance: the unbiased MMD^2 of the two feature sets with (x.y / d + 1)^3."""
    n = min(len(real), len(fake), subset_size)
    if n < 2:
        raise ValueError("KID needs at least two images in each set")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = real[rng.choice(len(real), n, replace=False)]
        y = fake[rng.choice(len(fake), n, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        total += within - 2 * kxy.mean()
    return float(total / subsets)
