"""Local-disk storage with content-addressed keys in sharded folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from imgress.storage.base import ObjectStat


class LocalStorage:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self._spool = self.root / ".spool"
        self._spool.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith(".") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"storage key outside the store: {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, source: Path | str) -> bool:
        if isinstance(source, str):
            source = self._path(source)  # a key of this store: a rename as well
        target = self._path(key)
        if target.exists():
            # Content addressing: the object there already has these bytes.
            source.unlink(missing_ok=True)
            return False
        try:
            for attempt in (1, 2):  # a concurrent delete may prune the folder in between
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    # rename() is atomic: a reader sees no file or the whole file. Two
                    # writers of one key carry the same bytes, so either may win.
                    os.replace(source, target)
                    break
                except FileNotFoundError:
                    if attempt == 2 or not source.exists():
                        raise
        except BaseException:
            source.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return True

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def stat(self, key: str) -> ObjectStat:
        st = self._path(key).stat()
        return ObjectStat(size=st.st_size, mtime=st.st_mtime)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop emptied shard folders (one per image for variants); a folder another
        # writer has just filled is kept, since rmdir only removes an empty one.
        for parent in path.parents:
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def presign_put(self, key: str, size: int, content_type: str, expires_in: int
                    ) -> tuple[str, dict[str, str]] | None:
        return None  # the server's own PUT endpoint receives into the spool

    def spool_dir(self) -> Path:
        return self._spool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
