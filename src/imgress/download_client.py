"""The batch-download side of the Python client: start a job, follow it, save the zip.

Kept apart from `client.py` (uploads) because it is synchronous and streaming end to
end: events are read as they come, and the zip goes straight to disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from imgress import sse
from imgress.errors import ImgressError


class DownloadError(ImgressError):
    status, code = 400, "download_failed"


class Downloads:
    def __init__(self, base_url: str, key: str | None = None, timeout: float = 60.0):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                  timeout=httpx.Timeout(timeout, read=None))

    def __enter__(self) -> Downloads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": f"http_{response.status_code}", "message": response.text[:200]}
            raise DownloadError(error.get("message", ""), code=error.get("code"))
        return response

    def start(self, items: Sequence[dict[str, str]], *, variant: str = "original",
              name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"items": list(items), "variant": variant}
        if name:
            body["name"] = name
        return self._check(self._http.post("/v1/downloads", json=body)).json()

    def status(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/v1/downloads/{job_id}")).json()

    def events(self, job_id: str, reconnects: int = 5
               ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) pairs as items finish; the last is ("end", job). A dropped
        stream is opened again (as EventSource does) and repeats are skipped."""
        seen: set[int] = set()
        for attempt in range(reconnects + 1):
            try:
                for name, data in self._stream(job_id):
                    if name == "item" and data["index"] in seen:
                        continue
                    if name == "item":
                        seen.add(data["index"])
                    yield name, data
                    if name == "end":
                        return
            except httpx.TransportError:
                if attempt == reconnects:
                    raise
        raise DownloadError("the event stream kept ending early", code="events_lost")

    def _stream(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._http.stream("GET", f"/v1/downloads/{job_id}/events") as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            yield from sse.parse(response.iter_lines())

    def save(self, job_id: str, target: Path,
             on_bytes: Callable[[int, int], None] | None = None) -> int:
        """Stream the zip to `target` (via a temporary name, renamed when complete)."""
        partial = target.with_name(f".{target.name}.part")
        with self._http.stream("GET", f"/v1/downloads/{job_id}/archive") as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            total, written = int(response.headers.get("content-length", 0)), 0
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1024 * 1024):
                    out.write(chunk)
                    written += len(chunk)
                    if on_bytes:
                        on_bytes(written, total)
        if total and written != total:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"the archive stopped at {written} of {total} bytes",
                                code="incomplete_archive")
        os.replace(partial, target)
        return written
