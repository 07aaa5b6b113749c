"""Reference receiver for bench/ingest.py: a raw ASGI app, no framework, no parsing.

Writes each request body as-is to a new file in $BENCH_SINK_DIR and answers 200. With
BENCH_SINK_DURABLE=1 it also hashes the body (SHA-256) and fsyncs the file once at the
end, the per-byte work imgress does. Serve it with granian, like imgress:
`granian --interface asgi --working-dir . bench.reference_sink:app`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path
from typing import Any

_DIR = Path(os.environ.get("BENCH_SINK_DIR", "/tmp"))
_COUNTER = itertools.count()
_BUFFER = 1024 * 1024
_DURABLE = os.environ.get("BENCH_SINK_DURABLE") == "1"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Drain the body into a file; GET /healthz (or any GET) answers 200 at once."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size, digest = 0, hashlib.sha256()
    if scope["method"] != "GET":
        path = _DIR / f"body-{os.getpid()}-{next(_COUNTER)}"
        with path.open("wb", buffering=_BUFFER) as out:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                out.write(chunk)
                if _DURABLE:
                    digest.update(chunk)
                size += len(chunk)
                if not message.get("more_body", False):
                    break
            if _DURABLE:
                out.flush()
                os.fsync(out.fileno())
    body = f'{{"received": {size}, "sha256": "{digest.hexdigest()}"}}'.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
