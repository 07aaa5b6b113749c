"""Direct uploads on S3 + PostgreSQL: the client PUTs to presigned URLs, the server
checks each staged object at commit and publishes it with a server-side copy."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import httpx
import pytest

from conftest import KEY, Server, make_jpeg
from imgress.app import build_service
from imgress.client import Client
from imgress.config import load_settings
from imgress.db.migrate import upgrade
from imgress.direct_uploads import DeclaredFile
from imgress.jobs.base import TASK_NAMES


def _keys(moto_s3: str, bucket: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_client_uploads_straight_to_s3(moto_s3: str, s3_bucket: str, postgres_url: str,
                                       tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_DATABASE_URL=postgres_url,
                 IMGRESS_STORAGE_URL=f"s3://{s3_bucket}/imgs?endpoint_url={moto_s3}",
                 AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test").start()
    try:
        paths = []
        for i in range(6):
            paths.append(tmp_path / f"p{i}.jpg")
            paths[-1].write_bytes(make_jpeg(320, 240, seed=7000 + i))
        (tmp_path / "copy.jpg").write_bytes(paths[0].read_bytes())
        (tmp_path / "notes.jpg").write_bytes(b"not a picture at all")
        files = [*paths, tmp_path / "copy.jpg", tmp_path / "notes.jpg"]

        results = Client(srv.base_url, KEY, commit_batch=4).upload_many(files)
        statuses = [r.status for r in results]
        assert statuses[:6] == ["created"] * 6 and statuses[6] in ("created", "duplicate")
        assert results[6].image["id"] == results[0].image["id"]  # type: ignore[index]
        assert results[7].status == "rejected"
        assert results[7].error["code"] == "unsupported_type"  # type: ignore[index]
        again = Client(srv.base_url, KEY).upload_many(paths[:2])
        assert [r.status for r in again] == ["duplicate"] * 2

        keys = _keys(moto_s3, s3_bucket)
        assert not [k for k in keys if "/staging/" in k]  # published or deleted, all
        for path in paths:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            assert f"imgs/originals/{sha[:2]}/{sha[2:4]}/{sha}" in keys
        records = srv.wait_finished([r.image["id"] for r in results[:6]])  # type: ignore[index]
        assert [r["status"] for r in records] == ["ready"] * 6
    finally:
        srv.stop()


def test_staged_objects_are_checked_at_commit(moto_s3: str, s3_bucket: str,
                                              postgres_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, database_url=postgres_url,
        storage_url=f"s3://{s3_bucket}?endpoint_url={moto_s3}")
    upgrade(settings.resolved_database_url)
    parts = build_service(settings)
    direct, dispatcher = parts.direct, parts.dispatcher
    dispatcher.start({name: lambda _id: None for name in TASK_NAMES})
    try:
        good, other = make_jpeg(64, 64, seed=7100), make_jpeg(64, 64, seed=7101)
        declared = [DeclaredFile("good.jpg", len(good), "image/jpeg",
                                 hashlib.sha256(good).hexdigest()),
                    DeclaredFile("short.jpg", len(good), "image/jpeg"),
                    DeclaredFile("liar.jpg", len(other), "image/jpeg",
                                 hashlib.sha256(good).hexdigest()),
                    DeclaredFile("later.jpg", len(other), "image/jpeg"),
                    DeclaredFile("never.jpg", len(other), "image/jpeg")]
        slots = direct.reserve("o", declared, "http://unused")
        url = slots[0]["url"]
        assert url.startswith(moto_s3) and "/staging/" in url
        assert parse_qs(urlparse(url).query)["X-Amz-SignedHeaders"] == [
            "content-length;content-type;host"]
        # moto does not enforce signed lengths as S3 does: the commit checks anyway.
        for slot, data in zip(slots[:3], [good, good[:-10], other], strict=True):
            assert httpx.put(slot["url"], content=data,
                             headers={"Content-Type": "image/jpeg"}).status_code == 200
        ids = [s["upload_id"] for s in slots]
        _, items = direct.commit("o", ids[:4], "req")
        assert items[0]["status"] == "created"
        assert [i["error"]["code"] for i in items[1:]] == [
            "size_mismatch", "sha256_mismatch", "not_uploaded"]
        _, replay = direct.commit("o", ids[:1], "req")
        assert replay[0]["image"]["id"] == items[0]["image"]["id"]
        # A slot committed before its PUT stays open for it.
        assert httpx.put(slots[3]["url"], content=other,
                         headers=slots[3]["headers"]).status_code == 200
        _, late = direct.commit("o", ids[3:4], "req")
        assert late[0]["status"] == "created"

        assert httpx.put(slots[4]["url"], content=other,
                         headers=slots[4]["headers"]).status_code == 200
        assert direct.cleanup(grace_seconds=-settings.upload_ttl_seconds - 60) >= 1
        assert not [k for k in _keys(moto_s3, s3_bucket) if k.startswith("staging/")]
    finally:
        dispatcher.stop()
        parts.images.repo.engine.dispose()


@pytest.mark.parametrize("storage", ["local"])
def test_local_storage_still_answers_own_put_url(storage: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    direct = build_service(settings).direct
    (slot,) = direct.reserve("o", [DeclaredFile("a.jpg", 10, "image/jpeg")], "http://srv")
    assert slot["url"].startswith("http://srv/v1/uploads/") and "token=" in slot["url"]
    assert slot["headers"] == {"Content-Type": "image/jpeg"}
