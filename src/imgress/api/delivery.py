"""GET /i/{sha256}/{variant}: immutable, content-addressed, CDN-ready delivery."""

from __future__ import annotations

import re

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from imgress.api.deps import service
from imgress.errors import NotFound

router = APIRouter(tags=["delivery"])
_SHA = re.compile(r"^[0-9a-f]{64}$")
IMMUTABLE = "public, max-age=31536000, immutable"


@router.api_route("/i/{sha256}/{variant}", methods=["GET", "HEAD"],
                  summary="The bytes of a variant (`original` for the upload itself)",
                  responses={200: {"content": {"image/*": {}}}, 206: {}, 304: {}})
async def deliver(sha256: str, variant: str, request: Request) -> Response:
    if not _SHA.match(sha256) or not re.match(r"^[a-z][a-z0-9_-]{0,31}$", variant):
        raise NotFound("no such image", code="image_not_found")
    svc = service(request)
    location = await to_thread.run_sync(svc.locate, sha256, variant)
    headers = {
        "Cache-Control": IMMUTABLE, "ETag": location.etag,
        "X-Content-Type-Options": "nosniff", "Accept-Ranges": "bytes",
    }
    if location.local_path is None:
        # The target may be a signed URL that expires: the redirect is cached briefly.
        return RedirectResponse(location.url, status_code=302,
                                headers={**headers, "Cache-Control": "public, max-age=300"})
    if _matches(request.headers.get("if-none-match"), location.etag):
        return Response(status_code=304, headers=headers)
    if not location.local_path.is_file():
        svc.forget(sha256, variant)
        raise NotFound("no such image", code="image_not_found")
    # FileResponse streams with the server's zero-copy path where it has one
    # (granian: http.response.pathsend) and answers Range with 206 itself.
    return FileResponse(location.local_path, media_type=location.content_type,
                        headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags
