"""The zip, streamed with zipstream-ng: stored (photos don't compress), ZIP64 when big,
sized ahead so the response carries a Content-Length and a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from zipstream import ZIP_STORED, ZipStream

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    size: int
    open: Callable[[], BinaryIO]


def _chunks(entry: Entry) -> Iterator[bytes]:
    """Read lazily, when the zip reaches this entry; exactly `size` bytes or fail."""
    sent = 0
    with entry.open() as source:
        while chunk := source.read(_CHUNK):
            sent += len(chunk)
            yield chunk
    if sent != entry.size:
        raise OSError(f"{entry.name}: stored object is {sent} bytes, expected {entry.size}")


def build(entries: Sequence[Entry], errors: Sequence[str]) -> ZipStream:
    """`errors` become a small errors.txt entry listing what was left out and why."""
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    for entry in entries:
        archive.add(_chunks(entry), entry.name, size=entry.size)
    if errors:
        text = ("\n".join(errors) + "\n").encode()
        archive.add(text, "errors.txt")
    return archive
