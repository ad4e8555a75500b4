"""Small pieces several trainers share: where the official files are, the person's garment region."""

from __future__ import annotations

from pathlib import Path

import torch

from vton.runtime.errors import WeightsMissing
from vton.runtime.vocab import Category, Lip
from vton.runtime.weights import models_dir as default_models_dir

# The LIP labels of the garment a category dresses, as LaDI-VTON's dataset code picks them for `im_cloth`
# (VITON-HD: upper clothes, dress and coat; Dress Code: the category's own garment).
GARMENT_LABELS: dict[str, tuple[int, ...]] = {
    Category.UPPER_BODY: (Lip.UPPER_CLOTHES, Lip.DRESS, Lip.COAT),
    Category.LOWER_BODY: (Lip.PANTS, Lip.SKIRT),
    Category.DRESSES: (Lip.DRESS, Lip.JUMPSUITS),
}


def official_folder(models_dir: str | None, backend: str) -> Path:
    """`backend`'s folder in the run's models directory (default: the platform's, VTON_MODELS_DIR)."""
    folder = (Path(models_dir) if models_dir else default_models_dir()) / backend
    if not folder.is_dir():
        raise WeightsMissing(
            f"fine-tuning needs the {backend} files in {folder}; get them with `vton weights pull {backend}` "
            "(or --from s3://BUCKET/PREFIX), set models_dir, or start from scratch where the module allows it"
        )
    return folder


def garment_region(parse: torch.Tensor, categories: list[str]) -> torch.Tensor:
    """[B, 1, H, W] float {0, 1}: where each person wears the garment of their sample's category."""
    masks = []
    for labels, category in zip(parse, categories, strict=True):
        wanted = torch.tensor(GARMENT_LABELS[category], device=parse.device)
        masks.append(torch.isin(labels, wanted))
    return torch.stack(masks)[:, None].float()


def person_garment(person: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """LaDI-VTON's `im_cloth`: the person's garment pixels on white ([-1, 1] images)."""
    return person * region + (1 - region)


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's tensors on the CPU, floating ones in float32 (the released files' dtype)."""
    return {
        key: value.detach().to("cpu", torch.float32) if value.is_floating_point() else value.detach().cpu()
        for key, value in module.state_dict().items()
    }
