"""Receiving a file: written to a spool file while it is hashed, never held whole in memory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from imgress.limits import SNIFF_BYTES, TAIL_BYTES

_BUFFER = 1024 * 1024


class SpoolFile:
    """A file being received. Call `write` per chunk, then `close` (fsyncs) or `discard`."""

    def __init__(self, spool_dir: Path, max_bytes: int):
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="in-", suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=_BUFFER)
        self._hash = hashlib.sha256()
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self.tail = b""
        self.overflowed = False

    def write(self, chunk: bytes) -> bool:
        """Append a chunk; False (and nothing written) once the size limit is passed."""
        if self.overflowed:
            return False
        if self.size + len(chunk) > self.max_bytes:
            self.overflowed = True
            self.discard()
            return False
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.tail = (self.tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        """Flush and fsync, so a later rename publishes complete bytes only."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
