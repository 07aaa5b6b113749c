"""The web page and its script, served from the package (no build step)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["web"])
_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")


def _asset(name: str) -> str:
    return files("imgress.web").joinpath(name).read_text()


@router.get("/", response_class=HTMLResponse, summary="The web page")
async def index() -> HTMLResponse:
    return HTMLResponse(_asset("index.html"), headers={"Content-Security-Policy": _CSP})


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    types = {"app.js": "text/javascript", "app.css": "text/css"}
    if name not in types:
        return Response(status_code=404)
    return Response(_asset(name), media_type=types[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
