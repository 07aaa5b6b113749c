"""POST /v1/images: many files in one multipart request, streamed to storage as hashed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from anyio import to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from imgress import metrics
from imgress.api.deps import require_owner, service
from imgress.api.multipart import MultipartStream
from imgress.errors import ImgressError, RejectedPart
from imgress.limits import sanitize_filename
from imgress.service import ImageService, PartResult, StagedPart
from imgress.spool import SpoolFile

router = APIRouter()
NDJSON = "application/x-ndjson"

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array",
                                     "items": {"type": "string", "format": "binary"}}},
        }}},
    },
    "responses": {"200": {
        "description": "One item per part, in order (or NDJSON lines with Accept: "
                       "application/x-ndjson).",
        "content": {NDJSON: {"schema": {"type": "string"}}},
    }},
}


@dataclass(slots=True)
class _Part:
    """One part in flight: its checks run in a thread while parsing goes on."""

    seq: int
    filename: str
    check: asyncio.Future[StagedPart] | None = None
    error: ImgressError | None = None


@dataclass(slots=True)
class _Receiver:
    svc: ImageService
    owner: str
    job_id: str
    request_id: str | None
    parts: list[_Part] = field(default_factory=list)

    async def parts_of(self, request: Request, stream: MultipartStream
                       ) -> AsyncIterator[_Part]:
        """Yield each part as soon as its bytes are all in (its checks started)."""
        limits = self.svc.limits
        spool: SpoolFile | None = None
        current: _Part | None = None
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                limits.check_request_size(received)
                for event in stream.feed(chunk):
                    if event.kind == "begin":
                        if event.name != "files":
                            current = None
                            continue
                        current = _Part(len(self.parts), sanitize_filename(
                            event.filename, limits.max_filename_chars))
                        self.parts.append(current)
                        try:
                            limits.check_part_count(len(self.parts))
                            spool = self.svc.open_part()
                        except ImgressError as exc:
                            current.error = exc
                    elif event.kind == "data" and spool is not None:
                        spool.write(event.data)
                    elif event.kind == "end" and current is not None:
                        if spool is not None:
                            current.check = asyncio.ensure_future(to_thread.run_sync(
                                self.svc.check_part, spool, current.filename))
                        spool, done, current = None, current, None
                        yield done
        except ClientDisconnect:
            pass
        finally:
            if spool is not None:
                spool.discard()
        if current is not None:
            current.error = RejectedPart(
                "the request body ended in the middle of this file", code="incomplete_body")
            yield current
        elif not stream.finished and not self.parts:
            raise RejectedPart("the request body ended before any file", code="incomplete_body")

    async def staged(self, part: _Part) -> StagedPart | None:
        if part.check is None:
            return None
        try:
            return await part.check
        except ImgressError as exc:
            part.error = exc
            return None

    async def store(self, pairs: list[tuple[_Part, StagedPart]]) -> list[PartResult]:
        return await to_thread.run_sync(
            self.svc.store_parts, self.owner, self.job_id, [s for _, s in pairs],
            [p.seq for p, _ in pairs], self.request_id)

    async def discard(self) -> None:
        """The request failed as a whole: nothing it sent is kept."""
        for part in self.parts:
            staged = await self.staged(part)
            if staged is not None:
                staged.path.unlink(missing_ok=True)

    def rejected(self, part: _Part) -> PartResult:
        assert part.error is not None
        return PartResult.rejected(part.filename, part.error)


class _DuplexStreamingResponse(StreamingResponse):
    """Streams while the request body is still being read. Starlette's own class would
    start a task that reads `receive` to watch for disconnects, stealing body chunks;
    here the body reader itself notices a disconnect (ClientDisconnect)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


@router.post("/v1/images", openapi_extra=_UPLOAD_BODY, tags=["images"],
             summary="Bulk upload: one or more parts named 'files'")
async def upload_images(request: Request, owner: str = Depends(require_owner)):
    svc = service(request)
    request_id = request.state.request_id
    if (length := request.headers.get("content-length", "")).isdigit():
        svc.limits.check_request_size(int(length))
    stream = MultipartStream(request.headers.get("content-type"))
    job_id = await to_thread.run_sync(svc.open_job, owner, request_id)
    receiver = _Receiver(svc, owner, job_id, request_id)
    headers = {"X-Imgress-Job": job_id, "Cache-Control": "no-store"}
    if NDJSON in request.headers.get("accept", ""):
        return _DuplexStreamingResponse(_ndjson_lines(receiver, request, stream), media_type=NDJSON,
                                 headers=headers)
    started = time.perf_counter()
    try:
        parts = [p async for p in receiver.parts_of(request, stream)]
    except ImgressError:
        await receiver.discard()
        raise
    staged = [(p, s) for p in parts if (s := await receiver.staged(p)) is not None]
    stored = iter(await receiver.store(staged)) if staged else iter(())
    by_seq = {p.seq: next(stored) for p, _ in staged}
    items = [by_seq[p.seq] if p.seq in by_seq else receiver.rejected(p) for p in parts]
    metrics.UPLOAD_SECONDS.observe(time.perf_counter() - started)
    return JSONResponse({"job_id": job_id, "items": [i.to_api() for i in items]},
                        headers=headers)


async def _ndjson_lines(receiver: _Receiver, request: Request, stream: MultipartStream
                        ) -> AsyncIterator[bytes]:
    """One committed line per part as it finishes (each part is its own INSERT here,
    so every line is final the moment it is sent)."""
    try:
        async for part in receiver.parts_of(request, stream):
            staged = await receiver.staged(part)
            if staged is None:
                result = receiver.rejected(part)
            else:
                (result,) = await receiver.store([(part, staged)])
            yield (json.dumps(result.to_api()) + "\n").encode()
    except ImgressError as exc:
        yield (json.dumps({"error": exc.to_dict()}) + "\n").encode()
    yield (json.dumps({"job_id": receiver.job_id, "end": True}) + "\n").encode()
