"""Every upload limit and type rule, checked in one place.

The type is decided from the first bytes only (never the filename or the declared
Content-Type); dimensions come from the decoder's header read, before any decode.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from imgress.config import Settings
from imgress.errors import PayloadTooLarge, RejectedPart

SNIFF_BYTES = 32
TAIL_BYTES = 16

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_part_bytes: int
    max_request_bytes: int
    max_parts: int
    max_pixels: int
    max_filename_chars: int

    @classmethod
    def from_settings(cls, s: Settings) -> UploadLimits:
        return cls(s.max_part_bytes, s.max_request_bytes, s.max_parts, s.max_pixels,
                   s.max_filename_chars)

    def check_part_size(self, size: int) -> None:
        if size > self.max_part_bytes:
            raise PayloadTooLarge(
                f"a file is larger than the limit of {self.max_part_bytes} bytes",
                code="part_too_large", limit=self.max_part_bytes,
            )

    def check_request_size(self, size: int) -> None:
        if size > self.max_request_bytes:
            raise PayloadTooLarge(
                f"the request body is larger than the limit of {self.max_request_bytes} bytes",
                code="request_too_large", limit=self.max_request_bytes,
            )

    def check_part_count(self, count: int) -> None:
        if count > self.max_parts:
            raise PayloadTooLarge(
                f"more than {self.max_parts} files in one request",
                code="too_many_parts", limit=self.max_parts,
            )

    def check_pixels(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise RejectedPart("the image declares no pixels", code="invalid_dimensions")
        if width * height > self.max_pixels:
            raise RejectedPart(
                f"{width}x{height} is more than the limit of {self.max_pixels} pixels",
                code="too_many_pixels", limit=self.max_pixels,
            )


def sniff_content_type(head: bytes) -> str | None:
    """Allow-listed image type from magic bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i:i + 4] for i in range(16, min(len(head), 32), 4)}
        if brands & _AVIF_BRANDS:
            return "image/avif"
        if brands & _HEIF_BRANDS:
            return "image/heif"
    return None


def require_image_type(head: bytes) -> str:
    if not head:
        raise RejectedPart("the file is empty", code="empty_file")
    content_type = sniff_content_type(head)
    if content_type is None:
        raise RejectedPart(
            "not a supported image (JPEG, PNG, WebP, GIF, TIFF, HEIF, AVIF), judged by its bytes",
            code="unsupported_type",
        )
    return content_type


def looks_complete(content_type: str, tail: bytes) -> bool:
    """Cheap end-of-file check; False means 'decode fully to be sure', not 'bad'."""
    if content_type == "image/jpeg":
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if content_type == "image/png":
        return tail.endswith(b"IEND\xaeB`\x82")
    if content_type == "image/gif":
        return tail.endswith(b";")
    return True


_UNSAFE = re.compile(r"[\\/:*?\"<>|]")


def sanitize_filename(raw: str | None, max_chars: int) -> str:
    """Keep a display name only: no path parts, control or bidi characters; bounded length.

    Stored objects never use this name (their keys are content hashes).
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(
        ch for ch in name
        if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"}
    )
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if not name:
        name = "upload"
    if len(name) > max_chars:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: max_chars - len(ext) - 1] + "." + ext
        else:
            name = name[:max_chars]
    return name
