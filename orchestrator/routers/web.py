"""The web page at `/`: upload a person and a garment, watch each stage, see the result and the artifacts.

A static page that uses the public API alone (POST /v1/tryon, GET /v1/jobs/{id}).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

PAGE = Path(__file__).resolve().parent.parent / "web" / "index.html"

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")
