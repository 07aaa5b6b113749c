"""Python client: direct uploads with bounded concurrency and a commit queue.

A finished put goes into the commit queue; the queue is committed when it is full,
when no put is running, or after a pause without new puts — whichever comes first.
Network errors, 5xx and 429 are retried with exponential backoff and jitter (honouring
Retry-After). A file that still fails is reported, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONTENT_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
    ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff", ".heic": "image/heif",
    ".heif": "image/heif", ".avif": "image/avif",
}
CHUNK = 1024 * 1024


@dataclass(slots=True)
class FileResult:
    path: Path
    status: str  # created | duplicate | rejected | failed
    image: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "status": self.status, "image": self.image,
                "error": self.error}


@dataclass(slots=True)
class Progress:
    """Counters a progress bar can read; `callback` runs after every change."""

    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_sent: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class UploadError(Exception):
    def __init__(self, status: int | None, body: dict[str, Any] | None, message: str):
        super().__init__(message)
        self.status, self.body = status, body

    def as_error(self) -> dict[str, Any]:
        error = (self.body or {}).get("error") if isinstance(self.body, dict) else None
        return error or {"code": "request_failed", "message": str(self)}


class AsyncClient:
    def __init__(self, base_url: str, api_key: str | None = None, *, concurrency: int = 8,
                 commit_batch: int = 100, commit_pause: float = 1.0, retries: int = 6,
                 backoff: float = 0.25, max_backoff: float = 20.0, timeout: float = 300.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers,
                                       timeout=httpx.Timeout(timeout, connect=10.0))
        self.concurrency, self.commit_batch, self.commit_pause = (
            concurrency, commit_batch, commit_pause)
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport with retries -------------------------------------------------------

    async def request(self, method: str, url: str, *, content_factory: Callable[[], Any]
                      | None = None, **kw: Any) -> httpx.Response:
        """Send with retries; `content_factory` rebuilds a streamed body for each try."""
        for attempt in range(self.retries + 1):
            try:
                if content_factory is not None:
                    kw["content"] = content_factory()
                request = self._http.build_request(method, url, **kw)
                if (request.url.scheme, request.url.netloc) != (
                        self._http.base_url.scheme, self._http.base_url.netloc):
                    # A presigned object-store URL: the API key stays with imgress (and
                    # S3 refuses a request that carries two kinds of authentication).
                    request.headers.pop("Authorization", None)
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise UploadError(None, None, f"network error: {exc!r}") from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                await asyncio.sleep(self._delay(attempt, response.headers.get("retry-after")))
                continue
            if response.status_code >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise UploadError(response.status_code, body,
                                  f"{method} {url} answered {response.status_code}")
            return response
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter keeps clients apart

    # -- direct uploads -----------------------------------------------------------------

    async def upload_many(self, paths: Iterable[Path | str],
                          on_progress: Callable[[Progress], None] | None = None
                          ) -> list[FileResult]:
        files = [Path(p) for p in paths]
        progress = Progress(len(files), sum(p.stat().st_size for p in files))
        results: dict[int, FileResult] = {}
        queue: list[tuple[int, str]] = []
        pending = asyncio.Queue[int]()
        for index in range(len(files)):
            pending.put_nowait(index)
        running = 0
        last_added = time.monotonic()
        wake = asyncio.Event()
        slots: dict[int, dict[str, Any]] = {}
        reserving = asyncio.Lock()

        async def slot_for(index: int) -> dict[str, Any]:
            """Slots are reserved for the next `commit_batch` files in one request."""
            async with reserving:
                if index not in slots:
                    chunk = [i for i in range(index, min(index + self.commit_batch, len(files)))
                             if i not in slots and i not in results]
                    reserved = await self._reserve([files[i] for i in chunk])
                    slots.update(zip(chunk, reserved, strict=True))
                return slots.pop(index)

        def finish(index: int, result: FileResult) -> None:
            results[index] = result
            progress.files_done += 1
            progress.counts[result.status] = progress.counts.get(result.status, 0) + 1
            if on_progress:
                on_progress(progress)

        async def commit(batch: list[tuple[int, str]]) -> None:
            try:
                response = await self.request(
                    "POST", "/v1/uploads/commit", json={"upload_ids": [u for _, u in batch]})
                for (index, _), item in zip(batch, response.json()["items"], strict=True):
                    finish(index, FileResult(files[index], item["status"], item["image"],
                                             item["error"]))
            except UploadError as exc:
                for index, _ in batch:
                    finish(index, FileResult(files[index], "failed", error=exc.as_error()))

        async def put_worker() -> None:
            nonlocal running, last_added
            while not pending.empty():
                index = pending.get_nowait()
                running += 1
                try:
                    upload_id = await self._put(files[index], await slot_for(index), progress,
                                                on_progress)
                    queue.append((index, upload_id))
                    last_added = time.monotonic()
                except UploadError as exc:
                    status = "rejected" if exc.status in (400, 413, 415, 422) else "failed"
                    finish(index, FileResult(files[index], status, error=exc.as_error()))
                finally:
                    running -= 1
                    wake.set()

        async def committer() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=0.1)
                wake.clear()
                idle = running == 0
                paused = time.monotonic() - last_added >= self.commit_pause
                while queue and (len(queue) >= self.commit_batch or idle or paused):
                    batch = queue[: self.commit_batch]
                    del queue[: self.commit_batch]
                    await commit(batch)
                if idle and pending.empty() and not queue:
                    return

        workers = [asyncio.create_task(put_worker()) for _ in range(self.concurrency)]
        await asyncio.gather(committer(), *workers)
        return [results[i] for i in range(len(files))]

    async def _reserve(self, paths: Sequence[Path]) -> list[dict[str, Any]]:
        declared = [{"filename": p.name, "size": p.stat().st_size,
                     "content_type": CONTENT_TYPES.get(p.suffix.lower(),
                                                       "application/octet-stream")}
                    for p in paths]
        response = await self.request("POST", "/v1/uploads", json={"files": declared})
        return response.json()["uploads"]

    async def _put(self, path: Path, slot: dict[str, Any], progress: Progress,
                   on_progress: Callable[[Progress], None] | None) -> str:
        for attempt in range(3):
            if attempt:  # the token was taken by a put that died: use a new slot
                (slot,) = await self._reserve([path])
            sent = 0

            async def body() -> Any:
                nonlocal sent
                with path.open("rb") as f:
                    while chunk := await asyncio.to_thread(f.read, CHUNK):
                        sent += len(chunk)
                        progress.bytes_sent += len(chunk)
                        if on_progress:
                            on_progress(progress)
                        yield chunk

            def fresh_body() -> Any:
                nonlocal sent
                progress.bytes_sent -= sent
                sent = 0
                return body()

            try:
                # An explicit length: object stores refuse chunked PUTs.
                headers = {**slot["headers"], "Content-Length": str(path.stat().st_size)}
                await self.request(slot["method"], slot["url"], headers=headers,
                                   content_factory=fresh_body)
                return slot["upload_id"]
            except UploadError as exc:
                progress.bytes_sent -= sent
                if exc.status != 409:
                    raise
        raise UploadError(409, None, "upload slot kept being taken")

    # -- multipart ----------------------------------------------------------------------

    async def upload_multipart(self, paths: Iterable[Path | str], files_per_request: int = 20,
                               on_progress: Callable[[Progress], None] | None = None
                               ) -> list[FileResult]:
        """One request per group of files; retrying a group is safe (dedup by content)."""
        files = [Path(p) for p in paths]
        progress = Progress(len(files), sum(p.stat().st_size for p in files))
        groups = [files[i:i + files_per_request] for i in range(0, len(files), files_per_request)]
        limiter = asyncio.Semaphore(max(1, self.concurrency // 4) or 1)

        async def send(group: Sequence[Path]) -> list[FileResult]:
            async with limiter:
                handles = [p.open("rb") for p in group]
                try:
                    response = await self.request("POST", "/v1/images", files=[
                        ("files", (p.name, h, "application/octet-stream"))
                        for p, h in zip(group, handles, strict=True)])
                    items = response.json()["items"]
                    out = [FileResult(p, i["status"], i["image"], i["error"])
                           for p, i in zip(group, items, strict=True)]
                except UploadError as exc:
                    out = [FileResult(p, "failed", error=exc.as_error()) for p in group]
                finally:
                    for h in handles:
                        h.close()
            for r in out:
                progress.files_done += 1
                progress.bytes_sent += r.path.stat().st_size
                progress.counts[r.status] = progress.counts.get(r.status, 0) + 1
            if on_progress:
                on_progress(progress)
            return out

        nested = await asyncio.gather(*(send(g) for g in groups))
        return [r for group in nested for r in group]


class Client:
    """Synchronous facade for scripts: each call runs the async client to completion."""

    def __init__(self, base_url: str, api_key: str | None = None, **options: Any):
        self.base_url, self.api_key, self.options = base_url, api_key, options

    def _run(self, method: str, *args: Any, **kw: Any) -> Any:
        async def go() -> Any:
            async with AsyncClient(self.base_url, self.api_key, **self.options) as client:
                return await getattr(client, method)(*args, **kw)

        return asyncio.run(go())

    def upload_many(self, paths: Iterable[Path | str], **kw: Any) -> list[FileResult]:
        return self._run("upload_many", list(paths), **kw)

    def upload_multipart(self, paths: Iterable[Path | str], **kw: Any) -> list[FileResult]:
        return self._run("upload_multipart", list(paths), **kw)
