"""Hostile uploads against a real `imgress serve` over real HTTP.

Every bad input must end as a per-part rejection with a snake_case code (or a
request-level 4xx with the standard error body), leave no row and no file behind
(spool empty, originals == the records' hashes), and never hurt the good parts
sent in the same request.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
import re
import socket
import struct
import time
import unicodedata
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import KEY, Server, corpus_dir, make_jpeg, upload

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
HEX64 = r"[0-9a-f]{64}"
ORIGINAL_FILE = re.compile(r"^originals/([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})$")
VARIANT_FILE = re.compile(
    r"^variants/([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})/"
    r"[a-z][a-z0-9_-]*-[0-9a-f]+\.(webp|jpeg|png|avif)$"
)
LEAKED_NAME = re.compile(r"passwd|evil|\.(jpe?g|png|gif|webp|doc|exe)$", re.IGNORECASE)
BOUNDARY = "hostile-boundary-7f3a9c"
_seeds = itertools.count(1000)


# -- inputs -------------------------------------------------------------------------


def good_jpeg() -> bytes:
    """A small valid JPEG, different from every other one made in this module."""
    return make_jpeg(seed=next(_seeds))


def noise(fmt: str, width: int = 200, height: int = 150) -> bytes:
    """Incompressible pixels, so that half of the file is half of the pixel data."""
    from PIL import Image

    rnd = random.Random(next(_seeds))
    img = Image.frombytes("RGB", (width, height), rnd.randbytes(width * height * 3))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A well-formed PNG header declaring 3.6 gigapixels, with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def word_file() -> bytes:
    corpus = corpus_dir()
    if corpus is not None:
        doc = corpus / "Pillow/Tests/images/test-ole-file.doc"
        if doc.is_file():
            return doc.read_bytes()
    return bytes.fromhex("d0cf11e0a1b11ae1") + os.urandom(4096)


TRUNCATED = {"truncated_image", "corrupt_image"}
BAD_INPUTS: dict[str, tuple[str, object, set[str]]] = {
    # id: (filename, bytes or a maker, acceptable error codes)
    "empty": ("empty.jpg", b"", {"empty_file"}),
    "truncated_jpeg": ("half.jpg", lambda: (d := noise("JPEG"))[: len(d) // 2], TRUNCATED),
    "truncated_jpeg_header": ("tiny-half.jpg", lambda: (d := good_jpeg())[: len(d) // 2],
                              TRUNCATED),
    "truncated_png": ("half.png", lambda: (d := noise("PNG"))[: len(d) // 2], TRUNCATED),
    "text_as_jpg": ("notes.jpg", b"just some text, not a picture\n" * 20,
                    {"unsupported_type"}),
    "word_as_jpg": ("report.jpg", word_file, {"unsupported_type"}),
    "png_60000x60000": ("bomb.png", png_bomb, {"too_many_pixels"}),
}


def bad_bytes(maker: object) -> bytes:
    return maker() if callable(maker) else maker  # type: ignore[return-value]


def multipart(parts: list[tuple[bytes | None, bytes]], *, close: bool = True,
              name: bytes = b"files") -> bytes:
    """A multipart body built by hand: raw filename bytes exactly as a hostile client
    would send them (httpx would escape some of them)."""
    out = b""
    for filename, data in parts:
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out += (b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition
                + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    if close:
        out += b"--" + BOUNDARY.encode() + b"--\r\n"
    return out


def post_raw(client: httpx.Client, body: bytes, **kw) -> httpx.Response:
    return client.post("/v1/images", content=body, headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, **kw)


# -- what the server holds --------------------------------------------------------------


def all_records(client: httpx.Client) -> list[dict]:
    records, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/images", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        records += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return records


def record_ids(client: httpx.Client) -> set[str]:
    return {r["id"] for r in all_records(client)}


def storage_files(data_dir: Path) -> tuple[list[str], list[str]]:
    """(files under storage/.spool, every other file under storage/), relative paths."""
    root = data_dir / "storage"
    spool, stored = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        target = spool if rel == ".spool" or rel.startswith(".spool/") else stored
        target += [f"{rel}/{f}" if rel != "." else f for f in filenames]
        if rel == ".spool":
            spool += [f"{rel}/{d}/" for d in dirnames]
    return spool, stored


def storage_problems(records: list[dict], spool: list[str], stored: list[str]) -> list[str]:
    problems = [f"spool not empty: {spool}"] if spool else []
    shas = {r["sha256"] for r in records}
    originals = set()
    for rel in stored:
        if m := ORIGINAL_FILE.match(rel):
            originals.add(m.group(3))
        elif m := VARIANT_FILE.match(rel):
            if m.group(3) not in shas:
                problems.append(f"variant of no record: {rel!r}")
        else:
            problems.append(f"unexpected file in storage: {rel!r}")
    if originals - shas:
        problems.append(f"originals without a record: {sorted(originals - shas)}")
    if shas - originals:
        problems.append(f"records without an original: {sorted(shas - originals)}")
    unfinished = [r["id"] for r in records if r["status"] not in ("ready", "failed")]
    if unfinished:
        problems.append(f"records not finished: {unfinished}")
    return problems


def assert_clean(server: Server, timeout: float = 30) -> list[dict]:
    """Nothing half-done is left once the server has settled: every record finished,
    the spool empty, every stored file an original or variant of a record (originals ==
    the records' hashes), nothing outside storage/."""
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while True:  # the server may still be finishing a request or processing
            records = all_records(c)
            problems = storage_problems(records, *storage_files(server.data_dir))
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert not problems, "\n".join(problems)
    assert_nothing_outside_storage(server)
    return records


def assert_nothing_outside_storage(server: Server) -> None:
    """No uploaded bytes and no file named after an upload anywhere in or beside the data
    dir except under storage/ (the database and the server's own files are fine)."""
    storage = server.data_dir / "storage"
    for dirpath, dirnames, filenames in os.walk(server.data_dir.parent):
        if Path(dirpath) == server.data_dir:
            dirnames[:] = [d for d in dirnames if d != "storage"]
        for name in filenames:
            path = Path(dirpath) / name
            if path == server.log_path:
                continue
            assert not path.is_relative_to(storage)
            assert not LEAKED_NAME.search(name), f"an upload leaked outside storage: {path}"
            with path.open("rb") as f:
                head = f.read(8)
            assert not head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"\xd0\xcf\x11\xe0")), (
                f"image bytes outside storage: {path}")


