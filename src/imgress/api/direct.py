"""Direct uploads: POST /v1/uploads (reserve), PUT /v1/uploads/{id} (bytes),
POST /v1/uploads/commit (one batch)."""

from __future__ import annotations

import time

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from imgress import metrics
from imgress.api.deps import require_owner
from imgress.direct_uploads import DeclaredFile, DirectUploads
from imgress.errors import BadRequest

router = APIRouter(tags=["direct uploads"])


class FileDeclaration(BaseModel):
    filename: str = Field(max_length=4096)
    size: int = Field(ge=1)
    content_type: str = Field(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class ReserveRequest(BaseModel):
    files: list[FileDeclaration]


class CommitRequest(BaseModel):
    upload_ids: list[str]


def _direct(request: Request) -> DirectUploads:
    return request.app.state.direct


@router.post("/v1/uploads", summary="Reserve upload slots (no network call)")
async def reserve(body: ReserveRequest, request: Request, owner: str = Depends(require_owner)
                  ) -> dict:
    files = [DeclaredFile(f.filename, f.size, f.content_type.lower(), f.sha256)
             for f in body.files]
    base = request.app.state.public_url or str(request.base_url)
    slots = await to_thread.run_sync(_direct(request).reserve, owner, files, base)
    return {"uploads": slots}


@router.put("/v1/uploads/{upload_id}", summary="The raw bytes of one reserved upload",
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}})
async def put_bytes(upload_id: str, request: Request,
                    token: str = Query(..., max_length=200)) -> dict:
    direct = _direct(request)
    slot, spool = await to_thread.run_sync(
        direct.begin_put, upload_id, token, request.headers.get("content-type"))
    try:
        async for chunk in request.stream():
            if not spool.write(chunk):
                break  # over the declared size: stop reading, finish_put refuses it
    except ClientDisconnect:
        await to_thread.run_sync(direct.abort_put, slot, spool)
        raise BadRequest("the upload was cut off", code="incomplete_body") from None
    except BaseException:
        await to_thread.run_sync(direct.abort_put, slot, spool)
        raise
    return await to_thread.run_sync(direct.finish_put, slot, spool)


@router.post("/v1/uploads/commit", summary="Verify and commit uploads in ONE statement")
async def commit(body: CommitRequest, request: Request, owner: str = Depends(require_owner)
                 ) -> JSONResponse:
    started = time.perf_counter()
    job_id, items = await to_thread.run_sync(
        _direct(request).commit, owner, body.upload_ids, request.state.request_id)
    elapsed = time.perf_counter() - started
    metrics.COMMIT_SECONDS.observe(elapsed)
    return JSONResponse({"job_id": job_id, "items": items},
                        headers={"Server-Timing": f"commit;dur={elapsed * 1000:.1f}"})
