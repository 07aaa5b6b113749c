"""PostgreSQL connections killed mid-flight, serialization failures and deadlocks are
retried by the repositories: no 5xx, no duplicate rows."""

from __future__ import annotations

import psycopg
from sqlalchemy import event, func, select

from conftest import Server, make_jpeg, upload
from imgress.db.engine import make_engine
from imgress.db.migrate import upgrade
from imgress.db.repository import Repository
from imgress.db.schema import images, jobs
from imgress.models import Image, new_id, utcnow


def _image(sha: str) -> Image:
    return Image(id=new_id("img"), owner="o", sha256=sha, filename="a.jpg",
                 content_type="image/jpeg", size=1, width=1, height=1, exif_orientation=None,
                 created_at=utcnow(), request_id=None)


def _count(repo: Repository, table) -> int:  # type: ignore[no-untyped-def]
    with repo.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_backend_killed_mid_insert_is_retried_once(postgres_url: str) -> None:
    upgrade(postgres_url)
    repo = Repository(make_engine(postgres_url))
    killed: list[int] = []

    def kill_own_backend(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO IMAGES") and not killed:
            pid = cursor.connection.info.backend_pid
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)

    event.listen(repo.engine, "before_cursor_execute", kill_own_backend)
    try:
        batch = [_image(f"{n:064x}") for n in range(50)]
        inserted = repo.insert_images(batch)
        assert killed and inserted == {i.id for i in batch}
        assert _count(repo, images) == 50
    finally:
        repo.engine.dispose()


def test_serialization_failure_and_deadlock_are_retried(postgres_url: str) -> None:
    upgrade(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        # nextval is not rolled back: the first two inserts fail, the third passes.
        admin.execute("CREATE SEQUENCE flaky_seq")
        admin.execute("""
            CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE n bigint := nextval('flaky_seq');
            BEGIN
              IF n = 1 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END IF;
              IF n = 2 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; END IF;
              RETURN NEW;
            END $$""")
        admin.execute("CREATE TRIGGER flaky BEFORE INSERT ON jobs "
                      "FOR EACH ROW EXECUTE FUNCTION flaky()")
    repo = Repository(make_engine(postgres_url))
    try:
        repo.create_job("job_x", "upload", "o", None)
        assert _count(repo, jobs) == 1
    finally:
        repo.engine.dispose()


def test_requests_succeed_after_every_connection_is_killed(postgres_url: str, tmp_path
                                                           ) -> None:  # type: ignore[no-untyped-def]
    srv = Server(tmp_path / "data", IMGRESS_DATABASE_URL=postgres_url).start()
    name = postgres_url.rsplit("/", 1)[1]
    try:
        data = make_jpeg(200, 150, seed=8000)
        with srv.client() as c, psycopg.connect(postgres_url, autocommit=True) as admin:
            first = upload(c, ("a.jpg", data)).json()["items"][0]
            assert first["status"] == "created"
            for _ in range(3):
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                r = upload(c, ("a.jpg", data), ("b.jpg", make_jpeg(90, 60, seed=8001)))
                assert r.status_code == 200, r.text
                assert r.json()["items"][0]["image"]["id"] == first["image"]["id"]
            count = admin.execute("SELECT count(*) FROM images").fetchone()
            assert count == (2,)
    finally:
        srv.stop()
