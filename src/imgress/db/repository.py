"""All SQL lives here. Writes run in short IMMEDIATE transactions; reads in autocommit."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from imgress.db.arrays import insert_unnest, one_of
from imgress.db.retry import retried
from imgress.db.schema import images, job_items, jobs
from imgress.models import Image, Job, JobItem, Orientation, Variant, utcnow


def _variants_to_json(variants: dict[str, Variant]) -> dict[str, Any]:
    return {name: v.to_dict() for name, v in variants.items()}


def _row_to_image(row: Any) -> Image:
    m = row._mapping
    created = m["created_at"]
    return Image(
        id=m["id"], owner=m["owner"], sha256=m["sha256"], filename=m["filename"],
        content_type=m["content_type"], size=m["size"], width=m["width"], height=m["height"],
        status=m["status"], exif_orientation=m["exif_orientation"],
        error_code=m["error_code"], error_message=m["error_message"],
        variants={name: Variant(name=name, **v) for name, v in (m["variants"] or {}).items()},
        created_at=created, request_id=m["request_id"], orientation=_orientation(m),
    )


def _orientation(m: Any) -> Orientation | None:
    if m["orientation_applied"] is None:
        return None
    return Orientation(m["detected_angle"], m["orientation_confidence"],
                       bool(m["orientation_applied"]))


def _orientation_values(found: Orientation | None) -> dict[str, Any]:
    if found is None:
        return {"detected_angle": None, "orientation_confidence": None,
                "orientation_applied": None}
    return {"detected_angle": found.angle, "orientation_confidence": found.confidence,
            "orientation_applied": found.applied}


def _image_to_row(img: Image) -> dict[str, Any]:
    return {
        "id": img.id, "owner": img.owner, "sha256": img.sha256, "filename": img.filename,
        "content_type": img.content_type, "size": img.size, "width": img.width,
        "height": img.height, "exif_orientation": img.exif_orientation, "status": img.status,
        "error_code": img.error_code, "error_message": img.error_message,
        "variants": _variants_to_json(img.variants), "request_id": img.request_id,
        "created_at": img.created_at, "updated_at": img.created_at,
    }


def encode_cursor(created_at: datetime, image_id: str) -> str:
    raw = f"{created_at.isoformat()}|{image_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    stamp, image_id = raw.split("|", 1)
    return datetime.fromisoformat(stamp), image_id


class Repository:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(text("SELECT 1"))

    # -- images -------------------------------------------------------------------

    @retried
    def insert_images(self, rows: Sequence[Image]) -> set[str]:
        """One INSERT for the whole batch; rows whose (owner, sha256) exists are skipped.

        Returns the ids actually inserted, so callers can tell created from duplicate
        even when another request inserted the same bytes a moment earlier.
        """
        if not rows:
            return set()
        stmt = (
            self._insert(images)
            .on_conflict_do_nothing(index_elements=["owner", "sha256"])
            .returning(images.c.id)
        )
        # SQLAlchemy's "insertmanyvalues" renders this as ONE multi-row INSERT per
        # 1,000 rows (the most one request may carry), compiled once and cached.
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                return {r[0] for r in insert_unnest(
                    conn, images, [_image_to_row(r) for r in rows],
                    "ON CONFLICT (owner, sha256) DO NOTHING RETURNING id")}
            return {r[0] for r in conn.execute(stmt, [_image_to_row(r) for r in rows])}

    @retried
    def find_by_sha(self, owner: str, shas: Iterable[str]) -> dict[str, Image]:
        shas = list(set(shas))
        if not shas:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                select(images).where(images.c.owner == owner,
                                     one_of(conn, images.c.sha256, shas))
            )
            return {img.sha256: img for img in map(_row_to_image, rows)}

    @retried
    def get_image(self, image_id: str, owner: str | None = None) -> Image | None:
        query = select(images).where(images.c.id == image_id)
        if owner is not None:
            query = query.where(images.c.owner == owner)
        with self._read() as conn:
            row = conn.execute(query).first()
        return _row_to_image(row) if row else None

    @retried
    def list_images(
        self, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[Image], str | None]:
        query = select(images).where(images.c.owner == owner)
        if cursor:
            stamp, last_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    images.c.created_at < stamp,
                    and_(images.c.created_at == stamp, images.c.id < last_id),
                )
            )
        query = query.order_by(images.c.created_at.desc(), images.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            found = [_row_to_image(r) for r in conn.execute(query)]
        page, more = found[:limit], len(found) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return page, next_cursor

    @retried
    def delete_image(self, image_id: str, owner: str) -> tuple[Image | None, bool]:
        """Delete the record; also say whether no other record still uses its bytes."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(images).where(images.c.id == image_id, images.c.owner == owner)
            ).first()
            if row is None:
                return None, False
            img = _row_to_image(row)
            conn.execute(delete(images).where(images.c.id == image_id))
            others = conn.execute(
                select(func.count()).select_from(images).where(images.c.sha256 == img.sha256)
            ).scalar_one()
        return img, others == 0

    @retried
    def find_variant(self, sha256: str, name: str) -> Variant | None:
        with self._read() as conn:
            rows = conn.execute(
                select(images.c.variants)
                .where(images.c.sha256 == sha256, images.c.status == "ready")
                .limit(5)
            )
            for (variants,) in rows:
                if name in (variants or {}):
                    return Variant(name=name, **variants[name])
        return None

    @retried
    def sha_known(self, sha256: str) -> Image | None:
        with self._read() as conn:
            row = conn.execute(select(images).where(images.c.sha256 == sha256).limit(1)).first()
        return _row_to_image(row) if row else None

    # -- processing state -----------------------------------------------------------

    @retried
    def claim(self, image_id: str, lease_seconds: float) -> Image | None:
        """Take an image for processing: a pending one, or one whose worker has held it
        past the lease (it died). None when finished, gone or still held elsewhere, so a
        duplicate task is a no-op."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(images)
                .where(images.c.id == image_id, or_(
                    images.c.status == "pending",
                    and_(images.c.status == "processing",
                         images.c.updated_at < now - timedelta(seconds=lease_seconds)),
                ))
                .values(status="processing", updated_at=now)
            ).rowcount
            if not changed:
                return None
            row = conn.execute(select(images).where(images.c.id == image_id)).first()
        return _row_to_image(row) if row else None

    @retried
    def stale_ids(self, lease_seconds: float, limit: int = 10_000) -> list[str]:
        """Unfinished images nobody has touched for a lease; touched now, so each is
        handed out again at most once per lease."""
        cutoff = utcnow() - timedelta(seconds=lease_seconds)
        with self.engine.begin() as conn:
            ids = [r[0] for r in conn.execute(
                select(images.c.id)
                .where(images.c.status.in_(("pending", "processing")),
                       images.c.updated_at < cutoff)
                .order_by(images.c.created_at).limit(limit))]
            if ids:
                conn.execute(update(images).where(
                    images.c.id.in_(ids), images.c.status == "pending"
                ).values(updated_at=utcnow()))
        return ids

    @retried
    def release_processing(self) -> None:
        """Embedded default at start: no other process can hold work, take it all back."""
        with self.engine.begin() as conn:
            conn.execute(update(images).where(images.c.status == "processing")
                         .values(status="pending"))

    @retried
    def finish(
        self, image_id: str, *, variants: dict[str, Variant] | None = None,
        error: tuple[str, str] | None = None, orientation: Orientation | None = None,
    ) -> None:
        values: dict[str, Any] = {"updated_at": utcnow()}
        if error:
            values.update(status="failed", error_code=error[0], error_message=error[1])
        else:
            values.update(status="ready", variants=_variants_to_json(variants or {}),
                          error_code=None, error_message=None,
                          **_orientation_values(orientation))
        with self.engine.begin() as conn:
            conn.execute(update(images).where(images.c.id == image_id).values(**values))

    @retried
    def ready_variants(self, sha256: str) -> list[tuple[dict[str, Variant], Orientation | None]]:
        """Renderings already made for these bytes by any record (the result cache),
        each with the orientation found for it."""
        with self._read() as conn:
            rows = conn.execute(
                select(images.c.variants, images.c.detected_angle,
                       images.c.orientation_confidence, images.c.orientation_applied)
                .where(images.c.sha256 == sha256, images.c.status == "ready")
            )
            return [({name: Variant(name=name, **v) for name, v in (r.variants or {}).items()},
                     _orientation(r._mapping)) for r in rows]

    @retried
    def save_orientation(self, image_id: str, found: Orientation) -> None:
        """The inference task's answer, ahead of rendering (not yet applied)."""
        with self.engine.begin() as conn:
            conn.execute(update(images).where(images.c.id == image_id, images.c.status.in_(
                ("pending", "processing"))).values(**_orientation_values(found)))

    @retried
    def unfinished_ids(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                select(images.c.id)
                .where(images.c.status.in_(("pending", "processing")))
                .order_by(images.c.created_at)
            )
            return [r[0] for r in rows]

    # -- jobs -----------------------------------------------------------------------

    @retried
    def create_job(self, job_id: str, kind: str, owner: str, request_id: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(
                id=job_id, kind=kind, owner=owner, request_id=request_id, created_at=utcnow(),
            ))

    @retried
    def add_job_items(self, job_id: str, items: Sequence[tuple[int, str, str]]) -> None:
        if not items:
            return
        rows = [{"job_id": job_id, "seq": seq, "image_id": image_id, "filename": name}
                for seq, image_id, name in items]
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                insert_unnest(conn, job_items, rows)
            else:
                conn.execute(job_items.insert(), rows)

    @retried
    def get_job(self, job_id: str, owner: str) -> Job | None:
        with self._read() as conn:
            head = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner)
            ).first()
            if head is None:
                return None
            rows = conn.execute(
                select(job_items.c.seq, job_items.c.filename, job_items.c.image_id,
                       images.c.status, images.c.error_code)
                .select_from(job_items.outerjoin(images, images.c.id == job_items.c.image_id))
                .where(job_items.c.job_id == job_id)
                .order_by(job_items.c.seq)
            )
            items = [
                JobItem(seq=r.seq, filename=r.filename, image_id=r.image_id,
                        status=r.status or "failed",
                        error_code=r.error_code if r.status else "deleted")
                for r in rows
            ]
        h = head._mapping
        return Job(id=h["id"], kind=h["kind"], owner=h["owner"], items=items,
                   created_at=h["created_at"])
