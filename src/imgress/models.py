"""Records passed between layers. Plain data, no I/O."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

ImageStatus = Literal["pending", "processing", "ready", "failed"]
JobStatus = Literal["queued", "running", "done", "failed"]
FINISHED: frozenset[str] = frozenset({"ready", "failed"})


def new_id(prefix: str) -> str:
    """Unguessable, URL-safe ids with a type prefix (img_, job_)."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def original_key(sha256: str) -> str:
    """Content-addressed storage key, sharded so no folder grows huge."""
    return f"originals/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def variant_key(sha256: str, name: str, fingerprint: str, fmt: str) -> str:
    return f"variants/{sha256[:2]}/{sha256[2:4]}/{sha256}/{name}-{fingerprint}.{fmt}"


@dataclass(frozen=True, slots=True)
class Orientation:
    """What the rotation model found: `angle` clockwise to upright (None: it could not
    judge, e.g. a tiny or single-colour image), and whether the variants were turned."""

    angle: int | None
    confidence: float | None
    applied: bool


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    key: str
    width: int
    height: int
    format: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "width": self.width, "height": self.height,
            "format": self.format, "size": self.size,
        }


@dataclass(slots=True)
class Image:
    id: str
    owner: str
    sha256: str
    filename: str
    content_type: str
    size: int
    width: int
    height: int
    status: ImageStatus = "pending"
    exif_orientation: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    variants: dict[str, Variant] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    request_id: str | None = None
    orientation: Orientation | None = None  # set once processed

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "status": self.status,
            "error": (
                {"code": self.error_code, "message": self.error_message}
                if self.error_code else None
            ),
            "orientation": {
                "exif": self.exif_orientation,
                "applied": bool(self.orientation and self.orientation.applied),
                "detected_angle": self.orientation.angle if self.orientation else None,
                "confidence": self.orientation.confidence if self.orientation else None,
            },
            "variants": {
                name: {
                    "url": f"/i/{self.sha256}/{name}",
                    "width": v.width, "height": v.height, "format": v.format, "size": v.size,
                }
                for name, v in self.variants.items()
            },
            "created_at": rfc3339(self.created_at),
        }


@dataclass(slots=True)
class JobItem:
    seq: int
    filename: str
    image_id: str
    status: ImageStatus
    error_code: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "filename": self.filename, "image_id": self.image_id,
            "status": self.status,
            "error": {"code": self.error_code} if self.error_code else None,
        }


@dataclass(slots=True)
class Job:
    id: str
    kind: str
    owner: str
    items: list[JobItem]
    created_at: datetime = field(default_factory=utcnow)

    @property
    def done(self) -> int:
        return sum(1 for i in self.items if i.status == "ready")

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if i.status == "failed")

    @property
    def status(self) -> JobStatus:
        finished = self.done + self.failed
        if finished == len(self.items):
            return "failed" if self.items and self.failed == len(self.items) else "done"
        if finished or any(i.status == "processing" for i in self.items):
            return "running"
        return "queued"

    def to_api(self, with_items: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "status": self.status,
            "total": len(self.items), "done": self.done, "failed": self.failed,
            "created_at": rfc3339(self.created_at),
        }
        if with_items:
            body["items"] = [i.to_api() for i in self.items]
        return body


@dataclass(slots=True)
class Upload:
    """A reserved direct-upload slot and what became of it."""

    id: str
    owner: str
    filename: str
    size: int
    content_type: str
    sha256: str | None
    expires_at: datetime
    status: str = "reserved"  # reserved | receiving | received | committing | committed | rejected
    received_sha256: str | None = None
    received_size: int | None = None
    sniffed_type: str | None = None
    width: int | None = None
    height: int | None = None
    exif_orientation: int | None = None
    image_id: str | None = None
    outcome: str | None = None  # created | duplicate | rejected:<code>
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a servable object is: a local path for zero-copy, or a URL to redirect to."""

    key: str
    url: str
    content_type: str
    etag: str

    @property
    def local_path(self) -> Path | None:
        parsed = urlparse(self.url)
        return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


DownloadItemStatus = Literal["queued", "running", "done", "failed"]


@dataclass(slots=True)
class DownloadItem:
    """One URL or stored image of a batch download. `name` is the archive name."""

    index: int
    kind: Literal["url", "image"]
    source: str
    name: str
    status: DownloadItemStatus = "queued"
    bytes: int = 0
    content_type: str | None = None
    storage_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished_at: datetime | None = None

    def to_api(self) -> dict[str, Any]:
        error = None
        if self.error_code:
            error = {"code": self.error_code, "message": self.error_message or ""}
        return {"index": self.index, "name": self.name, "source": self.source,
                "kind": self.kind, "status": self.status, "bytes": self.bytes,
                "content_type": self.content_type, "error": error}


@dataclass(slots=True)
class Download:
    id: str
    owner: str
    name: str
    variant: str
    total: int
    created_at: datetime
    expires_at: datetime
    request_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    items: list[DownloadItem] | None = None

    @property
    def finished(self) -> int:
        return self.counts.get("done", 0) + self.counts.get("failed", 0)

    @property
    def status(self) -> JobStatus:
        done, failed = self.counts.get("done", 0), self.counts.get("failed", 0)
        if done + failed >= self.total:
            return "failed" if failed == self.total else "done"
        if done or failed or self.counts.get("running", 0):
            return "running"
        return "queued"

    def to_api(self, archive_url: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "kind": "download", "name": self.name, "status": self.status,
            "variant": self.variant, "total": self.total,
            "done": self.counts.get("done", 0), "failed": self.counts.get("failed", 0),
            "bytes": self.bytes, "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at), "archive_url": archive_url,
        }
        if self.items is not None:
            body["items"] = [item.to_api() for item in self.items]
        return body