def assert_error_body(response: httpx.Response, status: int, code: str | set[str]) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] in ({code} if isinstance(code, str) else code), error
    assert SNAKE.match(error["code"]), error
    assert isinstance(error["message"], str) and error["message"], error


def assert_rejected(item: dict, codes: set[str], filename: str | None = None) -> None:
    assert item["status"] == "rejected", item
    assert item["image"] is None, item
    assert item["error"]["code"] in codes, item
    assert SNAKE.match(item["error"]["code"]), item
    assert isinstance(item["error"]["message"], str) and item["error"]["message"], item
    if filename is not None:
        assert item["filename"] == filename, item


def assert_created(item: dict, data: bytes, filename: str | None = None) -> dict:
    assert item["status"] == "created", item
    assert item["error"] is None, item
    image = item["image"]
    assert image["sha256"] == hashlib.sha256(data).hexdigest(), image
    assert image["size"] == len(data), image
    if filename is not None:
        assert item["filename"] == filename == image["filename"], item
    return image


@contextmanager
def limited_server(tmp_path: Path, **env: str) -> Iterator[Server]:
    srv = Server(tmp_path / "data", **env).start()
    try:
        yield srv
    finally:
        srv.stop()


# -- bad parts, one at a time and all together ---------------------------------------


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_part_between_good_parts(server: Server, case: str):
    filename, maker, codes = BAD_INPUTS[case]
    first, last = good_jpeg(), good_jpeg()
    with server.client() as c:
        before = record_ids(c)
        r = upload(c, ("first.jpg", first), (filename, bad_bytes(maker)), ("last.jpg", last))
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 3, items
        a = assert_created(items[0], first, "first.jpg")
        assert_rejected(items[1], codes, filename)
        b = assert_created(items[2], last, "last.jpg")
        assert record_ids(c) - before == {a["id"], b["id"]}
    records = {r["id"]: r for r in assert_clean(server)}
    assert records[a["id"]]["status"] == records[b["id"]]["status"] == "ready"


def test_all_bad_parts_in_one_request(server: Server):
    goods = [good_jpeg() for _ in range(3)]
    cases = sorted(BAD_INPUTS)
    files = [("good-0.jpg", goods[0])]
    for i, case in enumerate(cases):
        files.append((BAD_INPUTS[case][0], bad_bytes(BAD_INPUTS[case][1])))
        if i == len(cases) // 2:
            files.append(("good-1.jpg", goods[1]))
    files.append(("good-2.jpg", goods[2]))
    with server.client() as c:
        before = record_ids(c)
        r = upload(c, *files)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
    assert [i["filename"] for i in items] == [f for f, _ in files]
    created, counts = set(), {"created": 0, "rejected": 0}
    for (filename, data), item in zip(files, items, strict=True):
        if filename.startswith("good-"):
            created.add(assert_created(item, data, filename)["id"])
        else:
            case = next(k for k, v in BAD_INPUTS.items() if v[0] == filename)
            assert_rejected(item, BAD_INPUTS[case][2], filename)
        counts[item["status"]] += 1
    assert counts == {"created": 3, "rejected": len(BAD_INPUTS)}
    with server.client() as c:
        assert record_ids(c) - before == created
    assert_clean(server)


