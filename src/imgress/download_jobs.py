"""Batch downloads, part of the service layer: create a job, run it, hand back a zip.

The job lives in the database (the single source of truth); the dispatcher carries
only its id, so any worker can run it, and a worker that dies mid-job leaves a lease
that runs out: the job is then handed out again and finished items are kept.
Fetched bodies are staged in storage under `downloads/<job>/<index>`, so the archive
can be streamed by any API server, whatever worker fetched them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

import structlog

from imgress import metrics
from imgress.db.download_repository import DownloadRepository
from imgress.db.repository import Repository
from imgress.downloads import archive, names
from imgress.downloads.addresses import AddressRefused, parse
from imgress.downloads.fetcher import ByteBudget, Fetcher, FetchFailed, FetchPolicy
from imgress.errors import BadRequest, Conflict, ImgressError, NotFound, PayloadTooLarge
from imgress.jobs.base import Dispatcher
from imgress.models import Download, DownloadItem, new_id, original_key, utcnow
from imgress.storage.base import Storage
from imgress.tokens import LinkSigner

log = structlog.get_logger("imgress.downloads")
_HEARTBEAT = 15.0


@dataclass(frozen=True, slots=True)
class Requested:
    """One item as asked for: exactly one of `url` and `image_id`."""

    url: str | None = None
    image_id: str | None = None
    name: str | None = None


class DownloadService:
    def __init__(self, repo: DownloadRepository, images: Repository, storage: Storage,
                 dispatcher: Dispatcher, links: LinkSigner, policy: FetchPolicy, *,
                 max_items: int, max_job_bytes: int, ttl_seconds: int,
                 variants: Sequence[str], lease_seconds: float = 60.0):
        self.repo, self.images, self.storage = repo, images, storage
        self.dispatcher, self.links, self.policy = dispatcher, links, policy
        self.max_items, self.max_job_bytes, self.ttl = max_items, max_job_bytes, ttl_seconds
        self.variants = ("original", *variants)
        self.lease = lease_seconds

    # -- create and read ---------------------------------------------------------------

    def create(self, owner: str, wanted: Sequence[Requested], *, variant: str = "original",
               name: str | None = None, request_id: str | None = None) -> Download:
        if not wanted:
            raise BadRequest("the download has no items", code="empty_batch")
        if len(wanted) > self.max_items:
            raise PayloadTooLarge(f"more than {self.max_items} items in one download",
                                  code="too_many_items", limit=self.max_items)
        if variant not in self.variants:
            raise BadRequest(f"unknown variant {variant!r}; one of {list(self.variants)}",
                             code="unknown_variant")
        now = utcnow()
        job = Download(id=new_id("dl"), owner=owner, variant=variant, total=len(wanted),
                       name=names.clean(name or f"imgress-{now:%Y%m%d-%H%M%S}"),
                       created_at=now, expires_at=now + timedelta(seconds=self.ttl),
                       request_id=request_id)
        items = [self._item(n, w) for n, w in enumerate(wanted)]
        self.repo.create(job, items)
        refused = [i for i in items if i.status == "failed"]
        metrics.DOWNLOAD_JOBS.labels("created").inc()
        for item in refused:  # refused at the door: final now, so events report them
            self.repo.finish(job.id, item)
            _count(item)
        if len(refused) < len(items):
            self.dispatcher.submit("run_download", job.id)
        else:  # every item refused at the door: finished already
            metrics.DOWNLOAD_JOBS.labels("finished").inc()
        log.info("download_created", download_id=job.id, items=len(items),
                 refused=len(refused), request_id=request_id)
        return job

    def _item(self, index: int, wanted: Requested) -> DownloadItem:
        if (wanted.url is None) == (wanted.image_id is None):
            raise BadRequest(f"item {index}: give exactly one of url and image_id",
                             code="bad_item", index=index)
        if wanted.image_id is not None:
            return DownloadItem(index, "image", wanted.image_id,
                                names.clean(wanted.name or wanted.image_id))
        item = DownloadItem(index, "url", wanted.url or "", names.clean(
            wanted.name or names.name_from_url(wanted.url or "")))
        try:
            parse(item.source)
        except AddressRefused as exc:
            _fail(item, exc)
        return item

    def get(self, owner: str, job_id: str) -> Download:
        job = self.repo.get(job_id, owner)
        if job is None:
            raise NotFound("no such download (or it has expired)", code="download_not_found")
        assert job.items is not None
        done = [i for i in job.items if i.status == "done"]
        for item, final in zip(done, self._archive_names(job), strict=True):
            item.name = final
        return job

    def progress(self, owner: str, job_id: str, since: datetime | None
                 ) -> tuple[Download | None, list[DownloadItem]]:
        """For the event stream: the job's counts and the items finished since `since`
        (ties included: the caller drops repeats). None once the job has expired."""
        job = self.repo.get(job_id, owner, with_items=False)
        return job, (self.repo.finished_since(job_id, since) if job else [])

    def archive_url(self, job: Download) -> str:
        expires = int(job.expires_at.timestamp())
        return f"/v1/downloads/{job.id}/archive?token={self.links.sign(job.id, expires)}"

    def check_link(self, job_id: str, token: str) -> str:
        """The owner of the job a valid archive link is for."""
        self.links.verify(token, job_id)
        job = self.repo.get(job_id, with_items=False)
        if job is None:
            raise NotFound("no such download (or it has expired)", code="download_not_found")
        return job.owner

    def _archive_names(self, job: Download) -> list[str]:
        """Final names of the done items, in index order; errors.txt is reserved."""
        assert job.items is not None
        wanted = [i.name for i in job.items if i.status == "done"]
        return names.unique_names(["errors.txt", *wanted])[1:]

    def archive(self, owner: str, job_id: str) -> tuple[archive.ZipStream, str]:
        job = self.get(owner, job_id)
        if job.status in ("queued", "running"):
            raise Conflict(f"the download is still {job.status}: "
                           f"{job.finished} of {job.total} items finished", code="not_ready")
        assert job.items is not None
        done = [i for i in job.items if i.status == "done" and i.storage_key]
        for item in self._gone(job.id, done):
            _fail(item, NotFound(f"image {item.source} was deleted after the download "
                                 "finished", code="image_deleted"))
            self.repo.finish(job.id, item)  # the job's status then says what the zip does
        entries = [archive.Entry(i.name, i.bytes, partial(self.storage.open, i.storage_key))
                   for i in done if i.status == "done"]  # less those just failed
        errors = [f"{i.index}\t{i.name}\t{_shown(i.source)}\t{i.error_code}: {i.error_message}"
                  for i in job.items if i.status == "failed"]
        return archive.build(entries, errors), f"{job.name}.zip"

    def _gone(self, job_id: str, done: list[DownloadItem]) -> list[DownloadItem]:
        """Done items of stored images whose bytes were deleted since (the image was,
        and it was the last reference). Checked before the zip starts: a sized zip
        that fails half-way is a broken file; one listed in errors.txt is not. Fetched
        URLs are the job's own copies, kept until it expires, so are not checked."""
        own = f"downloads/{job_id}/"
        stored = [i for i in done if not i.storage_key.startswith(own)]

        def missing(item: DownloadItem) -> bool:
            try:
                self.storage.stat(item.storage_key)
            except FileNotFoundError:
                return True
            return False

        if not stored:  # a pool of 0 threads is an error
            return []
        with ThreadPoolExecutor(min(16, len(stored)), thread_name_prefix="imgress-stat") as pool:
            return [i for i, gone in zip(stored, pool.map(missing, stored), strict=True) if gone]

    # -- run (the task) ----------------------------------------------------------------

    def run(self, job_id: str) -> None:
        """Idempotent: finished items are kept, a job held by a live worker is skipped."""
        job = self.repo.get(job_id, with_items=False)
        if job is None or not self.repo.claim(job_id, self.lease):
            return
        log_ = log.bind(download_id=job_id, request_id=job.request_id)
        try:
            todo = self.repo.unfinished(job_id)
            log_.info("download_started", items=len(todo))
            asyncio.run(self._run(job, todo))
            job = self.repo.get(job_id, with_items=False) or job
            log_.info("download_finished", done=job.counts.get("done", 0),
                      failed=job.counts.get("failed", 0), bytes=job.bytes)
            if job.status not in ("queued", "running"):
                metrics.DOWNLOAD_JOBS.labels("finished").inc()
        finally:
            self.repo.release(job_id)

    async def _run(self, job: Download, todo: list[DownloadItem]) -> None:
        budget = ByteBudget(self.max_job_bytes - job.bytes)
        slots = asyncio.Semaphore(self.policy.concurrency)
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            async with Fetcher(self.policy) as fetcher:
                await asyncio.gather(*(self._one(fetcher, job, item, budget, slots)
                                       for item in todo))
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(min(_HEARTBEAT, self.lease / 3))
            await asyncio.to_thread(self.repo.renew, job_id, self.lease)

    async def _one(self, fetcher: Fetcher, job: Download, item: DownloadItem,
                   budget: ByteBudget, slots: asyncio.Semaphore) -> None:
        async with slots:
            await asyncio.to_thread(self.repo.set_running, job.id, item.index)
            started = time.perf_counter()
            try:
                if item.kind == "image":
                    await asyncio.to_thread(self._stored, job, item)
                else:
                    await self._fetch(fetcher, job, item, budget)
            except (AddressRefused, FetchFailed, NotFound) as exc:
                _fail(item, exc)
            except Exception as exc:  # one item never fails the job
                log.exception("download_item_crashed", download_id=job.id, index=item.index)
                _fail(item, ImgressError(f"internal error: {type(exc).__name__}",
                                         code="internal_error"))
            await asyncio.to_thread(self.repo.finish, job.id, item)
            _count(item)
            if item.kind == "url":
                metrics.DOWNLOAD_FETCH_SECONDS.labels(item.status).observe(
                    time.perf_counter() - started)
            log.info("download_item", download_id=job.id, index=item.index,
                     status=item.status, bytes=item.bytes, error=item.error_code,
                     host=urlsplit(item.source).hostname if item.kind == "url" else None,
                     request_id=job.request_id)

    async def _fetch(self, fetcher: Fetcher, job: Download, item: DownloadItem,
                     budget: ByteBudget) -> None:
        staging = self.storage.spool_dir() / f"dl-{job.id}-{item.index}-{secrets.token_hex(4)}"
        key = f"downloads/{job.id}/{item.index}"
        try:
            fetched = await fetcher.fetch(item.source, staging, budget)
            await asyncio.to_thread(self.storage.delete, key)  # a half-run earlier attempt
            await asyncio.to_thread(self.storage.put, key, staging)
        finally:
            staging.unlink(missing_ok=True)
        item.status, item.bytes, item.storage_key = "done", fetched.size, key
        item.content_type = fetched.content_type
        item.name = names.with_extension(item.name, fetched.content_type)

    def _stored(self, job: Download, item: DownloadItem) -> None:
        image = self.images.get_image(item.source, job.owner)
        if image is None:
            raise NotFound(f"no image {item.source!r}", code="image_not_found")
        if job.variant == "original":
            key, content_type = original_key(image.sha256), image.content_type
        elif job.variant in image.variants:
            variant = image.variants[job.variant]
            key, content_type = variant.key, f"image/{variant.format}"
        else:
            raise NotFound(f"image {item.source} has no {job.variant!r} variant "
                           f"(status {image.status})", code="variant_not_found")
        if item.name == names.clean(item.source):
            item.name = names.clean(image.filename)
        item.status, item.storage_key = "done", key
        item.bytes = self.storage.stat(key).size
        item.content_type = content_type
        item.name = names.with_extension(item.name, content_type)

    # -- housekeeping ------------------------------------------------------------------

    def recover(self, exclusive: bool) -> int:
        """At start. `exclusive` (the embedded default): no other process can be running
        a job, so every lease is void and every unfinished job is handed out now."""
        if not exclusive:
            return self.resubmit_stale()
        self.repo.release_all()
        ids = self.repo.stale_ids(unclaimed_after=0)
        if ids:
            self.dispatcher.submit("run_download", *ids)
        return len(ids)

    def resubmit_stale(self) -> int:
        """Jobs whose worker died (lease ran out) or whose message was lost."""
        ids = self.repo.stale_ids(unclaimed_after=max(300.0, self.lease * 5))
        if ids:
            self.dispatcher.submit("run_download", *ids)
        return len(ids)

    def cleanup(self) -> int:
        """Drop expired jobs and what they staged."""
        expired = self.repo.expired()
        for keys in expired.values():
            for key in keys:
                self.storage.delete(key)
        if expired:
            self.repo.delete(list(expired))
        return len(expired)


def _fail(item: DownloadItem, exc: ImgressError) -> None:
    item.status, item.error_code, item.error_message = "failed", exc.code, exc.message
    item.storage_key, item.bytes = None, 0


def _count(item: DownloadItem) -> None:
    """Metrics of one finished item: result, reason (an error code: a bounded set)."""
    metrics.DOWNLOAD_ITEMS.labels(item.status, item.error_code or "").inc()
    metrics.DOWNLOAD_BYTES.inc(item.bytes or 0)


def _shown(source: str) -> str:
    """A URL without its query (it may carry someone's signature) for errors.txt."""
    parts = urlsplit(source)
    return parts._replace(query="", fragment="").geturl() if parts.scheme else source
