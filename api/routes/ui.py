"""/ui: the web UI (plain ES modules and one stylesheet from api/ui/, no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parents[1] / "ui"

router = APIRouter(tags=["ui"], include_in_schema=False)


@router.get("/ui")
def read_ui() -> FileResponse:
    """The single page; its routes live after the '#'."""
    return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/")
def read_root() -> RedirectResponse:
    return RedirectResponse("/ui")


def mount_ui(app: FastAPI) -> None:
    """The page route and its static files."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")
