"""Batch download: POST /v1/downloads, progress, events, and the streamed zip."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import quote

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from imgress.api.deps import require_owner
from imgress.download_jobs import DownloadService, Requested

router = APIRouter(tags=["downloads"])
POLL_SECONDS = 0.25


class ItemIn(BaseModel):
    url: str | None = Field(None, max_length=8192)
    image_id: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=1000)


class DownloadIn(BaseModel):
    items: list[ItemIn]
    variant: str = Field("original", max_length=32)
    name: str | None = Field(None, max_length=200)


def _downloads(request: Request) -> DownloadService:
    return request.app.state.downloads


@router.post("/v1/downloads", status_code=202, summary="Queue a batch download")
async def create(body: DownloadIn, request: Request, owner: str = Depends(require_owner)
                 ) -> JSONResponse:
    svc = _downloads(request)
    wanted = [Requested(i.url, i.image_id, i.name) for i in body.items]
    job = await to_thread.run_sync(lambda: svc.create(
        owner, wanted, variant=body.variant, name=body.name,
        request_id=request.state.request_id))
    return JSONResponse(status_code=202, content={
        "id": job.id, "status": "queued", "total": job.total,
        "archive_url": svc.archive_url(job), "events_url": f"/v1/downloads/{job.id}/events"})


@router.get("/v1/downloads/{job_id}", summary="Progress of a batch download, per item")
async def get(job_id: str, request: Request, owner: str = Depends(require_owner)) -> dict:
    svc = _downloads(request)
    job = await to_thread.run_sync(svc.get, owner, job_id)
    return job.to_api(svc.archive_url(job))


@router.get("/v1/downloads/{job_id}/events", response_class=EventSourceResponse,
            summary="Server-sent events: `item` per finished item, then `end`")
async def events(job_id: str, request: Request, owner: str = Depends(require_owner)
                 ) -> EventSourceResponse:
    svc = _downloads(request)
    await to_thread.run_sync(svc.get, owner, job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[dict]:
        sent: set[int] = set()
        since: datetime | None = None
        while True:
            job, finished = await to_thread.run_sync(svc.progress, owner, job_id, since)
            if job is None:
                return
            for item in finished:
                since = item.finished_at
                if item.index not in sent:
                    sent.add(item.index)
                    yield {"event": "item", "data": json.dumps(
                        {**item.to_api(), "done": job.counts.get("done", 0),
                         "failed": job.counts.get("failed", 0), "total": job.total})}
            if job.status in ("done", "failed") and len(sent) >= job.total:
                yield {"event": "end", "data": json.dumps(job.to_api(svc.archive_url(job)))}
                return
            # No request.is_disconnected() here: EventSourceResponse already listens
            # for the disconnect and cancels this generator, and a second reader of
            # `receive` (that call cancels its own receive at once) made granian now
            # and then drop the connection before the stream's last chunk.
            await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(stream(), ping=15)


@router.get("/v1/downloads/{job_id}/archive", summary="The zip, streamed",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}}})
async def archive(job_id: str, request: Request,
                  token: str | None = Query(None, max_length=200)) -> StreamingResponse:
    """Authorized by the API key, or by the signed `token` of the job's archive_url (so
    a browser can follow a plain link and save the file as it streams)."""
    svc = _downloads(request)
    if token:
        owner = await to_thread.run_sync(svc.check_link, job_id, token)
    else:
        owner = require_owner(request)
    zipped, filename = await to_thread.run_sync(svc.archive, owner, job_id)
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_")
    return StreamingResponse(zipped, media_type="application/zip", headers={
        "Content-Length": str(len(zipped)),
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "private, no-store",
    })
