"""What POST /v1/tryon receives, checked before anything is stored: the options and the two photos.

Every refusal is an ApiError naming the field and what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from fastapi import UploadFile

from orchestrator.errors import ApiError
from orchestrator.schemas import TryOnOptionsIn
from orchestrator.working_size import check_workable
from vton.runtime import images
from vton.runtime.errors import InvalidInput
from vton.runtime.options import OptionError, TryOnOptions, validate_options
from vton.runtime.vocab import CATEGORIES

# A seed the client leaves out is drawn from this range.
_RANDOM_SEEDS = 2**31
# Nice value of the decoding threads: on a busy CPU the event loop's thread (probes, small requests) goes first.
_DECODE_NICENESS = 10


def _yield_to_the_event_loop() -> None:
    # Linux applies a thread id's priority to that thread alone; elsewhere decodes keep the default priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _DECODE_NICENESS)


# Uploads are decoded here, off the event loop. Two at once bound the memory decodes take: at most
# 2 x 40 MP x 4 channels x 2 bytes (16-bit RGBA), 640 MB; the others wait without holding the loop.
_DECODER = ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="decode", initializer=_yield_to_the_event_loop
)


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


async def checked_image(upload: UploadFile, what: str, max_bytes: int, max_working_pixels: int) -> bytes:
    """The upload's bytes, refused (4xx naming `what` and the size the user sent) when too big, empty, not an
    image, of a size the stages refuse at the working size, or not decodable.

    The header is read on the event loop (a bounded walk: microseconds, however the file lies), so a file that
    declares too many pixels is refused at once; the decode that proves the rest runs in `_DECODER`'s threads.
    """
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(
            413,
            f"the {what} image is larger than the limit of {_size_text(max_bytes)}",
            {"field": what, "limit_bytes": max_bytes},
        )
    if not data:
        raise ApiError(400, f"the {what} image is empty", {"field": what})
    detail: dict = {"field": what}
    try:
        header = images.read_header(data)
        width, height = header.size
        detail |= {"width": width, "height": height}
        images.check_size(width, height)
        check_workable(width, height, max_working_pixels)
        await asyncio.get_running_loop().run_in_executor(_DECODER, images.verify, data)
    except images.ImageTooLarge as exc:
        raise ApiError(413, f"the {what} image: {exc}", detail) from None
    except InvalidInput as exc:
        raise ApiError(400, f"the {what} image: {exc}", detail) from None
    return data
