"""Direct uploads over real HTTP: reserve, put, commit, and every abuse refused."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest

from conftest import Server, image_inserts, make_jpeg, put_all, record_statements
from imgress.app import build_service
from imgress.config import load_settings
from imgress.db.migrate import upgrade
from imgress.direct_uploads import DeclaredFile
from imgress.jobs.base import TASK_NAMES


def _declare(data: bytes, name: str = "f.jpg", with_sha: bool = True, **over) -> dict:
    decl = {"filename": name, "size": len(data), "content_type": "image/jpeg"}
    if with_sha:
        decl["sha256"] = hashlib.sha256(data).hexdigest()
    return {**decl, **over}


def _reserve(c: httpx.Client, *decls: dict) -> list[dict]:
    r = c.post("/v1/uploads", json={"files": list(decls)})
    assert r.status_code == 200, r.text
    return r.json()["uploads"]


def _put(slot: dict, data: bytes, **kw) -> httpx.Response:
    return httpx.put(slot["url"], content=data, headers=kw.pop("headers", slot["headers"]), **kw)


def _commit(c: httpx.Client, *ids: str) -> list[dict]:
    r = c.post("/v1/uploads/commit", json={"upload_ids": list(ids)})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_reserve_put_commit(server: Server) -> None:
    datas = [make_jpeg(seed=2000 + i) for i in range(3)]
    with server.client() as c:
        slots = _reserve(c, *(_declare(d, f"d{i}.jpg") for i, d in enumerate(datas)))
        assert all(s["method"] == "PUT" and "token=" in s["url"] for s in slots)
        assert all(s["expires_at"].endswith("Z") for s in slots)
        for slot, data in zip(slots, datas, strict=True):
            r = _put(slot, data)
            assert r.status_code == 200 and r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        # staged bytes are invisible until committed
        assert c.get(f"/i/{hashlib.sha256(datas[0]).hexdigest()}/original").status_code == 404
        items = _commit(c, *(s["upload_id"] for s in slots))
        assert [i["status"] for i in items] == ["created"] * 3
        assert [i["upload_id"] for i in items] == [s["upload_id"] for s in slots]
        again = _commit(c, slots[0]["upload_id"])
        assert again[0]["image"]["id"] == items[0]["image"]["id"]
        assert c.get(f"/i/{items[0]['image']['sha256']}/original").content == datas[0]
    records = server.wait_finished([i["image"]["id"] for i in items])
    assert [r["status"] for r in records] == ["ready"] * 3


def test_duplicate_of_existing_bytes(server: Server) -> None:
    data = make_jpeg(seed=2100)
    with server.client() as c:
        first = c.post("/v1/images", files=[("files", ("x.jpg", data))]).json()["items"][0]
        (slot,) = _reserve(c, _declare(data))
        assert _put(slot, data).status_code == 200
        (item,) = _commit(c, slot["upload_id"])
    assert item["status"] == "duplicate" and item["image"]["id"] == first["image"]["id"]


def test_abuses_are_refused(server: Server) -> None:
    good, other = make_jpeg(seed=2200), make_jpeg(seed=2201)
    with server.client() as c:
        replay, forged, big, wrong_hash, never_put, text_file = _reserve(
            c, _declare(good, "replay.jpg"), _declare(other, "forged.jpg"),
            _declare(other, "big.jpg"), _declare(other, "hash.jpg", sha256="0" * 64),
            _declare(other, "never.jpg"),
            _declare(b"hello, not an image", "t.jpg", with_sha=False))
        assert _put(replay, good).status_code == 200
        r = _put(replay, good)
        assert r.status_code == 409 and r.json()["error"]["code"] == "token_used"

        tampered = forged["url"].replace("token=", "token=1")
        r = httpx.put(tampered, content=other, headers=forged["headers"])
        assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_token"
        other_id = forged["url"].replace(forged["upload_id"], replay["upload_id"])
        r = httpx.put(other_id, content=other, headers=forged["headers"])
        assert r.status_code in (403, 409)

        r = _put(big, other + b"extra bytes")
        assert r.status_code == 413 and r.json()["error"]["code"] == "size_exceeded"
        assert _put(big, other).status_code == 200  # a failed put leaves the slot usable

        r = _put(wrong_hash, other)
        assert r.status_code == 400 and r.json()["error"]["code"] == "sha256_mismatch"

        r = _put(text_file, b"hello, not an image", headers={"Content-Type": "text/plain"})
        assert r.json()["error"]["code"] == "content_type_mismatch"
        assert _put(text_file, b"hello, not an image").status_code == 200

        items = _commit(c, replay["upload_id"], big["upload_id"], wrong_hash["upload_id"],
                        never_put["upload_id"], text_file["upload_id"], "upl_never_reserved")
    codes = [(i["status"], (i["error"] or {}).get("code")) for i in items]
    assert codes == [
        ("created", None), ("created", None), ("rejected", "not_uploaded"),
        ("rejected", "not_uploaded"), ("rejected", "unsupported_type"),
        ("rejected", "upload_not_found"),
    ]


def test_other_keys_upload_and_missing_key(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_API_KEYS="key-one-0123456789,key-two-0123456789")
    srv.start()
    try:
        data = make_jpeg(seed=2300)
        with srv.client(key="key-one-0123456789") as one, \
                srv.client(key="key-two-0123456789") as two, srv.client(key=None) as anon:
            (slot,) = _reserve(one, _declare(data))
            assert _put(slot, data).status_code == 200
            (item,) = _commit(two, slot["upload_id"])
            assert item["error"]["code"] == "upload_not_found"
            assert anon.post("/v1/uploads", json={"files": [_declare(data)]}).status_code == 401
            r = anon.post("/v1/uploads/commit", json={"upload_ids": [slot["upload_id"]]})
            assert r.status_code == 401
            assert _commit(one, slot["upload_id"])[0]["status"] == "created"
    finally:
        srv.stop()


def test_expired_token_and_batch_limit(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_UPLOAD_TTL_SECONDS="10",
                 IMGRESS_MAX_BATCH_UPLOADS="3", IMGRESS_UPLOAD_CLEANUP_SECONDS="0.5")
    srv.start()
    try:
        data = make_jpeg(seed=2400)
        with srv.client() as c:
            r = c.post("/v1/uploads", json={"files": [_declare(data)] * 4})
            assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_uploads"
            r = c.post("/v1/uploads/commit", json={"upload_ids": ["a", "b", "c", "d"]})
            assert r.status_code == 413
            (slot,) = _reserve(c, _declare(data))
            time.sleep(11)
            r = _put(slot, data)
            assert r.status_code == 403 and r.json()["error"]["code"] == "token_expired"
            (item,) = _commit(c, slot["upload_id"])
            assert item["error"]["code"] in ("upload_expired", "upload_not_found")
    finally:
        srv.stop()


def test_commit_of_1000_is_one_insert_and_cleanup_removes_stale(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, upload_ttl_seconds=10)
    upgrade(settings.resolved_database_url)
    parts = build_service(settings)
    svc, direct, dispatcher = parts.images, parts.direct, parts.dispatcher
    dispatcher.start({name: lambda _id: None for name in TASK_NAMES})
    try:
        datas = [make_jpeg(8, 8, seed=s) for s in range(1000)]
        slots = direct.reserve("o", [DeclaredFile(f"{i}.jpg", len(d), "image/jpeg")
                                     for i, d in enumerate(datas)], "http://x")
        put_all(direct, slots, datas)
        statements = record_statements(svc.repo.engine)
        _, items = direct.commit("o", [s["upload_id"] for s in slots], "req")
        assert [i["status"] for i in items].count("created") == len({*map(bytes, datas)})
        inserts = image_inserts(statements)
        assert len(inserts) == 1
        assert len(statements) < 15, statements
        # a reserved, never-used slot is removed once expired (+ grace)
        (stale,) = direct.reserve("o", [DeclaredFile("s.jpg", 10, "image/jpeg")], "http://x")
        assert direct.cleanup(grace_seconds=-60) >= 1
        assert direct.repo.get(stale["upload_id"]) is None
    finally:
        dispatcher.stop()


def test_cleanup_removes_slots_left_committing_by_a_dead_commit(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, upload_ttl_seconds=10)
    upgrade(settings.resolved_database_url)
    direct = build_service(settings).direct
    data = make_jpeg(32, 32, seed=5)
    slots = direct.reserve("o", [DeclaredFile("a.jpg", len(data), "image/jpeg")], "http://x")
    put_all(direct, slots, [data])
    uid = slots[0]["upload_id"]
    staged = direct._staged_path(uid)
    assert staged.exists(), "the PUT left a staged file"
    # a commit claims the slot, then its process dies before it settles
    assert direct.repo.claim_for_commit("o", [uid]) == {uid}
    assert direct.cleanup(grace_seconds=-60) == 0  # expired, but not stuck long enough
    assert direct.repo.get(uid).status == "committing"
    assert direct.cleanup(grace_seconds=-60, stuck_seconds=-60) == 1
    assert direct.repo.get(uid) is None
    assert not staged.exists()


@pytest.mark.parametrize("body", [
    {"files": [{"filename": "a", "size": 0, "content_type": "image/jpeg"}]},
    {"files": [{"filename": "a", "size": 5, "content_type": "image/jpeg", "sha256": "xyz"}]},
    {"files": "nope"},
])
def test_bad_reserve_bodies_are_400(server: Server, body: dict) -> None:
    with server.client() as c:
        r = c.post("/v1/uploads", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
