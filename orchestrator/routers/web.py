"""The web page at `/`: upload a person and a garment, watch each stage, see the result and the artifacts.

A static page that uses the public API alone (POST /v1/tryon, GET /v1/jobs/{id}); its category choices come
from the vocabulary when it is served, so a new category shows up without editing the page.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from vton.runtime.vocab import CATEGORIES

PAGE = Path(__file__).resolve().parent.parent / "web" / "index.html"
_CATEGORY_MARKER = "<!-- CATEGORY_OPTIONS: filled by orchestrator/routers/web.py from the vocabulary -->"

router = APIRouter()


@cache
def _page() -> str:
    options = "\n".join(
        f'      <option value="{category}">{category.replace("_", " ")}</option>' for category in CATEGORIES
    )
    return PAGE.read_text(encoding="utf-8").replace(_CATEGORY_MARKER, options.lstrip())


@router.get("/", include_in_schema=False)
def index() -> HTMLResponse:
    return HTMLResponse(_page())
