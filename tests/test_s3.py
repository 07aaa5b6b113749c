"""The service on S3-compatible storage (moto's server mode over real HTTP)."""

from __future__ import annotations

from pathlib import Path

import httpx

from conftest import Server, make_jpeg, upload


def test_server_on_s3(moto_s3: str, s3_bucket: str, tmp_path: Path) -> None:
    srv = Server(tmp_path / "data",
                 IMGRESS_STORAGE_URL=f"s3://{s3_bucket}/imgs?endpoint_url={moto_s3}",
                 AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    srv.start()
    try:
        data = make_jpeg(640, 480, seed=5000)
        with srv.client() as c:
            items = upload(c, ("s3.jpg", data), ("again.jpg", data)).json()["items"]
            assert [i["status"] for i in items] == ["created", "duplicate"]
            (rec,) = srv.wait_finished([items[0]["image"]["id"]])
            assert rec["status"] == "ready", rec
            r = c.get(rec["variants"]["web"]["url"])
            assert r.status_code == 302
            assert r.headers["location"].startswith(moto_s3)
            assert c.get(f"/i/{rec['sha256']}/original", follow_redirects=True).content == data
            web = httpx.get(r.headers["location"])
            assert web.status_code == 200 and web.content[8:12] == b"WEBP"
            assert c.get("/readyz").status_code == 200
            assert c.delete(f"/v1/images/{rec['id']}").status_code == 204
            assert httpx.get(r.headers["location"]).status_code == 404
    finally:
        srv.stop()


def test_unreachable_s3_makes_readyz_503(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data",
                 IMGRESS_STORAGE_URL="s3://nobucket?endpoint_url=http://127.0.0.1:9",
                 AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    srv.start()
    try:
        with srv.client() as c:
            r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["storage"].startswith("down")
        assert r.json()["checks"]["database"] == "ok"
    finally:
        srv.stop()