def test_same_bad_part_twice_and_a_duplicate_good_one(server: Server):
    good = good_jpeg()
    with server.client() as c:
        before = record_ids(c)
        r = upload(c, ("a.jpg", good), ("x.jpg", b"not an image"), ("b.jpg", good),
                   ("y.jpg", b"not an image"))
        assert r.status_code == 200, r.text
        a, x, b, y = r.json()["items"]
        image = assert_created(a, good, "a.jpg")
        assert b["status"] == "duplicate" and b["image"]["id"] == image["id"], b
        assert_rejected(x, {"unsupported_type"}, "x.jpg")
        assert_rejected(y, {"unsupported_type"}, "y.jpg")
        assert record_ids(c) - before == {image["id"]}
    assert_clean(server)


# -- hostile filenames ------------------------------------------------------------------

HOSTILE_NAMES: dict[str, bytes] = {
    "dotdot": b"../../etc/passwd.jpg",
    "absolute": b"/etc/cron.d/evil.jpg",
    "windows": b"C:\\x\\evil.jpg",
    "unc": b"\\\\server\\share\\evil.jpg",
    "nul": b"nul\x00byte.jpg",
    "control": b"ctrl\x01\x07\x08\x1b[31mred\x7f.jpg",
    "bidi": "photo\u202egpj.exe.jpg".encode(),
    "zero_width": "zero\u200b\u200d\ufeffwidth.jpg".encode(),
    "long_1000": b"L" * 996 + b".jpg",
    "dots_only": b"..",
    "empty": b"",
    "invalid_utf8": b"bad\xff\xfeutf8.jpg",
}


def assert_safe_filename(name: str) -> None:
    assert isinstance(name, str) and name, name
    assert "/" not in name and "\\" not in name, name
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name), ascii(name)
    assert name not in (".", ".."), name
    assert not name.startswith("."), name
    assert len(name) <= 255, len(name)


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_filename_is_sanitized(server: Server, case: str):
    raw = HOSTILE_NAMES[case]
    data = good_jpeg()
    with server.client() as c:
        before = record_ids(c)
        r = post_raw(c, multipart([(raw, data)]))
        assert r.status_code == 200, r.text
        (item,) = r.json()["items"]
        image = assert_created(item, data)
        assert item["filename"] == image["filename"]
        assert_safe_filename(item["filename"])
        stored = c.get(f"/v1/images/{image['id']}")
        assert stored.status_code == 200
        assert stored.json()["filename"] == item["filename"]
        assert record_ids(c) - before == {image["id"]}
    if raw.endswith(b".jpg"):
        assert item["filename"].endswith(".jpg"), item["filename"]
    if case in ("dotdot", "absolute", "windows", "unc"):
        assert item["filename"] in ("passwd.jpg", "evil.jpg"), item["filename"]
    assert_clean(server)
    for base in (Path.cwd(), server.data_dir.parent, server.data_dir.parent.parent,
                 Path("/etc"), Path("/etc/cron.d"), Path("/tmp")):
        for leaked in ("passwd.jpg", "evil.jpg"):
            assert not (base / leaked).exists(), base / leaked


def test_hostile_filename_through_httpx(server: Server):
    """The same names the way an ordinary client library escapes them."""
    names = ["../../etc/passwd.jpg", "C:\\x\\evil.jpg", "nul\x00x.jpg", "bidi\u202egpj.jpg",
             "L" * 996 + ".jpg"]
    datas = [good_jpeg() for _ in names]
    with server.client() as c:
        r = upload(c, *zip(names, datas, strict=True))
        assert r.status_code == 200, r.text
        items = r.json()["items"]
    assert len(items) == len(names)
    for item, data in zip(items, datas, strict=True):
        assert_created(item, data)
        assert_safe_filename(item["filename"])
    assert_clean(server)


# -- limits -------------------------------------------------------------------------------


