"""Scale-out dispatch: the API server sends ids to Redis, `imgress worker` processes.

A worker killed with SIGKILL in the middle of a batch loses nothing: what it held is
handed out again once its processing lease runs out (and late acknowledgement lets the
broker redeliver its message as well)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BROKER, Server, make_jpeg, services_required, upload
from imgress.jobs.base import TASK_NAMES
from imgress.jobs.celery_dispatcher import QUEUES, celery_tasks, make_celery, resolve_queues

RABBITMQ = os.environ.get("IMGRESS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def rabbitmq() -> str:
    """RabbitMQ as the Celery broker; skip when it is away (fail on CI)."""
    from kombu import Connection

    try:
        with Connection(RABBITMQ, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        if services_required():
            raise
        pytest.skip(f"RabbitMQ not reachable at {RABBITMQ}: {exc}")
    return RABBITMQ


def start_worker(data_dir: Path, log: Path, *args: str, broker: str = BROKER, **env: str
                 ) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "imgress", "worker", "--data-dir", str(data_dir),
             "--concurrency", "2", *args],
            env={**os.environ, "IMGRESS_BROKER_URL": broker, **env},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(30)


def test_worker_processes_and_survives_sigkill(broker: str, tmp_path: Path) -> None:
    # A short processing lease: the server hands out again what a dead worker held.
    lease = {"IMGRESS_PROCESSING_LEASE_SECONDS": "3"}
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=broker, **lease).start()
    worker = start_worker(srv.data_dir, tmp_path / "worker1.log", **lease)
    try:
        with srv.client() as c:
            assert c.get("/readyz").json()["checks"]["queue"] == "ok"
            files = [(f"c{i}.jpg", make_jpeg(2400, 1800, seed=6000 + i)) for i in range(10)]
            ids = [i["image"]["id"] for i in upload(c, *files).json()["items"]]
            deadline = time.monotonic() + 60
            while not any(c.get(f"/v1/images/{i}").json()["status"] in ("processing", "ready")
                          for i in ids):
                assert time.monotonic() < deadline, (tmp_path / "worker1.log").read_text()
                time.sleep(0.05)
        stop(worker, signal.SIGKILL)  # mid-batch, no goodbye
        worker = start_worker(srv.data_dir, tmp_path / "worker2.log", **lease)
        records = srv.wait_finished(ids, timeout=60)
        assert [r["status"] for r in records] == ["ready"] * 10
    finally:
        stop(worker)
        srv.stop()


def test_worker_refuses_to_start_without_broker(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "imgress", "worker", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if k != "IMGRESS_BROKER_URL"})
    assert proc.returncode == 2 and "IMGRESS_BROKER_URL" in proc.stderr


def test_readyz_names_a_dead_broker(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL="redis://127.0.0.1:9/0").start()
    try:
        with srv.client() as c:
            r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["queue"].startswith("down")
    finally:
        srv.stop()


def test_worker_on_rabbitmq(rabbitmq: str, tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=rabbitmq).start()
    worker = start_worker(srv.data_dir, tmp_path / "worker.log",
                          "--queues", "process,orientation", broker=rabbitmq)
    try:
        with srv.client() as c:
            assert c.get("/readyz").json()["checks"]["queue"] == "ok"
            files = [(f"r{i}.jpg", make_jpeg(800, 600, seed=6100 + i)) for i in range(4)]
            ids = [i["image"]["id"] for i in upload(c, *files).json()["items"]]
        records = srv.wait_finished(ids, timeout=60)
        assert [r["status"] for r in records] == ["ready"] * 4, \
            (tmp_path / "worker.log").read_text()
    finally:
        stop(worker)
        srv.stop()


def test_every_celery_task_has_a_queue_and_a_route() -> None:
    assert set(celery_tasks()) == TASK_NAMES & QUEUES.keys()
    assert "process_image" in celery_tasks()
    routes = make_celery("redis://127.0.0.1:9/0").conf.task_routes
    assert all(routes[f"imgress.{name}"]["queue"] == QUEUES[name] for name in celery_tasks())
    assert resolve_queues(None) == sorted(QUEUES[n] for n in celery_tasks())
    assert resolve_queues("process, imgress.process") == ["imgress.process"] * 2
    with pytest.raises(ValueError, match="unknown queue"):
        resolve_queues("thumbnails")


def test_worker_refuses_an_unknown_queue(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "imgress", "worker", "--data-dir",
                           str(tmp_path), "--queues", "nope"], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "IMGRESS_BROKER_URL": "redis://127.0.0.1:9/0"})
    assert proc.returncode == 2 and "unknown queue" in proc.stderr
