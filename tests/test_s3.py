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


def test_presigned_urls_name_the_outside_address(moto_s3: str, s3_bucket: str,
                                                 tmp_path: Path) -> None:
    """In compose the server reaches the store as http://minio:9000, which clients
    cannot resolve: presign_endpoint makes the URLs for the address they can."""
    from imgress.config import parse_s3_url
    from imgress.storage.s3 import S3Storage

    outside = moto_s3.replace("127.0.0.1", "localhost")
    options = parse_s3_url(f"s3://{s3_bucket}/p?endpoint_url={moto_s3}"
                           f"&presign_endpoint={outside}")
    store = S3Storage(options["bucket"], prefix=options["prefix"],
                      endpoint_url=options["endpoint_url"],
                      presign_endpoint=options["presign_endpoint"], spool_root=tmp_path)
    body = make_jpeg(64, 48, seed=5)
    presigned = store.presign_put("staging/x", len(body), "image/jpeg", 60)
    assert presigned is not None
    url, headers = presigned
    assert url.startswith(f"{outside}/{s3_bucket}/p/staging/x?")
    assert httpx.put(url, content=body, headers=headers).status_code == 200
    assert store.stat("staging/x").size == len(body)  # through the inside address
    assert store.url("staging/x").startswith(outside)
    plain = S3Storage(s3_bucket, endpoint_url=moto_s3, spool_root=tmp_path)
    assert plain.presign_put("k", 1, "image/jpeg", 60)[0].startswith(moto_s3)  # type: ignore[index]
