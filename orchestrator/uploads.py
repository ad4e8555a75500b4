"""What POST /v1/tryon receives, checked before anything is stored: the options and the two photos.

Every refusal is an ApiError naming the field and what the client sent.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from fastapi import UploadFile

from orchestrator.errors import ApiError
from orchestrator.pipeline import image_format
from orchestrator.schemas import TryOnOptionsIn
from vton.runtime import images
from vton.runtime.errors import InvalidInput
from vton.runtime.options import OptionError, TryOnOptions, validate_options
from vton.runtime.vocab import CATEGORIES

# A seed the client leaves out is drawn from this range.
_RANDOM_SEEDS = 2**31


def checked_options(form: TryOnOptionsIn) -> TryOnOptions:
    """The form's options through the platform's one validator (the stages apply the same limits). Without a
    category the options say "" (inferred from the garment photo when the job runs)."""
    seed = form.seed if form.seed is not None else secrets.randbelow(_RANDOM_SEEDS)
    category = form.category or CATEGORIES[0]  # any valid one: the other options are checked all the same
    try:
        options = validate_options(category, seed, form.steps, form.guidance_scale, form.scheduler)
    except OptionError as exc:
        raise ApiError(422, str(exc), {"field": exc.field, "value": getattr(form, exc.field)}) from None
    return options if form.category else replace(options, category="")


def _size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.0f} kB"


async def checked_image(upload: UploadFile, what: str, max_bytes: int) -> bytes:
    """The upload's bytes, refused (4xx naming `what`) when too big, empty, not an image or too many pixels."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(
            413,
            f"the {what} image is larger than the limit of {_size_text(max_bytes)}",
            {"field": what, "limit_bytes": max_bytes},
        )
    if not data:
        raise ApiError(400, f"the {what} image is empty", {"field": what})
    try:
        width, height = images.image_size(data)
        image_format(data)
    except InvalidInput as exc:
        raise ApiError(400, f"the {what} image: {exc}", {"field": what}) from None
    try:
        images.check_size(width, height)
    except InvalidInput as exc:
        # too many pixels is a size limit (413); too few is a bad image (400)
        status = 413 if width * height > images.MAX_PIXELS else 400
        raise ApiError(
            status, f"the {what} image: {exc}", {"field": what, "width": width, "height": height}
        ) from None
    return data
