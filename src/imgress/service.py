"""The use cases: the only orchestrator. Names protocols, never a concrete backend.

Blocking methods (file system, database, libvips) are called from worker threads by
the HTTP layer; nothing here knows about HTTP.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from imgress import metrics
from imgress.db.repository import Repository
from imgress.errors import ImgressError, NotFound, RejectedPart
from imgress.imaging.probe import read_header, verify_codec, verify_decodes
from imgress.jobs.base import Dispatcher
from imgress.limits import UploadLimits, looks_complete, require_image_type
from imgress.models import (
    Image,
    Job,
    Location,
    new_id,
    original_key,
    utcnow,
)
from imgress.spool import SpoolFile
from imgress.storage.base import Storage

log = structlog.get_logger("imgress.service")

CONTENT_TYPES = {
    "webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png", "avif": "image/avif",
}


@dataclass(slots=True)
class StagedPart:
    """A received file that passed every check and waits to be stored: a spooled file,
    or (a str) the key of a direct upload's staging object, published server-side."""

    filename: str
    path: Path | str
    sha256: str
    size: int
    content_type: str
    width: int
    height: int
    exif_orientation: int | None


@dataclass(slots=True)
class PartResult:
    filename: str
    status: str  # created | duplicate | rejected
    image: Image | None = None
    error: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "filename": self.filename, "status": self.status,
            "image": self.image.to_api() if self.image else None, "error": self.error,
        }

    @classmethod
    def rejected(cls, filename: str, exc: ImgressError) -> PartResult:
        metrics.UPLOAD_FILES.labels("rejected", exc.code).inc()
        return cls(filename=filename, status="rejected", error=exc.to_dict())


