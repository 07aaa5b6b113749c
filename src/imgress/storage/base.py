"""The storage protocol: five methods, the whole contract every backend passes.

A missing object is FileNotFoundError from `open`/`stat`, and deleting one is a no-op
(the django-storages convention). `put` takes a finished local file so a backend can
move it in atomically (local disk: rename) or upload it (object stores).
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
    def put(self, key: str, source: Path) -> bool:
        """Move `source` in under `key`, atomically. False if the key already held
        an object (content addressing makes that object identical); `source` is
        consumed either way."""

    def open(self, key: str) -> BinaryIO: ...

    def stat(self, key: str) -> ObjectStat: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str:
        """Where the bytes can be read: file:///… for local disk (served zero-copy by
        the HTTP layer), https://… for object stores and CDNs."""

    def spool_dir(self) -> Path:
        """A local folder for files being received, on the same file system as the
        store when it is local, so `put` is a rename."""
