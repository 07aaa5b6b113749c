"""Observability end to end: metrics after real traffic, logs that follow the work and
keep no secrets, readiness that names what is down, metrics summed over processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BROKER, KEY, Server, free_port, make_jpeg, upload
from imgress.logs import REDACTED, redact_secrets
from origin import Origin

OWN_BROKER = BROKER.rsplit("/", 1)[0] + "/15"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(srv: Server) -> Samples:
    """Every sample of /metrics, keyed by (sample name, labels): parsed, not grepped."""
    r = httpx.get(f"{srv.base_url}/metrics", timeout=10)
    assert r.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def log_lines(srv: Server) -> list[dict]:
    out = []
    for line in srv.log().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Downloads from loopback allowed (the origin), a short item timeout."""
    srv = Server(tmp_path_factory.mktemp("obs") / "data",
                 IMGRESS_DOWNLOAD_ALLOW_PRIVATE="true", IMGRESS_DOWNLOAD_ITEM_TIMEOUT="3",
                 IMGRESS_DOWNLOAD_RETRIES="0").start()
    yield srv
    srv.stop()


def wait_download(c: httpx.Client, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/v1/downloads/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_upload_metrics_follow_real_traffic(open_server: Server) -> None:
    before = scrape(open_server)
    a, b = make_jpeg(80, 60, seed=9001), make_jpeg(80, 60, seed=9002)
    with open_server.client() as c:
        r = upload(c, ("a.jpg", a), ("b.jpg", b), ("again.jpg", a), ("x.jpg", b"not a picture"))
        assert [i["status"] for i in r.json()["items"]] == \
            ["created", "created", "duplicate", "rejected"]
        ids = [i["image"]["id"] for i in r.json()["items"][:2]]
        open_server.wait_finished(ids)
        c.get("/no/such/thing")
        c.get("/neither/this?token=abc")
    after = scrape(open_server)
    assert delta(before, after, "imgress_upload_files_total", outcome="created", reason="") == 2
    assert delta(before, after, "imgress_upload_files_total", outcome="duplicate",
                 reason="") == 1
    assert delta(before, after, "imgress_upload_files_total", outcome="rejected",
                 reason="unsupported_type") == 1
    assert delta(before, after, "imgress_upload_bytes_total", outcome="created") == \
        len(a) + len(b)
    assert delta(before, after, "imgress_dedup_hits_total") == 1
    assert delta(before, after, "imgress_upload_request_seconds_count") == 1
    assert delta(before, after, "imgress_processed_total", result="ready", code="") == 2
    for step in ("load", "variants"):
        assert delta(before, after, "imgress_process_step_seconds_count", step=step) == 2
    # Routes by template; unknown paths collapse into one value.
    assert delta(before, after, "imgress_http_requests_total", method="GET",
                 route="/v1/images/{image_id}", status_class="2xx") >= 2
    assert delta(before, after, "imgress_http_requests_total", method="GET",
                 route="unmatched", status_class="4xx") == 2
    routes = {dict(labels).get("route") for name, labels in after
              if name == "imgress_http_requests_total"}
    assert not any(r and ("img_" in r or "no/such" in r) for r in routes), routes
    # The backlog, from the database: nothing left once processing is done.
    assert value(after, "imgress_images", status="pending") == 0
    assert value(after, "imgress_images", status="processing") == 0
    assert value(after, "imgress_oldest_pending_seconds") == 0


def test_orientation_and_rate_limit_metrics(open_server: Server) -> None:
    before = scrape(open_server)
    with open_server.client() as c:
        r = c.post("/v1/orientation",
                   files={"file": ("p.jpg", make_jpeg(96, 64, seed=77), "image/jpeg")})
        assert r.status_code == 200, r.text
    after = scrape(open_server)
    detections = sum(v - value(before, n, **dict(lb)) for (n, lb), v in after.items()
                     if n == "imgress_orientation_detections_total")
    assert detections == 1
    assert delta(before, after, "imgress_orientation_inference_seconds_count") == 1
    labels = [dict(lb) for (n, lb), v in after.items()
              if n == "imgress_orientation_detections_total" and v]
    assert all(lb["band"] in ("low", "medium", "high", "none") for lb in labels)


def test_download_metrics_and_request_id(open_server: Server, origin: Origin) -> None:
    before = scrape(open_server)
    with open_server.client() as c:
        items = [{"url": f"{origin.url}/file/one.bin?size=5000"},
                 {"url": f"{origin.url}/file/two.bin?size=3000"},
                 {"url": f"{origin.url}/nothing-here"},
                 {"url": "ftp://example.com/x.jpg"}]
        r = c.post("/v1/downloads", json={"items": items},
                   headers={"X-Request-ID": "req-obs-download"})
        assert r.status_code == 202, r.text
        job = wait_download(c, r.json()["id"])
        assert job["status"] != "running"
    after = scrape(open_server)
    assert delta(before, after, "imgress_download_jobs_total", event="created") == 1
    assert delta(before, after, "imgress_download_jobs_total", event="finished") == 1
    assert delta(before, after, "imgress_download_items_total", result="done", reason="") == 2
    assert delta(before, after, "imgress_download_items_total", result="failed",
                 reason="bad_scheme") == 1
    failed = sum(v - value(before, n, **dict(lb)) for (n, lb), v in after.items()
                 if n == "imgress_download_items_total" and dict(lb)["result"] == "failed")
    assert failed == 2
    assert delta(before, after, "imgress_download_bytes_total") == 8000
    assert delta(before, after, "imgress_download_fetch_seconds_count", result="done") == 2
    lines = [x for x in log_lines(open_server) if x.get("event") == "download_item"
             and x.get("download_id") == r.json()["id"]]
    assert len(lines) == 3  # one per item the worker ran (the refused one: at creation)
    assert all(x["request_id"] == "req-obs-download" for x in lines)


def test_ssrf_refusal_is_counted(server: Server) -> None:
    """A server without IMGRESS_DOWNLOAD_ALLOW_PRIVATE: the metadata address is refused."""
    before = scrape(server)
    with server.client() as c:
        r = c.post("/v1/downloads",
                   json={"items": [{"url": "http://169.254.169.254/latest/meta-data/"}]})
        assert r.status_code == 202, r.text
        job = wait_download(c, r.json()["id"])
    assert job["items"][0]["error"]["code"] == "address_refused", job
    after = scrape(server)
    assert delta(before, after, "imgress_download_items_total", result="failed",
                 reason="address_refused") == 1


def test_background_log_line_carries_the_request_id(open_server: Server) -> None:
    with open_server.client() as c:
        r = upload(c, ("rid.jpg", make_jpeg(70, 50, seed=9100)),
                   headers={"X-Request-ID": "req-obs-upload-1"})
        image_id = r.json()["items"][0]["image"]["id"]
        open_server.wait_finished([image_id])
    lines = log_lines(open_server)
    ready = [x for x in lines if x.get("image_id") == image_id and x["event"] == "image_ready"]
    assert ready and ready[0]["request_id"] == "req-obs-upload-1"
    access = [x for x in lines if x.get("event") == "request"
              and x.get("request_id") == "req-obs-upload-1"]
    assert len(access) == 1
    assert access[0]["route"] == "/v1/images" and access[0]["status"] == 200
    assert {"method", "ms"} <= access[0].keys()


def test_no_secrets_in_the_log(open_server: Server, origin: Origin) -> None:
    data = make_jpeg(64, 64, seed=9200)
    signed = (f"{origin.url}/file/s.bin?size=10&X-Amz-Credential=credsecret77"
              f"&X-Amz-Signature=sigsecret77")
    with_user = origin.url.replace("http://", "http://someone:pwsecret77@") + "/file/u.bin"
    with open_server.client() as c:
        r = c.post("/v1/downloads", json={"items": [{"url": signed}, {"url": with_user}]})
        assert r.status_code == 202, r.text
        wait_download(c, r.json()["id"])
        slots = c.post("/v1/uploads", json={"files": [
            {"filename": "t.jpg", "size": len(data), "content_type": "image/jpeg"}]}
        ).json()["uploads"]
        token = slots[0]["url"].split("token=")[1]
        assert httpx.put(slots[0]["url"], content=data,
                         headers={"Content-Type": "image/jpeg"}).status_code < 300
        # A replayed token (refused) and a forged one: the refusals are logged too.
        httpx.put(slots[0]["url"], content=data, headers={"Content-Type": "image/jpeg"})
        httpx.put(slots[0]["url"].replace("token=", "token=zz"), content=data,
                  headers={"Content-Type": "image/jpeg"})
        c.post("/v1/uploads/commit", json={"upload_ids": [slots[0]["upload_id"]]})
        dl = c.post("/v1/downloads", json={"items": [{"image_id": "img_nope"}]}).json()
        job = wait_download(c, dl["id"])
        archive_token = job["archive_url"].split("token=")[1] if job.get("archive_url") \
            else None
        if job.get("archive_url"):
            c.get(job["archive_url"])
    httpx.get(f"{open_server.base_url}/v1/images",
              headers={"Authorization": "Bearer not-the-key-but-secret-0123"})
    log = open_server.log()
    for secret in filter(None, (token, archive_token, KEY, "not-the-key-but-secret-0123",
                                "credsecret77", "sigsecret77", "pwsecret77")):
        assert secret not in log


def test_redactor_scrubs_every_kind_of_secret() -> None:
    event = {
        "event": "fetch failed for https://bucket.s3.example/k?X-Amz-Algorithm=AWS4"
                 "&X-Amz-Credential=AKIAXX%2F20260101&X-Amz-Signature=deadbeefcafe",
        "url": "http://user:hunter2@example.com/a?token=tok123&size=4",
        "api_key": "igk_abcdef", "headers": {"Authorization": "Bearer igk_abcdef"},
        "detail": ["see /v1/uploads/upl_1?token=tok456"], "storage_key": "originals/ab/cd",
        "password": "p4ss", "upload_secret": "s3cret",
    }
    out = json.dumps(redact_secrets(None, "info", dict(event)))
    for secret in ("deadbeefcafe", "AKIAXX", "hunter2", "tok123", "tok456", "igk_abcdef",
                   "p4ss", "s3cret"):
        assert secret not in out
    assert REDACTED in out and "originals/ab/cd" in out and "size=4" in out


def test_configured_logging_redacts_events_and_tracebacks() -> None:
    """The real set-up (logs.configure) in a fresh process, provoked with secrets in
    fields, in messages and in an exception's traceback."""
    code = (
        "import structlog\n"
        "from imgress import logs\n"
        "logs.configure('info', 'json')\n"
        "log = structlog.get_logger('t')\n"
        "log.info('put', token='tok-aaa', url='https://x/u?token=tok-bbb&n=1',\n"
        "         authorization='Bearer key-ccc', api_key='igk_ddd')\n"
        "try:\n"
        "    raise ValueError('GET https://b.s3/k?X-Amz-Signature=sig-eee failed')\n"
        "except ValueError:\n"
        "    log.exception('crashed', upload_secret='sec-fff')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stderr
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["event"] for x in lines] == ["put", "crashed"]
    assert "ValueError" in lines[1]["exception"] and "n=1" in lines[0]["url"]
    for secret in ("tok-aaa", "tok-bbb", "key-ccc", "igk_ddd", "sig-eee", "sec-fff"):
        assert secret not in out


def test_readiness_names_a_missing_database_and_recovers(fresh_server: Server) -> None:
    srv = fresh_server.start()
    db = srv.data_dir / "imgress.db"
    with srv.client() as c:
        assert c.get("/readyz").status_code == 200
        db.rename(db.with_suffix(".away"))
        try:
            time.sleep(1.1)  # past the cached answer
            r = c.get("/readyz")
            assert r.status_code == 503, r.text
            assert r.json()["failing"] == ["database"], r.text
            assert r.json()["checks"]["database"].startswith("down")
        finally:
            db.with_suffix(".away").rename(db)
        time.sleep(1.1)
        assert c.get("/readyz").status_code == 200


def test_readiness_names_a_dead_broker_quickly(tmp_path: Path) -> None:
    dead = free_port()
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=f"redis://127.0.0.1:{dead}/15").start()
    try:
        with srv.client() as c:
            started = time.perf_counter()
            r = c.get("/readyz")
            first = time.perf_counter() - started
            assert r.status_code == 503
            assert r.json()["failing"] == ["queue"], r.text
            started = time.perf_counter()
            burst = [c.get("/readyz").status_code for _ in range(20)]
            per_probe = (time.perf_counter() - started) / 20
        assert set(burst) == {503}
        assert first < 2.5, first  # each check gets about a second
        assert per_probe < 0.2, per_probe  # cached: a burst costs one round of checks
    finally:
        srv.stop()