class ImageService:
    def __init__(self, repo: Repository, storage: Storage, dispatcher: Dispatcher,
                 limits: UploadLimits, first_task: str = "process_image"):
        """`first_task`: where new images go first (rendering, or rotation inference
        on its own queue in scale-out)."""
        self.repo, self.storage, self.dispatcher = repo, storage, dispatcher
        self.limits, self.first_task = limits, first_task
        self._locations: OrderedDict[tuple[str, str], tuple[str, str, str]] = OrderedDict()
        self._locations_lock = threading.Lock()
        self._io = ThreadPoolExecutor(16, thread_name_prefix="imgress-io")

    def close(self) -> None:
        """At shutdown: let publishing threads finish what they hold."""
        self._io.shutdown(wait=True)

    # -- receiving ----------------------------------------------------------------

    def open_part(self) -> SpoolFile:
        return SpoolFile(self.storage.spool_dir(), self.limits.max_part_bytes)

    def check_part(self, spool: SpoolFile, filename: str) -> StagedPart:
        """Every check on a received file; the spool file is discarded on rejection."""
        try:
            if spool.overflowed:
                self.limits.check_part_size(spool.max_bytes + 1)
            spool.close()
            return self.inspect_file(filename, spool.path, spool.head, spool.tail,
                                     spool.sha256, spool.size)
        except ImgressError:
            spool.discard()
            raise

    def inspect_file(self, filename: str, path: Path, head: bytes, tail: bytes, sha256: str,
                     size: int) -> StagedPart:
        """Type from the bytes, pixels from the header, completeness from the end."""
        content_type = require_image_type(head)
        header = read_header(path)
        self.limits.check_pixels(header.width, header.height)
        verify_codec(path, header)
        if not looks_complete(content_type, tail):
            verify_decodes(path)
        return StagedPart(filename, path, sha256, size, content_type, header.width,
                          header.height, header.exif_orientation)

    def store_parts(self, owner: str, job_id: str, parts: Sequence[StagedPart],
                    seqs: Sequence[int], request_id: str | None) -> list[PartResult]:
        """Publish the files, then write every new record with ONE statement.

        Files go in before rows, so a row never points at nothing; content addressing
        makes a second copy of the same bytes a no-op.
        """
        now = utcnow()
        # Publishing is fsync-bound; in parallel the disk absorbs many at once.
        list(self._io.map(lambda p: self.storage.put(original_key(p.sha256), p.path), parts))
        fresh: list[Image] = []
        for part in parts:
            fresh.append(Image(
                id=new_id("img"), owner=owner, sha256=part.sha256,
                filename=part.filename, content_type=part.content_type,
                size=part.size, width=part.width, height=part.height,
                exif_orientation=part.exif_orientation, created_at=now, request_id=request_id,
            ))
        inserted = self.repo.insert_images(_first_per_sha(fresh))
        existing = self.repo.find_by_sha(owner, (i.sha256 for i in fresh if i.id not in inserted))
        results = []
        for img in fresh:
            if img.id in inserted:
                results.append(PartResult(img.filename, "created", img))
                metrics.UPLOAD_FILES.labels("created", "").inc()
                metrics.UPLOAD_BYTES.labels("created").inc(img.size)
            else:
                results.append(PartResult(img.filename, "duplicate", existing[img.sha256]))
                metrics.UPLOAD_FILES.labels("duplicate", "").inc()
                metrics.UPLOAD_BYTES.labels("duplicate").inc(img.size)
                metrics.DEDUP_HITS.inc()
        self.repo.add_job_items(job_id, [
            (seq, r.image.id, r.filename) for seq, r in zip(seqs, results, strict=True) if r.image
        ])
        if inserted:
            self.dispatcher.submit(self.first_task, *(i.id for i in fresh if i.id in inserted))
        return results

    def open_job(self, owner: str, request_id: str | None, kind: str = "upload") -> str:
        job_id = new_id("job")
        self.repo.create_job(job_id, kind, owner, request_id)
        return job_id

    # -- reading ------------------------------------------------------------------

    def get_image(self, owner: str, image_id: str) -> Image:
        image = self.repo.get_image(image_id, owner)
        if image is None:
            raise NotFound("no such image", code="image_not_found")
        return image

    def list_images(self, owner: str, limit: int, cursor: str | None
                    ) -> tuple[list[Image], str | None]:
        try:
            return self.repo.list_images(owner, limit, cursor)
        except ValueError:
            raise RejectedPart("the cursor is not valid", code="invalid_cursor") from None

    def delete_image(self, owner: str, image_id: str) -> None:
        image, last_reference = self.repo.delete_image(image_id, owner)
        if image is None:
            raise NotFound("no such image", code="image_not_found")
        if last_reference:
            self.storage.delete(original_key(image.sha256))
            for variant in image.variants.values():
                self.storage.delete(variant.key)
            for name in ("original", *image.variants):
                self.forget(image.sha256, name)

    def forget(self, sha256: str, name: str) -> None:
        with self._locations_lock:
            self._locations.pop((sha256, name), None)

    def get_job(self, owner: str, job_id: str) -> Job:
        job = self.repo.get_job(job_id, owner)
        if job is None:
            raise NotFound("no such job", code="job_not_found")
        return job

    def locate(self, sha256: str, name: str) -> Location:
        """Where the bytes of an original or variant are; cached since they never change."""
        with self._locations_lock:
            found = self._locations.get((sha256, name))
        if found:
            key, content_type, etag = found
            return Location(key, self.storage.url(key), content_type, etag)
        if name == "original":
            image = self.repo.sha_known(sha256)
            if image is None:
                raise NotFound("no such image", code="image_not_found")
            key, content_type, etag = original_key(sha256), image.content_type, sha256
        else:
            variant = self.repo.find_variant(sha256, name)
            if variant is None:
                raise NotFound("no such variant (yet)", code="variant_not_found")
            key, content_type = variant.key, CONTENT_TYPES[variant.format]
            etag = f"{sha256[:32]}-{Path(variant.key).stem}"
        etag = f'"{etag}"'
        with self._locations_lock:
            # The URL is made per call: an object store's may be signed and expire.
            self._locations[(sha256, name)] = (key, content_type, etag)
            while len(self._locations) > 10_000:
                self._locations.popitem(last=False)
        return Location(key, self.storage.url(key), content_type, etag)

    # -- operations ---------------------------------------------------------------

    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            self.repo.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
        try:
            self.storage.stat("health/ready-probe")
            checks["storage"] = "ok"
        except FileNotFoundError:
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"down: {type(exc).__name__}"
        try:
            self.dispatcher.ping()
            checks["queue"] = "ok"
        except Exception as exc:
            checks["queue"] = f"down: {type(exc).__name__}"
        return checks


def _first_per_sha(images: list[Image]) -> list[Image]:
    """Within one request the same bytes twice make one record (the rest: duplicate)."""
    seen: set[str] = set()
    out = []
    for img in images:
        if img.sha256 not in seen:
            seen.add(img.sha256)
            out.append(img)
    return out
