"""POST /v1/orientation: judge one picture's rotation from its content; nothing is stored.

The upload is streamed to a temporary file (bounded by max_part_bytes), its type is
sniffed from the first bytes, EXIF orientation read from the header, and the app's
rotation detector (app.make_detector: Tesseract OSD for documents where installed, the
model in imgress.imaging.orientation otherwise) run on an EXIF-upright preview.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Request

from imgress import metrics
from imgress.api.deps import require_owner, service
from imgress.api.multipart import MultipartStream
from imgress.errors import BadRequest, ImgressError, Unprocessable
from imgress.imaging.probe import read_header
from imgress.limits import SNIFF_BYTES, UploadLimits, require_image_type
from imgress.service import ImageService

if TYPE_CHECKING:
    from imgress.imaging.pipeline import FileDetector

router = APIRouter()

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
        }}},
    },
}


async def _receive(request: Request, svc: ImageService, fd: int) -> bytes:
    """Stream the part named 'file' into fd; return its first bytes for sniffing."""
    limits = svc.limits
    stream = MultipartStream(request.headers.get("content-type"))
    received = written = 0
    head = b""
    in_file = seen = False
    async for chunk in request.stream():
        received += len(chunk)
        limits.check_request_size(received)
        for event in stream.feed(chunk):
            if event.kind == "begin":
                in_file = event.name == "file" and not seen
                seen = seen or in_file
            elif event.kind == "data" and in_file:
                written += len(event.data)
                limits.check_part_size(written)
                if len(head) < SNIFF_BYTES:
                    head += event.data[:SNIFF_BYTES - len(head)]
                await to_thread.run_sync(os.write, fd, event.data)
            elif event.kind == "end":
                in_file = False
    if not seen:
        raise BadRequest("send the picture as multipart/form-data in a part named 'file'",
                         code="missing_file")
    return head


def _judge(path: Path, limits: UploadLimits, detect: FileDetector) -> dict[str, Any]:
    header = read_header(path)  # RejectedPart (422) when the header is unreadable
    limits.check_pixels(header.width, header.height)
    started = time.perf_counter()
    found = detect(path)  # None: too small or flat to judge (the weights load on first use)
    metrics.observe_orientation(found.angle if found else None,
                                found.confidence if found else None,
                                time.perf_counter() - started)
    return {
        "detected_angle": found.angle if found else None,
        "confidence": found.confidence if found else None,
        "exif": {"orientation": header.exif_orientation,
                 "width": header.width, "height": header.height},
    }


@router.post("/v1/orientation", openapi_extra=_BODY)
async def detect_orientation(request: Request, owner: str = Depends(require_owner)
                             ) -> dict[str, Any]:
    """{"detected_angle": degrees clockwise to turn to be upright (0/90/180/270, or null
    when the picture is too small or flat to judge), "confidence", "exif"}."""
    del owner  # authenticated and rate-limited; nothing is stored under it
    svc = service(request)
    fd, name = tempfile.mkstemp(dir=svc.storage.spool_dir(), prefix="orient-", suffix=".part")
    path = Path(name)
    try:
        try:
            head = await _receive(request, svc, fd)
        finally:
            os.close(fd)
        require_image_type(head)
        return await to_thread.run_sync(_judge, path, svc.limits,
                                        request.app.state.detect_orientation)
    except ImgressError:
        raise
    except Exception as exc:  # a decoder surprise must still answer in the error shape
        raise Unprocessable("the picture could not be judged", code="orientation_failed",
                            detail=str(exc)[:200]) from None
    finally:
        path.unlink(missing_ok=True)

