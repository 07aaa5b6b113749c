"""The web page and its modules, served from the package (no build step), with a strict
Content-Security-Policy that names only this origin and the configured object store/CDN."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib.resources import files
from urllib.parse import urlparse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from imgress.config import Settings, parse_s3_url

router = APIRouter(tags=["web"])
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_ASSET = re.compile(r"^[a-z0-9][a-z0-9-]*\.(js|css)$")


@cache
def _asset(name: str) -> bytes:
    return files("imgress.web").joinpath(name).read_bytes()


def _origin(url: str | None) -> str | None:
    parsed = urlparse(url or "")
    return f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme and parsed.netloc else None


def content_security_policy(settings: Settings | None) -> str:
    """Images from this origin (and the CDN or object store that delivery redirects
    to); connections to this origin (and the object store that presigned PUTs go to)."""
    img, connect = ["'self'", "data:", "blob:"], ["'self'"]
    if settings is not None:
        own = _origin(settings.public_url)  # upload URLs are made from it
        if own:
            connect.append(own)
            img.append(own)
        if settings.storage_url.startswith("s3://"):
            options = parse_s3_url(settings.storage_url)
            store = _origin(options.get("endpoint_url")) or "https://*.amazonaws.com"
            connect.append(store)
            img.append(store)
            cdn = _origin(options.get("public_url"))
            if cdn:
                img.append(cdn)
    unique = lambda items: " ".join(dict.fromkeys(items))  # noqa: E731
    return (f"default-src 'self'; img-src {unique(img)}; connect-src {unique(connect)}; "
            "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


@router.get("/", response_class=HTMLResponse, summary="The web page")
async def index(request: Request) -> HTMLResponse:
    csp = content_security_policy(getattr(request.app.state, "settings", None))
    return HTMLResponse(_asset("index.html"), headers={
        "Content-Security-Policy": csp, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str, request: Request) -> Response:
    if not _ASSET.match(name):
        return Response(status_code=404)
    try:
        body = _asset(name)
    except (FileNotFoundError, IsADirectoryError):
        return Response(status_code=404)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": "no-cache", "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_TYPES["." + name.rsplit(".", 1)[1]], headers=headers)
