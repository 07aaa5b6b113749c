"""Immutable delivery: headers, ETag/304, Range/206, HEAD, bad paths."""

from __future__ import annotations

import pytest

from conftest import Server, make_jpeg, upload


@pytest.fixture(scope="module")
def ready_image(server: Server) -> dict:
    with server.client() as c:
        image = upload(c, ("p.jpg", make_jpeg(800, 600, seed=900))).json()["items"][0]["image"]
    (rec,) = server.wait_finished([image["id"]])
    assert rec["status"] == "ready"
    return rec


def test_variant_headers(server: Server, ready_image: dict) -> None:
    with server.client(key=None) as c:  # reads of /i/ are public
        r = c.get(ready_image["variants"]["web"]["url"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["etag"].startswith('"') and not r.headers["etag"].startswith("W/")
    assert int(r.headers["content-length"]) == ready_image["variants"]["web"]["size"]
    assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WEBP"


def test_conditional_request_gives_304(server: Server, ready_image: dict) -> None:
    url = ready_image["variants"]["thumb"]["url"]
    with server.client(key=None) as c:
        etag = c.get(url).headers["etag"]
        r = c.get(url, headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""
        assert r.headers["etag"] == etag
        assert c.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_range_gives_206(server: Server, ready_image: dict) -> None:
    url = f"/i/{ready_image['sha256']}/original"
    with server.client(key=None) as c:
        full = c.get(url).content
        r = c.get(url, headers={"Range": "bytes=10-109"})
        assert r.status_code == 206
        assert r.content == full[10:110]
        assert r.headers["content-range"] == f"bytes 10-109/{len(full)}"
        assert c.head(url).status_code == 200


@pytest.mark.parametrize("path", [
    "/i/nothex/web", "/i/" + "a" * 64 + "/web", "/i/" + "a" * 64 + "/..%2Fetc",
])
def test_unknown_paths_are_404(server: Server, path: str) -> None:
    with server.client(key=None) as c:
        r = c.get(path)
    assert r.status_code == 404 and r.json()["error"]["code"]
