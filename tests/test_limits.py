"""Type sniffing and filename sanitizing, the rules every upload passes through."""

from __future__ import annotations

import pytest

from imgress.errors import RejectedPart
from imgress.limits import require_image_type, sanitize_filename, sniff_content_type


@pytest.mark.parametrize("head,expected", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
    (b"GIF89a\x01\x00", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00mif1", "image/avif"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heif"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", None),  # a Word document
    (b"<svg xmlns=", None),
    (b"%PDF-1.7", None),
])
def test_sniffing(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head) == expected


def test_empty_and_unknown_are_rejected_with_codes() -> None:
    with pytest.raises(RejectedPart) as empty:
        require_image_type(b"")
    assert empty.value.code == "empty_file"
    with pytest.raises(RejectedPart) as text:
        require_image_type(b"hello world")
    assert text.value.code == "unsupported_type"


@pytest.mark.parametrize("raw,expected", [
    ("../../etc/passwd.jpg", "passwd.jpg"),
    ("C:\\Users\\x\\evil.jpg", "evil.jpg"),
    ("a\x00b\x1fc.jpg", "abc.jpg"),
    ("photo\u202egpj.exe", "photogpj.exe"),
    ("..", "upload"),
    ("", "upload"),
    (None, "upload"),
    ("   .hidden.png", "hidden.png"),
    ('a<b>c:"d|e?.jpg', "a_b_c__d_e_.jpg"),
])
def test_sanitize(raw: str | None, expected: str) -> None:
    assert sanitize_filename(raw, 200) == expected


def test_long_names_keep_their_extension() -> None:
    name = sanitize_filename("x" * 1000 + ".jpeg", 200)
    assert len(name) == 200 and name.endswith(".jpeg")
