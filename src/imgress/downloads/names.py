"""Names inside an archive: safe, unique, and with the extension the bytes deserve."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from imgress.limits import sanitize_filename

EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
    "image/tiff": ".tif", "image/avif": ".avif", "image/heif": ".heic",
}
_SAME = {".jpeg": ".jpg", ".jpe": ".jpg", ".tiff": ".tif", ".heif": ".heic"}
MAX_NAME = 120


def name_from_url(url: str) -> str:
    """The last path segment, decoded; the host when the path has none."""
    parts = urlsplit(url)
    segment = unquote(PurePosixPath(parts.path).name) if parts.path else ""
    return segment or parts.hostname or "download"


def with_extension(name: str, content_type: str | None) -> str:
    """Give the name the extension of its sniffed type when it has none or a wrong one."""
    wanted = EXTENSIONS.get(content_type or "")
    if wanted is None:
        return name
    stem, dot, ext = name.rpartition(".")
    current = f".{ext.lower()}" if dot and stem else ""
    if _SAME.get(current, current) == wanted:
        return name
    base = stem if current and len(ext) <= 5 else name
    return sanitize_filename(base[: MAX_NAME - len(wanted)] + wanted, MAX_NAME)


def unique_names(names: Iterable[str]) -> list[str]:
    """`a.jpg`, `a (2).jpg`, `a (3).jpg`… in order; case-insensitive, as on most disks."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        stem, dot, ext = name.rpartition(".")
        if not (dot and stem):
            stem, ext = name, ""
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def clean(name: str) -> str:
    return sanitize_filename(name, MAX_NAME)