def test_too_many_parts(tmp_path: Path):
    datas = [good_jpeg() for _ in range(5)]
    with limited_server(tmp_path, IMGRESS_MAX_PARTS="3") as srv, srv.client() as c:
        r = upload(c, *((f"p{i}.jpg", d) for i, d in enumerate(datas)))
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 5, items
        ids = {assert_created(items[i], datas[i], f"p{i}.jpg")["id"] for i in range(3)}
        for i in (3, 4):
            assert_rejected(items[i], {"too_many_parts"}, f"p{i}.jpg")
            assert items[i]["error"].get("limit") in (3, None), items[i]
        assert record_ids(c) == ids
        records = assert_clean(srv)
        assert len(records) == 3
        assert {r["status"] for r in records} == {"ready"}


def test_part_over_size_limit(tmp_path: Path):
    first, last = good_jpeg(), good_jpeg()
    big = b"\xff\xd8\xff\xe0" + random.Random(7).randbytes(1_000_000)
    with limited_server(tmp_path, IMGRESS_MAX_PART_BYTES="200000") as srv, srv.client() as c:
        r = upload(c, ("first.jpg", first), ("big.jpg", big), ("last.jpg", last))
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 3, items
        a = assert_created(items[0], first, "first.jpg")
        assert_rejected(items[1], {"part_too_large"}, "big.jpg")
        b = assert_created(items[2], last, "last.jpg")
        assert record_ids(c) == {a["id"], b["id"]}
        assert_clean(srv)
        # the spool really is empty right after the answer, not only eventually
        spool, _ = storage_files(srv.data_dir)
        assert spool == []


def test_request_over_size_limit_with_content_length(tmp_path: Path):
    body = multipart([(b"a.jpg", good_jpeg()),
                      (b"b.jpg", b"\xff\xd8\xff" + random.Random(8).randbytes(150_000))])
    env = {"IMGRESS_MAX_REQUEST_BYTES": "100000", "IMGRESS_MAX_PART_BYTES": "100000"}
    with limited_server(tmp_path, **env) as srv, srv.client() as c:
        r = post_raw(c, body)
        assert_error_body(r, 413, "request_too_large")
        assert r.json()["error"].get("limit") in (100000, None)
        with srv.client() as fresh:
            assert record_ids(fresh) == set()
        assert_clean(srv)


