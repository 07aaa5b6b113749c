"""Batch downloads end to end: a real origin on loopback, a real server, the zip."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import KEY, Server, make_jpeg, upload
from imgress import sse
from origin import Origin, payload


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Private addresses allowed (the origin is on loopback), short limits."""
    srv = Server(tmp_path_factory.mktemp("dl") / "data",
                 IMGRESS_DOWNLOAD_ALLOW_PRIVATE="true", IMGRESS_DOWNLOAD_ITEM_TIMEOUT="3",
                 IMGRESS_DOWNLOAD_MAX_ITEM_BYTES=str(2 * 1024**2),
                 IMGRESS_DOWNLOAD_MAX_ITEMS="50").start()
    yield srv
    srv.stop()


def events(client: httpx.Client, job_id: str) -> list[tuple[str, dict]]:
    """One stream, no reconnect: a stream cut before its last chunk is a bug here."""
    with client.stream("GET", f"/v1/downloads/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        return list(sse.parse(stream.iter_lines()))


def test_event_streams_end_whole(open_server: Server) -> None:
    """Streams of jobs still running used to be cut now and then (~5%) before their
    last chunk: the handler's own request.is_disconnected() raced EventSourceResponse's
    disconnect listener for `receive`. 40 fresh jobs, each streamed once."""
    with open_server.client() as c:
        image = upload(c, ("s.jpg", make_jpeg(64, 48, seed=7))).json()["items"][0]["image"]
        for _ in range(40):
            created = c.post("/v1/downloads", json={"items": [{"image_id": image["id"]}] * 5})
            seen = events(c, created.json()["id"])
            assert [e for e, _ in seen] == ["item"] * 5 + ["end"]


def run_job(client: httpx.Client, items: list[dict], **extra: object
            ) -> tuple[dict, list[tuple[str, dict]]]:
    created = client.post("/v1/downloads", json={"items": items, **extra})
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued"
    seen = events(client, created.json()["id"])
    return client.get(f"/v1/downloads/{created.json()['id']}").json(), seen


def test_download_urls_and_images_into_one_zip(open_server: Server, origin: Origin) -> None:
    o = origin.url
    with open_server.client() as c:
        stored = upload(c, ("holiday.jpg", make_jpeg(200, 150, seed=91))).json()["items"][0]
        items = [
            {"url": f"{o}/file/a.jpg?size=300000"},
            {"url": f"{o}/file/b?size=5000"},                      # no extension: gets .jpg
            {"url": f"{o}/file/c.png?size=7000"},                  # wrong extension: fixed
            {"url": f"{o}/file/d.jpg?size=100", "name": "same.jpg"},
            {"url": f"{o}/file/e.jpg?size=200", "name": "same.jpg"},   # made unique
            {"url": f"{o}/file/f.jpg?size=300", "name": "../../etc/\u202epasswd.jpg"},
            {"url": f"{o}/flaky/g.jpg?fail=2"},                    # 500 twice, then 200
            {"url": f"{o}/busy/h.jpg"},                            # 429 Retry-After, then 200
            {"url": f"{o}/redirect?to=/file/i.jpg%3Fsize%3D900"},  # one hop, checked again
            {"url": f"{o}/status/404"},
            {"url": f"{o}/drip"},                                   # 1 byte/s: times out
            {"url": f"{o}/endless"},                                # no end: byte cap
            {"url": f"{o}/big"},                                    # declares 1 TB: refused
            {"url": "file:///etc/passwd"},
            {"image_id": stored["image"]["id"]},
            {"image_id": "img_doesnotexist"},
        ]
        started = time.monotonic()
        job, seen = run_job(c, items, name="batch one")
        assert time.monotonic() - started < 30
        archive = c.get(job["archive_url"].split("?")[0])  # the API key authorizes too
    by_index = {i["index"]: i for i in job["items"]}
    assert job["status"] == "done" and job["total"] == len(items)
    assert [e for e, _ in seen].count("item") == len(items) and seen[-1][0] == "end"
    assert {d["index"] for e, d in seen if e == "item"} == set(range(len(items)))
    failed = {i: item["error"]["code"] for i, item in by_index.items()
              if item["status"] == "failed"}
    assert failed == {9: "http_404", 10: "timeout", 11: "too_large", 12: "too_large",
                      13: "bad_scheme", 15: "image_not_found"}
    assert job["done"] == 10 and job["failed"] == 6
    assert origin.hits["/flaky/g.jpg"] == 3 and origin.hits["/busy/h.jpg"] == 2

    assert archive.status_code == 200, archive.text
    assert archive.headers["content-type"] == "application/zip"
    assert int(archive.headers["content-length"]) == len(archive.content)
    assert "batch one.zip" in archive.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(archive.content))
    names = zf.namelist()
    assert names == ["a.jpg", "b.jpg", "c.jpg", "same.jpg", "same (2).jpg", "passwd.jpg",
                     "g.jpg", "h.jpg", "redirect.jpg", "holiday.jpg", "errors.txt"]
    assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    assert zf.read("a.jpg") == payload("a.jpg", 300000)
    assert zf.read("redirect.jpg") == payload("i.jpg", 900)
    assert zf.read("holiday.jpg") == make_jpeg(200, 150, seed=91)
    errors = zf.read("errors.txt").decode()
    assert "http_404" in errors and "img_doesnotexist" in errors and "/etc/passwd" in errors
    assert [by_index[i]["name"] for i in range(9)] == names[:9]


