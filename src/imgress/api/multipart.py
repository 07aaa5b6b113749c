"""Streaming multipart/form-data: python-multipart's push parser turned into events.

Nothing is buffered beyond the chunk being parsed; the caller decides where each
part's bytes go. Parse errors become BadRequest here, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from imgress.errors import BadRequest, UnsupportedMediaType


@dataclass(slots=True)
class PartEvent:
    kind: Literal["begin", "data", "end"]
    name: str = ""
    filename: str | None = None
    data: bytes = b""


class MultipartStream:
    def __init__(self, content_type: str | None, max_header_bytes: int = 16 * 1024):
        mime, params = parse_options_header(content_type or "")
        if mime != b"multipart/form-data":
            raise UnsupportedMediaType(
                "send the files as multipart/form-data, in parts named 'files'",
                code="expected_multipart",
            )
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadRequest("the multipart boundary is missing", code="malformed_multipart")
        self._events: list[PartEvent] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._header_bytes = 0
        self._max_header_bytes = max_header_bytes
        self.finished = False
        self.in_part = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        })

    def feed(self, chunk: bytes) -> list[PartEvent]:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"malformed multipart body: {exc}", code="malformed_multipart"
                             ) from None
        events, self._events = self._events, []
        return events

    # -- parser callbacks -----------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._headers, self._field, self._value, self._header_bytes = {}, b"", b"", 0

    def _grow(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            raise BadRequest("a part's headers are too large", code="malformed_multipart")

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        self.in_part = True
        self._events.append(PartEvent("begin", name=name, filename=filename))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(PartEvent("data", data=data[start:end]))

    def _on_part_end(self) -> None:
        self.in_part = False
        self._events.append(PartEvent("end"))

    def _on_end(self) -> None:
        self.finished = True