def test_request_over_size_limit_streamed_without_content_length(tmp_path: Path):
    """Chunked: the limit must hold while reading, and the good first part goes too."""
    body = multipart([(b"a.jpg", good_jpeg()),
                      (b"b.jpg", b"\xff\xd8\xff" + random.Random(9).randbytes(300_000))])

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 16384):
            yield body[i:i + 16384]

    env = {"IMGRESS_MAX_REQUEST_BYTES": "100000", "IMGRESS_MAX_PART_BYTES": "100000"}
    with limited_server(tmp_path, **env) as srv, srv.client() as c:
        r = c.post("/v1/images", content=chunks(), headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert "content-length" not in r.request.headers
        assert_error_body(r, 413, "request_too_large")
        with srv.client() as fresh:
            assert record_ids(fresh) == set()
        assert_clean(srv)


# -- bodies cut short -------------------------------------------------------------------


def test_body_cut_mid_part(server: Server):
    """Content-Length matches what is sent, but the body ends inside the second part."""
    first, second = good_jpeg(), noise("JPEG")
    body = multipart([(b"first.jpg", first), (b"second.jpg", second)], close=False)
    body = body[: len(body) - len(second) // 2]
    with server.client() as c:
        before = record_ids(c)
        r = post_raw(c, body)
        if r.status_code == 200:
            items = r.json()["items"]
            assert len(items) == 2, items
            image = assert_created(items[0], first, "first.jpg")
            assert_rejected(items[1], {"incomplete_body"}, "second.jpg")
            assert record_ids(c) - before == {image["id"]}
        else:
            assert 400 <= r.status_code < 500, r.text
            assert SNAKE.match(r.json()["error"]["code"]), r.text
            assert record_ids(c) == before
    assert_clean(server)


def test_body_cut_before_any_part(server: Server):
    with server.client() as c:
        before = record_ids(c)
        r = post_raw(c, b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-da")
        assert 400 <= r.status_code < 500, r.text
        assert SNAKE.match(r.json()["error"]["code"]), r.text
        assert record_ids(c) == before
    assert_clean(server)


def test_body_cut_after_boundary_only(server: Server):
    """A part begun (headers complete) but no byte of data and no end."""
    with server.client() as c:
        before = record_ids(c)
        body = (b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="files";'
                b' filename="x.jpg"\r\n\r\n')
        r = post_raw(c, body)
        if r.status_code == 200:
            (item,) = r.json()["items"]
            assert_rejected(item, {"incomplete_body"}, "x.jpg")
        else:
            assert 400 <= r.status_code < 500, r.text
            assert SNAKE.match(r.json()["error"]["code"]), r.text
        assert record_ids(c) == before
    assert_clean(server)


def test_client_disconnects_mid_part(server: Server):
    """Raw socket: Content-Length promises more than is sent, then the client goes."""
    first, second = good_jpeg(), noise("JPEG", 400, 300)
    body = multipart([(b"first.jpg", first), (b"second.jpg", second)])
    sent = body[: len(body) - len(second) // 2]
    with server.client() as c:
        before = record_ids(c)
    head = (f"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + sent)
        time.sleep(0.3)
    records = assert_clean(server)
    with server.client() as c:
        new = [r for r in records if r["id"] not in before]
        # the complete first part may be kept; the cut second one never is
        assert [r["sha256"] for r in new] in ([], [hashlib.sha256(first).hexdigest()]), new
        assert c.get("/healthz").status_code == 200


# -- request-level refusals -------------------------------------------------------------


def test_not_multipart_is_415(server: Server):
    with server.client() as c:
        before = record_ids(c)
        r = c.post("/v1/images", json={"files": ["a.jpg"]})
        assert_error_body(r, 415, {"expected_multipart", "unsupported_media_type"})
        r = c.post("/v1/images", content=good_jpeg(), headers={"Content-Type": "image/jpeg"})
        assert_error_body(r, 415, {"expected_multipart", "unsupported_media_type"})
        assert record_ids(c) == before
    assert_clean(server)


def test_multipart_without_boundary_or_garbage_is_400(server: Server):
    with server.client() as c:
        before = record_ids(c)
        r = c.post("/v1/images", content=b"whatever",
                   headers={"Content-Type": "multipart/form-data"})
        assert_error_body(r, 400, {"malformed_multipart", "bad_request"})
        r = post_raw(c, b"this is not a multipart body at all\r\n" * 10)
        assert 400 <= r.status_code < 500, r.text
        assert SNAKE.match(r.json()["error"]["code"]), r.text
        assert record_ids(c) == before
    assert_clean(server)


def test_missing_api_key_is_401(server: Server):
    with server.client() as c:
        before = record_ids(c)
    with server.client(key=None) as anon:
        r = upload(anon, ("a.jpg", good_jpeg()))
        assert_error_body(r, 401, "missing_api_key")
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
        assert_error_body(anon.get("/v1/images"), 401, "missing_api_key")
    with server.client() as c:
        assert record_ids(c) == before
    assert_clean(server)


def test_wrong_api_key_is_401(server: Server):
    with server.client() as c:
        before = record_ids(c)
    with server.client(key="wrong-key-0000000000000000") as bad:
        r = upload(bad, ("a.jpg", good_jpeg()))
        assert_error_body(r, 401, "invalid_api_key")
        assert_error_body(bad.get("/v1/images"), 401, "invalid_api_key")
    with server.client() as c, httpx.Client(base_url=server.base_url,
                                             headers={"Authorization": f"Basic {KEY}"}) as basic:
        assert_error_body(upload(basic, ("a.jpg", good_jpeg())), 401, "invalid_api_key")
        assert record_ids(c) == before
    assert_clean(server)


def test_server_survives_everything(server: Server):
    """After all of the above in this module: alive, ready and every record finished."""
    assert server.proc is not None and server.proc.poll() is None
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
    records = assert_clean(server)
    assert records, "the good parts of this module were stored"
    assert {r["status"] for r in records} == {"ready"}
    assert all(re.fullmatch(HEX64, r["sha256"]) for r in records)


# -- connection handling after an early answer -------------------------------------


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


def test_early_413_closes_or_keeps_the_connection_cleanly(tmp_path: Path):
    """The 413 comes before the body is read. A server may then close the connection,
    but only after saying `Connection: close`; otherwise a keep-alive client (httpx's
    pool, browsers) sends its next request into a dead socket and gets no answer."""
    body = multipart([(b"b.jpg", b"\xff\xd8\xff" + random.Random(8).randbytes(150_000))])
    head = (f"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    env = {"IMGRESS_MAX_REQUEST_BYTES": "100000", "IMGRESS_MAX_PART_BYTES": "100000"}
    with limited_server(tmp_path, **env) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(head + body[:20_000])  # the answer is due from the headers alone
        status, headers, _ = read_response(sock)
        assert status == 413
        if headers.get("connection", "").lower() == "close":
            return
        time.sleep(0.3)
        try:
            sock.sendall(body[20_000:] + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, _ = read_response(sock)
        except OSError as exc:
            raise AssertionError(
                "after its early 413 the server dropped the keep-alive connection without "
                f"`Connection: close` (413 headers: {headers}); next request: {exc!r}"
            ) from None
        assert status == 200