def test_archive_link_token(open_server: Server, origin: Origin) -> None:
    with open_server.client() as c:
        job, _ = run_job(c, [{"url": f"{origin.url}/jpeg/x", "name": "pic"}])
    url = open_server.base_url + job["archive_url"]
    anonymous = httpx.get(url)
    assert anonymous.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(anonymous.content)).read("pic.jpg") == origin.jpeg
    forged = httpx.get(url[:-3] + "AAA")
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "invalid_token"
    other = httpx.get(url.replace(job["id"], "dl_other"))
    assert other.status_code == 403
    assert httpx.get(url.split("?")[0]).status_code == 401


def test_image_deleted_after_the_job_is_listed_not_a_broken_zip(
        open_server: Server, origin: Origin) -> None:
    with open_server.client() as c:
        kept, gone = (upload(c, (f"{n}.jpg", make_jpeg(120, 90, seed=s))).json()["items"][0]
                      for n, s in (("kept", 301), ("gone", 302)))
        job, _ = run_job(c, [{"image_id": kept["image"]["id"]},
                             {"image_id": gone["image"]["id"]},
                             {"url": f"{origin.url}/jpeg/x", "name": "fetched"}])
        assert job["done"] == 3
        assert c.delete(f"/v1/images/{gone['image']['id']}").status_code == 204
        archive = c.get(job["archive_url"].split("?")[0])
        after = c.get(f"/v1/downloads/{job['id']}").json()
    # The job's own record agrees with the zip from then on.
    assert (after["done"], after["failed"]) == (2, 1), after
    assert [i["status"] for i in after["items"]] == ["done", "failed", "done"]
    assert after["items"][1]["error"]["code"] == "image_deleted"
    assert archive.status_code == 200
    assert int(archive.headers["content-length"]) == len(archive.content)
    zf = zipfile.ZipFile(io.BytesIO(archive.content))
    assert zf.testzip() is None
    assert zf.namelist() == ["kept.jpg", "fetched.jpg", "errors.txt"]
    assert zf.read("kept.jpg") == make_jpeg(120, 90, seed=301)
    assert "gone.jpg" in (errors := zf.read("errors.txt").decode()) and "image_deleted" in errors


def test_request_errors(open_server: Server, origin: Origin) -> None:
    with open_server.client() as c:
        cases = [
            ({"items": []}, 400, "empty_batch"),
            ({"items": [{"url": f"{origin.url}/x"}] * 51}, 413, "too_many_items"),
            ({"items": [{"url": "http://a/", "image_id": "img_x"}]}, 400, "bad_item"),
            ({"items": [{}]}, 400, "bad_item"),
            ({"items": [{"image_id": "img_x"}], "variant": "huge"}, 400, "unknown_variant"),
            ({"items": "nope"}, 400, "invalid_request"),
        ]
        for body, status, code in cases:
            r = c.post("/v1/downloads", json=body)
            assert r.status_code == status, (body, r.text)
            if code:
                assert r.json()["error"]["code"] == code
        assert c.get("/v1/downloads/dl_nope").status_code == 404
        running = c.post("/v1/downloads", json={"items": [{"url": f"{origin.url}/drip"}]}).json()
        early = c.get(f"/v1/downloads/{running['id']}/archive")
        assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
    with open_server.client(key="wrong-key-0123456789") as c:
        assert c.post("/v1/downloads", json={"items": [{"url": "http://a/"}]}).status_code == 401
        assert c.get(f"/v1/downloads/{running['id']}").status_code == 401


def test_refusals_on_default_settings(tmp_path: Path, origin: Origin) -> None:
    """Only the origin's own address:port is exempted; every hop is checked again."""
    srv = Server(tmp_path / "data",
                 IMGRESS_DOWNLOAD_ALLOW_ADDRESSES=f"127.0.0.1:{origin.port}").start()
    o, other = origin.url, "http://127.0.0.1:1"
    bad = ["http://127.0.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
           "http://2130706433/", "http://0177.0.0.1/", "http://169.254.169.254/",
           "file:///etc/passwd", "gopher://example.com/", "http://good@evil/", "http:///x",
           f"{o}/redirect?to={other}/a", f"{o}/redirect?to=http://169.254.169.254/",
           f"{o}/redirect?to=file:///etc/passwd"]
    try:
        with srv.client() as c:
            job, _ = run_job(c, [{"url": f"{o}/jpeg/ok.jpg?X-Amz-Signature=s3cr3t"}]
                             + [{"url": u} for u in bad])
            assert c.get("/v1/downloads/" + job["id"]).json()["done"] == 1
    finally:
        srv.stop()
    statuses = [(i["status"], (i["error"] or {}).get("code")) for i in job["items"]]
    assert statuses[0] == ("done", None)
    assert all(s == "failed" and code in ("address_refused", "bad_scheme", "bad_url")
               for s, code in statuses[1:]), statuses
    assert "s3cr3t" not in srv.log()  # logs name hosts, never full URLs


