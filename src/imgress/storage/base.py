"""The storage protocol: six methods, the whole contract every backend passes.

A missing object is FileNotFoundError from `open`/`stat`, and deleting one is a no-op
(the django-storages convention). `put` takes a finished local file so a backend can
move it in atomically (local disk: rename) or upload it (object stores); it also takes
another key of the same store (a direct upload's staging object), which an object store
moves server-side, so published bytes never travel through the server again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True, slots=True)
class ObjectStat:
    size: int
    mtime: float


class Storage(Protocol):
    def put(self, key: str, source: Path | str) -> bool:
        """Move `source` in under `key`, atomically: a local file (Path) or a key of this
        store (str). False if the key already held an object (content addressing makes
        that object identical); `source` is consumed either way."""

    def open(self, key: str) -> BinaryIO: ...

    def stat(self, key: str) -> ObjectStat: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str:
        """Where the bytes can be read: file:///… for local disk (served zero-copy by
        the HTTP layer), https://… for object stores and CDNs."""

    def presign_put(self, key: str, size: int, content_type: str, expires_in: int
                    ) -> tuple[str, dict[str, str]] | None:
        """A URL that takes exactly `size` bytes of `content_type` under `key` until it
        expires, and the headers the client must send (both are signed); local signing,
        no network call. None when the server receives uploads itself (local disk)."""

    def spool_dir(self) -> Path:
        """A local folder for files being received, on the same file system as the
        store when it is local, so `put` is a rename."""
