"""Frozen settings from IMGRESS_* environment variables and CLI flags.

Validation happens once at start-up; every bad value becomes one readable line
(see `SettingsError`) instead of a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_PRESET = re.compile(r"^([a-z][a-z0-9_-]{0,31}):(\d{1,5})x(\d{1,5})$")
ImageFormat = Literal["webp", "jpeg", "avif", "png"]


class SettingsError(Exception):
    """Raised with one human line per bad setting."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class VariantPreset:
    """A named box the variant must fit in (long side for squares)."""

    __slots__ = ("height", "name", "width")

    def __init__(self, name: str, width: int, height: int):
        self.name, self.width, self.height = name, width, height

    def __repr__(self) -> str:
        return f"{self.name}:{self.width}x{self.height}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGRESS_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path("./data")

    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    auth: bool = True

    database_url: str = ""
    # PostgreSQL connection pool, per process (pre-ping is always on).
    db_pool_size: int = Field(5, ge=1, le=500)
    db_max_overflow: int = Field(10, ge=0, le=500)
    db_pool_recycle: int = Field(1800, ge=-1)  # seconds; -1: never
    db_pool_timeout: float = Field(30.0, gt=0)
    storage_url: str = ""
    broker_url: str = ""

    max_part_bytes: int = Field(256 * 1024**2, ge=1)
    max_request_bytes: int = Field(16 * 1024**3, ge=1)
    max_parts: int = Field(1000, ge=1, le=10000)
    max_pixels: int = Field(100_000_000, ge=1)
    max_filename_chars: int = Field(200, ge=16, le=1000)

    public_url: str = ""
    upload_ttl_seconds: int = Field(3600, ge=10, le=7 * 86400)
    upload_secret: str = ""
    max_batch_uploads: int = Field(1000, ge=1, le=10000)
    upload_cleanup_seconds: float = Field(60.0, gt=0)

    rate_limit: str = "1200/minute;100/second"
    rate_limit_storage: str = ""
    broker_visibility_timeout: int = Field(3600, ge=5)
    processing_lease_seconds: float = Field(300, ge=1)
    workers: int = Field(max(1, os.cpu_count() or 1), ge=1, le=64)
    variants: Annotated[tuple[str, ...], NoDecode] = ("thumb:256x256", "web:1920x1080")
    variant_format: ImageFormat = "webp"
    variant_quality: int = Field(80, ge=1, le=100)
    orientation_detect: bool = True
    # 1.0 = report only. The confidence is calibrated, but at >= 0.95 0.4-4% of upright
    # files would still be turned wrongly (bench/orientation_results.md): not good
    # enough to turn people's photos by default; operators opt in with a lower threshold.
    orientation_threshold: float = Field(1.0, ge=0.0, le=1.0)
    # Documents, scans and screenshots are judged by Tesseract's OSD where `tesseract`
    # and its osd data are installed (imaging/document_orientation.py); false: the
    # photo model judges everything.
    orientation_documents: bool = True

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    download_allow_private: bool = False
    download_allow_addresses: Annotated[tuple[str, ...], NoDecode] = ()
    download_max_items: int = Field(10_000, ge=1, le=100_000)
    download_concurrency: int = Field(16, ge=1, le=256)
    download_per_host: int = Field(8, ge=1, le=256)
    download_connect_timeout: float = Field(10.0, gt=0)
    download_read_timeout: float = Field(30.0, gt=0)
    download_item_timeout: float = Field(600.0, gt=0)
    download_retries: int = Field(4, ge=0, le=20)
    download_max_item_bytes: int = Field(1024**3, ge=1)
    download_max_job_bytes: int = Field(50 * 1024**3, ge=1)
    download_ttl_seconds: int = Field(86_400, ge=60)
    download_workers: int = Field(2, ge=1, le=64)

    @field_validator("api_keys", "variants", "download_allow_addresses", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if len(key) < 16:
                raise ValueError("every API key must be at least 16 characters")
        return keys

    @field_validator("variants")
    @classmethod
    def _presets_well_formed(cls, presets: tuple[str, ...]) -> tuple[str, ...]:
        names = set()
        for preset in presets:
            match = _PRESET.match(preset)
            if not match:
                raise ValueError(f"{preset!r} is not NAME:WIDTHxHEIGHT (e.g. thumb:256x256)")
            if match.group(1) == "original" or match.group(1) in names:
                raise ValueError(f"variant name {match.group(1)!r} is reserved or repeated")
            names.add(match.group(1))
        if not presets:
            raise ValueError("at least one variant is needed")
        return presets

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, spec: str) -> str:
        from limits import parse_many

        if spec:
            parse_many(spec)  # raises ValueError with the offending part
        return spec

    @property
    def resolved_rate_limit_storage(self) -> str:
        """Shared across API servers whenever a Redis broker is there."""
        if self.rate_limit_storage:
            return self.rate_limit_storage
        return self.broker_url if self.broker_url.startswith("redis") else "memory://"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if url and not url.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return url

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, url: str) -> str:
        if url.startswith("s3://"):
            parse_s3_url(url)
        elif url and not url.startswith("file://"):
            raise ValueError("use file:///path or s3://BUCKET?endpoint_url=…&region=…")
        return url

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, url: str) -> str:
        if url and not url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
            raise ValueError("use redis://… or amqp://… (unset: in-process workers)")
        return url

    @model_validator(mode="after")
    def _part_fits_request(self) -> Settings:
        if self.max_part_bytes > self.max_request_bytes:
            raise ValueError("IMGRESS_MAX_PART_BYTES must not exceed IMGRESS_MAX_REQUEST_BYTES")
        return self

    # Derived values: computed, never configured twice.
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'imgress.db'}"

    @property
    def storage_root(self) -> Path:
        if self.storage_url:
            return Path(self.storage_url.removeprefix("file://"))
        return self.data_dir.resolve() / "storage"

    @property
    def presets(self) -> tuple[VariantPreset, ...]:
        out = []
        for preset in self.variants:
            name, width, height = _PRESET.match(preset).groups()  # type: ignore[union-attr]
            out.append(VariantPreset(name, int(width), int(height)))
        return tuple(out)


def parse_s3_url(url: str) -> dict[str, str]:
    """s3://BUCKET[/PREFIX]?endpoint_url=…&region=…&public_url=…&presign_endpoint=…
    → options (presign_endpoint: the store's address as clients outside reach it)."""
    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = set(query) - {"endpoint_url", "region", "public_url", "presign_endpoint"}
    if parsed.scheme != "s3" or not parsed.netloc or unknown:
        raise ValueError("use s3://BUCKET[/PREFIX]?endpoint_url=…&region=…&public_url=…"
                         "&presign_endpoint=…")
    return {"bucket": parsed.netloc, "prefix": parsed.path.strip("/"), **query}


def load_settings(**overrides: object) -> Settings:
    """Environment first, then explicit overrides (CLI flags); raise SettingsError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"IMGRESS_{field.upper()}" if err["loc"] else "settings"
            message = err["msg"].removeprefix("Value error, ")
            shown = err.get("input")
            secret = field in ("api_keys", "upload_secret")
            shown = "" if isinstance(shown, dict) or secret else f" (got {shown!r})"
            lines.append(f"invalid {name}: {message}{shown}")
        raise SettingsError(lines) from None
