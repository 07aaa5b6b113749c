"""Image records and upload jobs: read, list, delete, follow progress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from sse_starlette import EventSourceResponse

from imgress.api.deps import require_owner, service
from imgress.models import FINISHED

router = APIRouter(tags=["images"])
POLL_SECONDS = 0.25


@router.get("/v1/images", summary="A page of images, newest first")
async def list_images(
    request: Request,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=200),
    owner: str = Depends(require_owner),
) -> dict:
    page, next_cursor = await to_thread.run_sync(
        service(request).list_images, owner, limit, cursor)
    return {"items": [i.to_api() for i in page], "next_cursor": next_cursor}


@router.get("/v1/images/{image_id}", summary="One image record")
async def get_image(image_id: str, request: Request, owner: str = Depends(require_owner)
                    ) -> dict:
    image = await to_thread.run_sync(service(request).get_image, owner, image_id)
    return image.to_api()


@router.delete("/v1/images/{image_id}", status_code=204, response_class=Response,
               summary="Delete a record; its bytes go when nothing else refers to them")
async def delete_image(image_id: str, request: Request, owner: str = Depends(require_owner)
                       ) -> Response:
    await to_thread.run_sync(service(request).delete_image, owner, image_id)
    return Response(status_code=204)


@router.get("/v1/jobs/{job_id}", tags=["jobs"], summary="Progress of an upload job")
async def get_job(job_id: str, request: Request, owner: str = Depends(require_owner)) -> dict:
    job = await to_thread.run_sync(service(request).get_job, owner, job_id)
    return job.to_api()


@router.get("/v1/jobs/{job_id}/events", tags=["jobs"], response_class=EventSourceResponse,
            summary="Server-sent events: `item` per finished image, then `end`")
async def job_events(job_id: str, request: Request, owner: str = Depends(require_owner)
                     ) -> EventSourceResponse:
    svc = service(request)
    await to_thread.run_sync(svc.get_job, owner, job_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[dict]:
        sent: set[int] = set()
        while True:
            job = await to_thread.run_sync(svc.get_job, owner, job_id)
            for item in job.items:
                if item.status in FINISHED and item.seq not in sent:
                    sent.add(item.seq)
                    yield {"event": "item", "data": json.dumps(item.to_api())}
            if job.status in ("done", "failed"):
                yield {"event": "end", "data": json.dumps(job.to_api(with_items=False))}
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(events(), ping=15)
