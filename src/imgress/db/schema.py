"""Tables, written in portable SQLAlchemy Core so SQLite and PostgreSQL run them unchanged."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

images = Table(
    "images",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("filename", Text, nullable=False),
    Column("content_type", String(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("exif_orientation", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("variants", JSON, nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Rotation found from the content (null until processed, or when it can't judge).
    Column("detected_angle", Integer, nullable=True),
    Column("orientation_confidence", Float, nullable=True),
    Column("orientation_applied", Boolean, nullable=True),
    # Deduplication is per owner: the same bytes from one key give one record.
    UniqueConstraint("owner", "sha256", name="uq_images_owner_sha256"),
    Index("ix_images_owner_created", "owner", "created_at", "id"),
    Index("ix_images_sha256", "sha256"),
    Index("ix_images_status", "status"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

job_items = Table(
    "job_items",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("image_id", String(32), nullable=False),
    Column("filename", Text, nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("filename", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("sha256", String(64), nullable=True),
    # reserved -> receiving -> received -> committed (or rejected at commit)
    Column("status", String(16), nullable=False),
    Column("received_sha256", String(64), nullable=True),
    Column("received_size", BigInteger, nullable=True),
    # What the put's inspection found, so a commit needs no decoder.
    Column("sniffed_type", String(32), nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("exif_orientation", Integer, nullable=True),
    Column("image_id", String(32), nullable=True),
    Column("outcome", String(80), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_uploads_expires", "status", "expires_at"),
)

downloads = Table(
    "downloads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("variant", String(32), nullable=False),
    Column("total", Integer, nullable=False),
    Column("request_id", String(64), nullable=True),
    # A worker holds the job while it runs; an expired lease lets another take it over.
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_downloads_expires", "expires_at"),
)

download_items = Table(
    "download_items",
    metadata,
    Column("download_id", String(32), ForeignKey("downloads.id", ondelete="CASCADE"),
           primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("kind", String(8), nullable=False),  # url | image
    Column("source", Text, nullable=False),
    Column("name", Text, nullable=False),
    # queued -> running -> done | failed
    Column("status", String(16), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("content_type", String(32), nullable=True),
    Column("storage_key", Text, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_download_items_finished", "download_id", "finished_at"),
)
