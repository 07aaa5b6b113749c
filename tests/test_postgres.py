"""The same schema, migrations and code paths on a real PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import (
    Server,
    image_inserts,
    make_jpeg,
    put_all,
    record_statements,
    upload,
    upload_concurrently,
)
from imgress.app import build_service
from imgress.config import load_settings
from imgress.db.engine import make_engine
from imgress.db.migrate import upgrade
from imgress.db.schema import metadata
from imgress.direct_uploads import DeclaredFile
from imgress.jobs.base import TASK_NAMES


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_match_the_schema(kind: str, tmp_path: Path, request: pytest.FixtureRequest
                                     ) -> None:
    url = (f"sqlite:///{tmp_path / 'm.db'}" if kind == "sqlite"
           else request.getfixturevalue("postgres_url"))
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_server_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_DATABASE_URL=postgres_url)
    srv.start()
    try:
        a, b = make_jpeg(300, 200, seed=4000), make_jpeg(300, 200, seed=4001)
        with srv.client() as c:
            items = upload(c, ("a.jpg", a), ("b.jpg", b), ("a2.jpg", a)).json()["items"]
            assert [i["status"] for i in items] == ["created", "created", "duplicate"]
            slots = c.post("/v1/uploads", json={"files": [
                {"filename": "t.txt", "size": 5, "content_type": "text/plain"}]}).json()
            slot = slots["uploads"][0]
            assert httpx.put(slot["url"], content=b"hello",
                             headers=slot["headers"]).status_code == 200
            (bad,) = c.post("/v1/uploads/commit",
                            json={"upload_ids": [slot["upload_id"]]}).json()["items"]
            assert bad["error"]["code"] == "unsupported_type"
        records = srv.wait_finished([i["image"]["id"] for i in items[:2]])
        assert [r["status"] for r in records] == ["ready", "ready"]

        same = upload_concurrently([srv], make_jpeg(200, 100, seed=4100), 6)
        assert sorted(i["status"] for i in same) == ["created"] + ["duplicate"] * 5
        assert len({i["image"]["id"] for i in same}) == 1
    finally:
        srv.stop()


def test_commit_is_one_insert_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=postgres_url)
    upgrade(settings.resolved_database_url)
    parts = build_service(settings)
    svc, direct, dispatcher = parts.images, parts.direct, parts.dispatcher
    dispatcher.start({name: lambda _id: None for name in TASK_NAMES})
    try:
        datas = [make_jpeg(8, 8, seed=s) + s.to_bytes(4, "big") for s in range(300)]
        slots = direct.reserve("o", [DeclaredFile(f"{i}.jpg", len(d), "image/jpeg",
                                                  hashlib.sha256(d).hexdigest())
                                     for i, d in enumerate(datas)], "http://x")
        put_all(direct, slots, datas)
        statements = record_statements(svc.repo.engine)
        _, items = direct.commit("o", [s["upload_id"] for s in slots], "req")
        assert [i["status"] for i in items] == ["created"] * 300
        inserts = image_inserts(statements)
        assert len(inserts) == 1
        _, again = direct.commit("o", [slots[0]["upload_id"]], "req")
        assert again[0]["image"]["id"] == items[0]["image"]["id"]
    finally:
        dispatcher.stop()
        svc.repo.engine.dispose()
