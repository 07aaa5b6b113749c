"""Durable processing: work pending at a stop is finished after the next start."""

from __future__ import annotations

import signal

from conftest import Server, make_jpeg, upload


def test_restart_finishes_pending_work(fresh_server: Server) -> None:
    # One worker and big images so that work is still pending when the process dies.
    srv = fresh_server
    srv.env["IMGRESS_WORKERS"] = "1"
    srv.start()
    files = [(f"r{i}.jpg", make_jpeg(2000, 1500, seed=1000 + i)) for i in range(12)]
    with srv.client() as c:
        ids = [i["image"]["id"] for i in upload(c, *files).json()["items"]]
        statuses = [c.get(f"/v1/images/{i}").json()["status"] for i in ids]
    assert len(ids) == 12
    srv.stop(signal.SIGKILL)  # no graceful shutdown: a crash
    assert any(s in ("pending", "processing") for s in statuses)
    srv.start()
    records = srv.wait_finished(ids, timeout=120)
    assert [r["status"] for r in records] == ["ready"] * 12
    assert '"recovered"' in srv.log()


def test_first_start_creates_and_prints_a_key_once(fresh_server: Server) -> None:
    srv = fresh_server
    del srv.env["IMGRESS_API_KEYS"]
    srv.start()
    printed = [ln.strip() for ln in srv.log().splitlines() if ln.strip().startswith("igk_")]
    assert len(printed) == 1
    key = printed[0]
    stored = (srv.data_dir / "api_keys.sha256").read_text()
    assert key not in stored and len(stored.strip()) == 64
    with srv.client(key=key) as c:
        assert c.get("/v1/images").status_code == 200
    with srv.client(key=None) as c:
        assert c.get("/v1/images").status_code == 401
    srv.stop()
    srv.start()
    assert sum(ln.strip().startswith("igk_") for ln in srv.log().splitlines()) == 1
    with srv.client(key=key) as c:
        assert c.get("/v1/images").status_code == 200


def test_auth_can_be_switched_off_explicitly(fresh_server: Server) -> None:
    srv = fresh_server
    del srv.env["IMGRESS_API_KEYS"]
    srv.start("--no-auth")
    with srv.client(key=None) as c:
        r = upload(c, ("open.jpg", make_jpeg(seed=1100)))
    assert r.status_code == 200 and r.json()["items"][0]["status"] == "created"
    assert "authentication is OFF" in srv.log()