def test_readiness_and_backlog_with_a_live_broker(tmp_path: Path) -> None:
    from conftest import empty_redis

    url = empty_redis(OWN_BROKER)
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=url).start()
    try:
        with srv.client() as c:
            r = c.get("/readyz")
            assert r.status_code == 200 and r.json()["checks"]["queue"] == "ok", r.text
            # No worker runs: what is uploaded waits, and the backlog shows it.
            upload(c, ("q1.jpg", make_jpeg(64, 48, seed=9500)),
                   ("q2.jpg", make_jpeg(64, 48, seed=9501)))
        time.sleep(1.5)
        samples = scrape(srv)
        assert value(samples, "imgress_images", status="pending") == 2
        assert 1.0 <= value(samples, "imgress_oldest_pending_seconds") < 60
    finally:
        srv.stop()


def test_two_processes_sum_their_counters(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data").start("--processes", "2")
    try:
        requests, before = 60, scrape(srv)
        for _ in range(requests):  # a new connection each: spread over both processes
            assert httpx.get(f"{srv.base_url}/healthz", timeout=30).status_code == 200
        folder = srv.data_dir / "run" / "prometheus"
        pids = {p.stem.rsplit("_", 1)[-1] for p in folder.glob("counter_*.db")}
        assert len(pids) == 2, sorted(os.listdir(folder))
        # Whichever process answers the scrape, it reports both processes' requests.
        for _ in range(4):
            assert delta(before, scrape(srv), "imgress_http_requests_total", method="GET",
                         route="/healthz", status_class="2xx") == requests
    finally:
        srv.stop()


def test_celery_worker_serves_its_metrics(tmp_path: Path) -> None:
    from conftest import empty_redis
    from test_celery import start_worker, stop

    broker = empty_redis(OWN_BROKER)  # a database of its own: other suites use theirs
    port = free_port()
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=broker).start()
    worker = start_worker(srv.data_dir, tmp_path / "worker.log", broker=broker,
                          IMGRESS_METRICS_PORT=str(port))
    try:
        with srv.client() as c:
            r = upload(c, ("w.jpg", make_jpeg(90, 60, seed=9300)),
                       headers={"X-Request-ID": "req-obs-celery"})
            srv.wait_finished([r.json()["items"][0]["image"]["id"]])
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        samples = {(s.name, frozenset(s.labels.items())): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert value(samples, "imgress_processed_total", result="ready", code="") == 1
        assert value(samples, "imgress_process_wait_seconds_count") == 1
        worker_log = (tmp_path / "worker.log").read_text()
        assert '"request_id": "req-obs-celery"' in worker_log
    finally:
        stop(worker)
        srv.stop()


def test_dashboard_uses_only_metrics_that_exist() -> None:
    import re

    from prometheus_client import REGISTRY

    import imgress.metrics  # noqa: F401  (registers the metrics)

    known = {f.name for f in REGISTRY.collect()} | {"imgress_images",
                                                    "imgress_oldest_pending_seconds"}
    board = (Path(__file__).parents[1] / "deploy" / "grafana" / "imgress.json").read_text()
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m)
            for m in re.findall(r"imgress_[a-z_]+", board)} - {"imgress"}
    assert used and used <= known, used - known


