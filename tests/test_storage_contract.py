"""The storage contract every backend passes (local disk here; S3 joins in scale-out)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import pytest

from imgress.storage.base import Storage
from imgress.storage.local import LocalStorage
from imgress.storage.s3 import S3Storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Every backend passes the same suite; S3 runs against moto's server over HTTP."""
    if request.param == "local":
        yield LocalStorage(tmp_path / "store")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        yield S3Storage(bucket, endpoint_url=request.getfixturevalue("moto_s3"),
                        spool_root=tmp_path)


def _spooled(storage: Storage, data: bytes) -> Path:
    path = storage.spool_dir() / f"t-{len(data)}-{hash(data)}"
    path.write_bytes(data)
    return path


def test_put_open_stat_roundtrip(storage: Storage) -> None:
    source = _spooled(storage, b"hello world")
    assert storage.put("originals/ab/cd/abcd", source) is True
    assert not source.exists()  # consumed
    with storage.open("originals/ab/cd/abcd") as f:
        assert f.read() == b"hello world"
    assert storage.stat("originals/ab/cd/abcd").size == 11


def test_put_existing_key_keeps_first_and_consumes_source(storage: Storage) -> None:
    storage.put("k/1", _spooled(storage, b"first"))
    second = _spooled(storage, b"second")
    assert storage.put("k/1", second) is False
    assert not second.exists()
    with storage.open("k/1") as f:
        assert f.read() == b"first"


def test_missing_objects(storage: Storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open("nope/x")
    with pytest.raises(FileNotFoundError):
        storage.stat("nope/x")
    storage.delete("nope/x")  # a no-op, not an error


def test_delete_then_missing(storage: Storage) -> None:
    storage.put("variants/aa/bb/sha/web.webp", _spooled(storage, b"v"))
    storage.delete("variants/aa/bb/sha/web.webp")
    with pytest.raises(FileNotFoundError):
        storage.stat("variants/aa/bb/sha/web.webp")


def test_url_names_the_object(storage: Storage) -> None:
    storage.put("originals/x", _spooled(storage, b"u"))
    url = storage.url("originals/x")
    if url.startswith("file://"):
        assert Path(unquote(urlparse(url).path)).read_bytes() == b"u"
    else:
        assert httpx.get(url).content == b"u"


def test_put_from_a_key_moves_it(storage: Storage) -> None:
    storage.put("staging/u1", _spooled(storage, b"staged"))
    assert storage.put("originals/s", "staging/u1") is True
    with storage.open("originals/s") as f:
        assert f.read() == b"staged"
    storage.put("staging/u2", _spooled(storage, b"staged"))
    assert storage.put("originals/s", "staging/u2") is False  # already there: consumed
    for gone in ("staging/u1", "staging/u2"):
        with pytest.raises(FileNotFoundError):
            storage.stat(gone)


def test_presign_put_binds_size_and_type(storage: Storage) -> None:
    presigned = storage.presign_put("staging/p1", 5, "image/jpeg", 60)
    if presigned is None:
        assert isinstance(storage, LocalStorage)  # the server receives the PUT itself
        return
    url, headers = presigned
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Expires"] == ["60"]
    assert headers == {"Content-Type": "image/jpeg", "Content-Length": "5"}
    assert httpx.put(url, content=b"hello", headers=headers).status_code == 200
    assert storage.stat("staging/p1").size == 5


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", ".spool/x", ""])
def test_keys_cannot_escape(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put(key, _spooled(storage, b"x"))
