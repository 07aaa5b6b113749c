"""Receiving a file: written to a spool file while it is hashed, never held whole in memory.

Hashing and writing run on a writer thread of the file's own (hashlib and file writes
release the GIL), so they overlap with parsing the next chunk; at most `_MAX_QUEUED`
chunks wait, which bounds memory. Every `_SYNC_EVERY` bytes the writer flushes to disk
so the final fsync does not stall on a gigabyte of dirty pages.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from imgress.limits import SNIFF_BYTES, TAIL_BYTES

_MAX_QUEUED = 8
_SYNC_EVERY = 64 * 1024 * 1024


class SpoolFile:
    """A file being received. Call `write` per chunk, then `close` (fsyncs) or `discard`."""

    def __init__(self, spool_dir: Path, max_bytes: int):
        self._fd, name = tempfile.mkstemp(dir=spool_dir, prefix="in-", suffix=".part")
        self.path = Path(name)
        self._hash = hashlib.sha256()
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self.tail = b""
        self.overflowed = False
        self._closed = False
        self._unsynced = 0
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="imgress-spool")
        self._queued: deque[Future[None]] = deque()

    def write(self, chunk: bytes) -> bool:
        """Append a chunk; False (and nothing written) once the size limit is passed."""
        if self.overflowed or self._closed:
            return False
        if self.size + len(chunk) > self.max_bytes:
            self.overflowed = True
            self.discard()
            return False
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.tail = (self.tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
        self.size += len(chunk)
        self._queued.append(self._writer.submit(self._write, chunk))
        while len(self._queued) > _MAX_QUEUED:
            self._queued.popleft().result()
        return True

    def _write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view):]
        self._hash.update(chunk)
        self._unsynced += len(chunk)
        if self._unsynced >= _SYNC_EVERY:
            os.fdatasync(self._fd)
            self._unsynced = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        """Wait for the writer and fsync, so a later rename publishes complete bytes."""
        if self._closed:
            return
        while self._queued:
            self._queued.popleft().result()
        self._writer.shutdown()
        os.fsync(self._fd)
        os.close(self._fd)
        self._closed = True

    def discard(self) -> None:
        if not self._closed:
            # Wait for a write in flight: closing its fd under it could let the number
            # be reused by another file.
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._queued.clear()
            os.close(self._fd)
            self._closed = True
        self.path.unlink(missing_ok=True)
