"""Bulk upload over real HTTP: created, duplicate, order, NDJSON, auth, listing."""

from __future__ import annotations

import json

from conftest import KEY, Server, make_jpeg, upload, upload_concurrently


def test_bulk_upload_creates_each_distinct_file_once(server: Server) -> None:
    a, b = make_jpeg(seed=1), make_jpeg(seed=2)
    with server.client() as c:
        r = upload(c, ("a.jpg", a), ("b.jpg", b), ("a-again.jpg", a))
        assert r.status_code == 200
        items = r.json()["items"]
        assert [i["status"] for i in items] == ["created", "created", "duplicate"]
        assert [i["filename"] for i in items] == ["a.jpg", "b.jpg", "a-again.jpg"]
        assert items[2]["image"]["id"] == items[0]["image"]["id"]
        again = upload(c, ("renamed.jpg", b)).json()["items"][0]
        assert again["status"] == "duplicate"
        assert again["image"]["id"] == items[1]["image"]["id"]
    rec = items[0]["image"]
    assert rec["content_type"] == "image/jpeg"
    assert rec["size"] == len(a) and (rec["width"], rec["height"]) == (64, 48)
    originals = list((server.data_dir / "storage" / "originals").rglob("*"))
    assert sum(p.is_file() for p in originals) >= 2
    stored = [p for p in originals if p.is_file() and p.name == rec["sha256"]]
    assert len(stored) == 1 and stored[0].read_bytes() == a


def test_type_is_sniffed_not_taken_from_name_or_header(server: Server) -> None:
    png = make_jpeg(seed=3, fmt="PNG")
    with server.client() as c:
        r = c.post("/v1/images", files=[("files", ("photo.jpg", png, "image/jpeg"))])
    item = r.json()["items"][0]
    assert item["status"] == "created"
    assert item["image"]["content_type"] == "image/png"


def test_processing_renders_thumb_and_web_variants(server: Server) -> None:
    with server.client() as c:
        created = upload(c, ("big.jpg", make_jpeg(2400, 1600, seed=4))).json()["items"][0]
    (rec,) = server.wait_finished([created["image"]["id"]])
    assert rec["status"] == "ready", rec
    assert rec["variants"]["thumb"]["width"] == 256 and rec["variants"]["thumb"]["height"] == 171
    assert (rec["variants"]["web"]["width"], rec["variants"]["web"]["height"]) == (1620, 1080)
    assert rec["variants"]["web"]["format"] == "webp"
    assert rec["variants"]["web"]["url"] == f"/i/{rec['sha256']}/web"


def test_ndjson_streams_one_line_per_part_then_end(server: Server) -> None:
    files = [(f"n{i}.jpg", make_jpeg(seed=100 + i)) for i in range(3)] + [("bad.jpg", b"hello")]
    with server.client() as c:
        r = upload(c, *files, headers={"Accept": "application/x-ndjson"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [ln.get("status") for ln in lines[:4]] == ["created"] * 3 + ["rejected"]
    assert lines[3]["error"]["code"] == "unsupported_type"
    assert lines[4]["end"] is True and lines[4]["job_id"] == r.headers["x-imgress-job"]


def test_list_is_newest_first_with_cursor(server: Server) -> None:
    with server.client() as c:
        ids = [upload(c, (f"l{i}.jpg", make_jpeg(seed=200 + i))).json()["items"][0]["image"]["id"]
               for i in range(3)]
        first = c.get("/v1/images", params={"limit": 2}).json()
        assert [i["id"] for i in first["items"]] == ids[::-1][:2]
        second = c.get("/v1/images", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert second["items"][0]["id"] == ids[0]
        assert c.get("/v1/images", params={"cursor": "!!"}).status_code == 422


def test_get_and_delete(server: Server) -> None:
    data = make_jpeg(seed=300)
    with server.client() as c:
        image = upload(c, ("d.jpg", data)).json()["items"][0]["image"]
        server.wait_finished([image["id"]])
        assert c.get(f"/v1/images/{image['id']}").json()["sha256"] == image["sha256"]
        assert c.get(f"/i/{image['sha256']}/original").content == data
        assert c.delete(f"/v1/images/{image['id']}").status_code == 204
        missing = c.get(f"/v1/images/{image['id']}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "image_not_found"
        assert c.get(f"/i/{image['sha256']}/original").status_code == 404
        assert c.get(f"/i/{image['sha256']}/thumb").status_code == 404
    assert not any(image["sha256"] in str(p) for p in (server.data_dir / "storage").rglob("*"))


def test_auth_required_and_keys_scope_records(server: Server) -> None:
    with server.client(key=None) as anon:
        r = upload(anon, ("x.jpg", make_jpeg(seed=400)))
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        assert anon.get("/v1/images").status_code == 401
    with server.client(key="wrong-key-0000000000000") as bad:
        assert bad.get("/v1/images").json()["error"]["code"] == "invalid_api_key"
    assert KEY  # the fixture's key is the only one the server accepts


def test_concurrent_identical_uploads_store_one_copy(server: Server) -> None:
    items = upload_concurrently([server], make_jpeg(300, 200, seed=500), 8)
    assert sorted(i["status"] for i in items) == ["created"] + ["duplicate"] * 7
    assert len({i["image"]["id"] for i in items}) == 1
    sha = items[0]["image"]["sha256"]
    copies = [p for p in (server.data_dir / "storage" / "originals").rglob(sha)]
    assert len(copies) == 1
    assert not list((server.data_dir / "storage" / ".spool").glob("in-*"))
