"""SQL for batch-download jobs. A job is claimed with a lease that its worker renews;
items move queued -> running -> done | failed with one UPDATE each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update

from imgress.db.schema import download_items, downloads
from imgress.models import Download, DownloadItem, utcnow

_UNFINISHED = ("queued", "running")


def _item(row) -> DownloadItem:  # type: ignore[no-untyped-def]
    m = row._mapping
    return DownloadItem(
        index=m["idx"], kind=m["kind"], source=m["source"], name=m["name"],
        status=m["status"], bytes=m["bytes"], content_type=m["content_type"],
        storage_key=m["storage_key"], error_code=m["error_code"],
        error_message=m["error_message"], finished_at=m["finished_at"])


class DownloadRepository:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def create(self, job: Download, items: Sequence[DownloadItem]) -> None:
        """The job and all its items in one transaction (items in one executemany)."""
        with self.engine.begin() as conn:
            conn.execute(downloads.insert().values(
                id=job.id, owner=job.owner, name=job.name, variant=job.variant,
                total=job.total, request_id=job.request_id, created_at=job.created_at,
                expires_at=job.expires_at))
            conn.execute(download_items.insert(), [
                {"download_id": job.id, "idx": i.index, "kind": i.kind, "source": i.source,
                 "name": i.name, "status": i.status, "bytes": 0} for i in items])

    def get(self, job_id: str, owner: str | None = None, *, with_items: bool = True
            ) -> Download | None:
        """`owner=None` is the worker's view (any owner); expired jobs are gone."""
        query = select(downloads).where(downloads.c.id == job_id,
                                        downloads.c.expires_at > utcnow())
        if owner is not None:
            query = query.where(downloads.c.owner == owner)
        with self._read() as conn:
            head = conn.execute(query).first()
            if head is None:
                return None
            counts, total_bytes = {}, 0
            for status, count, size in conn.execute(
                    select(download_items.c.status, func.count(),
                           func.coalesce(func.sum(download_items.c.bytes), 0))
                    .where(download_items.c.download_id == job_id)
                    .group_by(download_items.c.status)):
                counts[status] = count
                total_bytes += int(size)
            items = None
            if with_items:
                items = [_item(r) for r in conn.execute(
                    select(download_items).where(download_items.c.download_id == job_id)
                    .order_by(download_items.c.idx))]
        h = head._mapping
        return Download(id=h["id"], owner=h["owner"], name=h["name"], variant=h["variant"],
                        total=h["total"], created_at=h["created_at"],
                        expires_at=h["expires_at"], request_id=h["request_id"],
                        counts=counts, bytes=total_bytes, items=items)

    def finished_since(self, job_id: str, since: datetime | None) -> list[DownloadItem]:
        """Items finished at or after `since` (ties included: callers drop repeats)."""
        query = select(download_items).where(
            download_items.c.download_id == job_id,
            download_items.c.status.in_(("done", "failed")))
        if since is not None:
            query = query.where(download_items.c.finished_at >= since)
        with self._read() as conn:
            return [_item(r) for r in conn.execute(
                query.order_by(download_items.c.finished_at, download_items.c.idx))]

    def claim(self, job_id: str, lease_seconds: float) -> bool:
        """Take the job unless a live worker holds it; a duplicate task is a no-op."""
        now = utcnow()
        with self.engine.begin() as conn:
            return bool(conn.execute(
                update(downloads)
                .where(downloads.c.id == job_id,
                       or_(downloads.c.lease_until.is_(None), downloads.c.lease_until < now))
                .values(lease_until=now + timedelta(seconds=lease_seconds))).rowcount)

    def renew(self, job_id: str, lease_seconds: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(downloads).where(downloads.c.id == job_id)
                         .values(lease_until=utcnow() + timedelta(seconds=lease_seconds)))

    def release(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(downloads).where(downloads.c.id == job_id)
                         .values(lease_until=None))

    def release_all(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(downloads).where(downloads.c.lease_until.is_not(None))
                         .values(lease_until=None))

    def unfinished(self, job_id: str) -> list[DownloadItem]:
        with self._read() as conn:
            return [_item(r) for r in conn.execute(
                select(download_items).where(download_items.c.download_id == job_id,
                                             download_items.c.status.in_(_UNFINISHED))
                .order_by(download_items.c.idx))]

    def set_running(self, job_id: str, index: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(download_items).where(
                download_items.c.download_id == job_id, download_items.c.idx == index,
            ).values(status="running"))

    def finish(self, job_id: str, item: DownloadItem) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(download_items).where(
                download_items.c.download_id == job_id, download_items.c.idx == item.index,
            ).values(status=item.status, bytes=item.bytes, name=item.name,
                     content_type=item.content_type, storage_key=item.storage_key,
                     error_code=item.error_code, error_message=item.error_message,
                     finished_at=utcnow()))

    def stale_ids(self, unclaimed_after: float) -> list[str]:
        """Unexpired jobs with unfinished items whose worker's lease ran out, or that no
        worker has taken for `unclaimed_after` seconds (a lost message)."""
        now = utcnow()
        unclaimed = now - timedelta(seconds=unclaimed_after)
        with self._read() as conn:
            return [r[0] for r in conn.execute(
                select(downloads.c.id).where(
                    downloads.c.expires_at > now,
                    or_(downloads.c.lease_until < now,
                        and_(downloads.c.lease_until.is_(None),
                             downloads.c.created_at < unclaimed)),
                    select(download_items.c.idx).where(
                        download_items.c.download_id == downloads.c.id,
                        download_items.c.status.in_(_UNFINISHED)).exists()))]

    def expired(self, limit: int = 100) -> dict[str, list[str]]:
        """Expired jobs and the storage keys they staged."""
        with self._read() as conn:
            ids = [r[0] for r in conn.execute(
                select(downloads.c.id).where(downloads.c.expires_at <= utcnow()).limit(limit))]
            if not ids:
                return {}
            out: dict[str, list[str]] = {job_id: [] for job_id in ids}
            for job_id, key in conn.execute(
                    select(download_items.c.download_id, download_items.c.storage_key)
                    .where(download_items.c.download_id.in_(ids),
                           download_items.c.kind == "url",
                           download_items.c.storage_key.is_not(None))):
                out[job_id].append(key)
        return out

    def delete(self, job_ids: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(download_items).where(
                download_items.c.download_id.in_(list(job_ids))))
            conn.execute(delete(downloads).where(downloads.c.id.in_(list(job_ids))))
