"""The benchmark's origin: an ASGI app on granian that waits LATENCY seconds, then sends
one file with zero-copy `http.response.pathsend`, so the origin is not the bottleneck.

    ORIGIN_FILE=/path ORIGIN_LATENCY=0.3 granian --interface asgi download_origin:app
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

FILE = os.environ.get("ORIGIN_FILE", "")
LATENCY = float(os.environ.get("ORIGIN_LATENCY", "0"))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await asyncio.sleep(LATENCY)
    size = os.path.getsize(FILE)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(size).encode()),
                            (b"content-type", b"application/octet-stream")]})
    if "http.response.pathsend" in scope.get("extensions", {}):
        await send({"type": "http.response.pathsend", "path": FILE})
    else:
        with open(FILE, "rb") as f:
            while chunk := f.read(1 << 20):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
