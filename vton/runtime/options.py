"""The one validator of try-on options, used by the HTTP API, the CLI and the diffusion stage.

Every limit a stage enforces is written here once, so a job the API accepts is never refused five stages
later. Errors are InvalidInput naming the field and the value the user sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import CATEGORIES

MAX_STEPS = 200
MAX_GUIDANCE_SCALE = 30.0
MAX_SEED = 2**63 - 1
# The denoising schedulers a diffusion backend may be asked for; "" is the backend's default.
SCHEDULERS: tuple[str, ...] = ("ddim", "dpm-solver++")


class OptionError(InvalidInput):
    """An option out of range; `field` names it for the API's JSON body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TryOnOptions:
    category: str
    seed: int = 0
    steps: int = 0  # 0 = the backend's default
    guidance_scale: float = 0.0  # 0 = the backend's default
    scheduler: str = ""  # "" = the backend's default


def validate_options(
    category: str,
    seed: int | None = 0,
    steps: int | None = 0,
    guidance_scale: float | None = 0.0,
    scheduler: str | None = "",
) -> TryOnOptions:
    """Checked options; None (or 0, or "") means the backend's default. Raises OptionError."""
    if category not in CATEGORIES:
        raise OptionError(
            "category", f"unknown category {category!r}; choose one of: {', '.join(CATEGORIES)}"
        )
    seed = 0 if seed is None else seed
    if not 0 <= seed <= MAX_SEED:
        raise OptionError("seed", f"seed {seed} is out of range; it must be within 0..{MAX_SEED}")
    steps = 0 if steps is None else steps
    if not 0 <= steps <= MAX_STEPS:
        raise OptionError(
            "steps",
            f"steps {steps} is out of range; it must be within 1..{MAX_STEPS} (0 = the backend's default)",
        )
    guidance_scale = 0.0 if guidance_scale is None else float(guidance_scale)
    if not 0.0 <= guidance_scale <= MAX_GUIDANCE_SCALE:
        raise OptionError(
            "guidance_scale",
            f"guidance_scale {guidance_scale:g} is out of range; it must be within 0..{MAX_GUIDANCE_SCALE:g}",
        )
    scheduler = scheduler or ""
    if scheduler and scheduler not in SCHEDULERS:
        raise OptionError(
            "scheduler", f"unknown scheduler {scheduler!r}; choose one of: {', '.join(SCHEDULERS)}"
        )
    return TryOnOptions(category, seed, steps, guidance_scale, scheduler)
