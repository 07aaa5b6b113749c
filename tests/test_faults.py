"""Faults of the scale-out engines; in each one nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import redis
from botocore.exceptions import ClientError

from conftest import FlakyProxy, Server, make_jpeg, upload, upload_concurrently
from imgress.storage.s3 import S3Storage
from test_celery import start_worker, stop


def test_two_api_servers_take_the_same_file_at_once(postgres_url: str, tmp_path: Path
                                                     ) -> None:
    shared = {"IMGRESS_DATABASE_URL": postgres_url,
              "IMGRESS_STORAGE_URL": f"file://{tmp_path / 'shared-store'}"}
    one = Server(tmp_path / "one", **shared).start()
    two = Server(tmp_path / "two", **shared).start()
    try:
        items = upload_concurrently([one, two], make_jpeg(500, 400, seed=7000), 8)
        assert sorted(i["status"] for i in items) == ["created"] + ["duplicate"] * 7
        assert len({i["image"]["id"] for i in items}) == 1
        copies = list((tmp_path / "shared-store" / "originals").rglob(items[0]["image"]["sha256"]))
        assert len(copies) == 1
    finally:
        one.stop()
        two.stop()


def test_dropped_database_connections_are_not_5xx(postgres_url: str, tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_DATABASE_URL=postgres_url).start()
    try:
        with srv.client() as c:
            assert upload(c, ("a.jpg", make_jpeg(seed=7100))).status_code == 200
            name = postgres_url.rsplit("/", 1)[1]
            with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/test",
                                 autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchone()[0]
            assert killed >= 1  # the server's pooled connections are gone
            r = upload(c, ("b.jpg", make_jpeg(seed=7101)))
            assert r.status_code == 200 and r.json()["items"][0]["status"] == "created"
            assert c.get("/readyz").status_code == 200
    finally:
        srv.stop()


def test_s3_errors_are_retried_then_clear(moto_s3: str, s3_bucket: str, tmp_path: Path) -> None:
    flaky = FlakyProxy(moto_s3, failures=3)  # 429/503 for the first tries of each kind
    try:
        storage = S3Storage(s3_bucket, endpoint_url=flaky.url, spool_root=tmp_path)
        source = storage.spool_dir() / "x"
        source.write_bytes(b"bytes")
        assert storage.put("originals/aa/bb/x", source) is True
        assert flaky.seen["PUT"] > flaky.forwarded["PUT"]  # refused first, then retried
        assert storage.stat("originals/aa/bb/x").size == 5
    finally:
        flaky.close()
    dead = FlakyProxy(moto_s3, always_fail=True)
    try:
        storage = S3Storage(s3_bucket, endpoint_url=dead.url, spool_root=tmp_path, retries=2)
        with pytest.raises(ClientError) as err:
            storage.stat("originals/aa/bb/x")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (429, 503)
    finally:
        dead.close()


def test_broker_losing_its_queue_loses_no_work(broker: str, tmp_path: Path) -> None:
    lease = {"IMGRESS_PROCESSING_LEASE_SECONDS": "2"}
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=broker, **lease).start()
    try:
        with srv.client() as c:
            ids = [i["image"]["id"] for i in upload(
                c, *[(f"q{i}.jpg", make_jpeg(300, 200, seed=7200 + i)) for i in range(5)]
            ).json()["items"]]
        redis.Redis.from_url(broker).flushdb()  # as if it restarted without persistence
        time.sleep(0.5)
        worker = start_worker(srv.data_dir, tmp_path / "worker.log", **lease)
        try:
            records = srv.wait_finished(ids, timeout=60)
        finally:
            stop(worker)
        assert [r["status"] for r in records] == ["ready"] * 5
        assert "resubmitted_stale" in srv.log()
    finally:
        srv.stop()