def test_job_survives_a_killed_server(tmp_path: Path, origin: Origin) -> None:
    """SIGKILL mid-job: on restart the job goes on, finished items are kept."""
    slow = Origin(latency=0.5)
    srv = Server(tmp_path / "data", IMGRESS_DOWNLOAD_ALLOW_PRIVATE="true",
                 IMGRESS_DOWNLOAD_CONCURRENCY="2").start()
    try:
        with srv.client() as c:
            items = [{"url": f"{slow.url}/file/{n}.jpg?size=1000"} for n in range(12)]
            job_id = c.post("/v1/downloads", json={"items": items}).json()["id"]
            deadline = time.monotonic() + 20
            while c.get(f"/v1/downloads/{job_id}").json()["done"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        srv.stop(sig=9)
        srv.start()
        with srv.client() as c:
            seen = events(c, job_id)
            job = c.get(f"/v1/downloads/{job_id}").json()
    finally:
        srv.stop()
        slow.close()
    assert job["status"] == "done" and job["done"] == 12, job
    assert seen[-1][0] == "end"
    assert sum(slow.hits.values()) < 12 + 4  # finished items were not fetched again


def test_cli_download(open_server: Server, origin: Origin, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# two files and a miss\n{origin.url}/jpeg/one photo.jpg\n\n"
                       f"{origin.url}/file/two.jpg?size=5000\n{origin.url}/status/404\n")
    out = tmp_path / "out.zip"
    env = {**open_server.env, "IMGRESS_URL": open_server.base_url, "IMGRESS_KEY": KEY}
    done = subprocess.run([sys.executable, "-m", "imgress", "download", "--from", str(listing),
                           "-o", str(out), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr  # one item failed
    assert "1 failed" in done.stderr and "http_404" in done.stderr
    zf = zipfile.ZipFile(out)
    assert zf.namelist() == ["photo.jpg", "two.jpg", "errors.txt"]
    assert zf.read("photo.jpg") == origin.jpeg
    bad = subprocess.run([sys.executable, "-m", "imgress", "download", "--image-id", "img_x",
                          "-o", str(tmp_path / "x.zip"), "--quiet", "--variant", "nope"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown_variant" in bad.stderr
    assert not (tmp_path / "x.zip").exists()


def test_download_runs_on_a_celery_worker(broker: str, tmp_path: Path, origin: Origin) -> None:
    """Scale-out: the job goes to `imgress.downloads`; a worker on that queue alone runs
    it, and the API server streams the zip from storage."""
    from test_celery import start_worker, stop

    env = {"IMGRESS_DOWNLOAD_ALLOW_PRIVATE": "true"}
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=broker, **env).start()
    worker = start_worker(srv.data_dir, tmp_path / "worker.log", "--queues", "downloads",
                          broker=broker, **env)
    try:
        with srv.client() as c:
            job, seen = run_job(c, [{"url": f"{origin.url}/file/w{n}.jpg?size=4000"}
                                    for n in range(5)])
            archive = c.get(job["archive_url"])
    finally:
        stop(worker)
        srv.stop()
    assert job["done"] == 5 and seen[-1][0] == "end", [i for i in job["items"] if i["error"]]
    assert sorted(zipfile.ZipFile(io.BytesIO(archive.content)).namelist()) == \
        [f"w{n}.jpg" for n in range(5)]
    assert "download_finished" in (tmp_path / "worker.log").read_text()


def test_expired_jobs_and_their_files_are_removed(tmp_path: Path, origin: Origin) -> None:
    from sqlalchemy import update

    from imgress.app import build_service
    from imgress.config import load_settings
    from imgress.db.migrate import upgrade
    from imgress.db.schema import downloads
    from imgress.download_jobs import Requested
    from imgress.jobs.base import TASK_NAMES

    settings = load_settings(data_dir=tmp_path / "data", download_allow_private=True)
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    parts = build_service(settings)
    parts.dispatcher.start({name: lambda _id: None for name in TASK_NAMES})
    try:
        svc = parts.downloads
        job = svc.create("owner", [Requested(url=f"{origin.url}/file/x.jpg?size=3000")])
        svc.run(job.id)  # as the worker would
        staged = settings.storage_root / "downloads" / job.id / "0"
        assert staged.read_bytes() == payload("x.jpg", 3000)
        assert svc.cleanup() == 0  # not expired yet: kept
        with svc.repo.engine.begin() as conn:
            conn.execute(update(downloads).values(expires_at=job.created_at))
        assert svc.cleanup() == 1
        assert not staged.exists() and svc.repo.get(job.id) is None
    finally:
        parts.dispatcher.stop()