def test_readiness_gives_a_black_holed_broker_a_second(tmp_path: Path) -> None:
    """A broker that accepts connections and never answers: the probe still answers
    in about a second, and the hung check does not hold up the server's exit."""
    import socket
    import threading

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    held: list[object] = []
    threading.Thread(target=lambda: [held.append(hole.accept()) for _ in iter(int, 1)],
                     daemon=True).start()
    srv = Server(tmp_path / "data",
                 IMGRESS_BROKER_URL=f"redis://127.0.0.1:{hole.getsockname()[1]}/15").start()
    try:
        started = time.perf_counter()
        r = httpx.get(f"{srv.base_url}/readyz", timeout=10)
        took = time.perf_counter() - started
        assert r.status_code == 503 and r.json()["failing"] == ["queue"], r.text
        assert "no answer" in r.json()["checks"]["queue"]
        assert took < 2.0, took
    finally:
        started = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - started < 10
        hole.close()


def test_s3_readiness_probe_is_short(moto_s3: str, s3_bucket: str) -> None:
    from imgress.storage.s3 import S3Storage

    S3Storage(s3_bucket, endpoint_url=moto_s3).probe()
    dead = S3Storage(s3_bucket, endpoint_url=f"http://127.0.0.1:{free_port()}")
    started = time.perf_counter()
    with pytest.raises(Exception):  # noqa: B017  (botocore's connection error)
        dead.probe()
    assert time.perf_counter() - started < 1.5


def test_backlog_gauges_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_DATABASE_URL=postgres_url).start()
    try:
        with srv.client() as c:
            r = upload(c, ("pg.jpg", make_jpeg(64, 48, seed=9400)))
            srv.wait_finished([r.json()["items"][0]["image"]["id"]])
        samples = scrape(srv)
        assert ("imgress_images", frozenset({("status", "pending")})) in samples
        assert value(samples, "imgress_images", status="pending") == 0
        assert value(samples, "imgress_oldest_pending_seconds") == 0
    finally:
        srv.stop()
