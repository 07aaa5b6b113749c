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

from conftest import BROKER, Server, make_jpeg, upload


def start_worker(data_dir: Path, log: Path, **env: str) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "imgress", "worker", "--data-dir", str(data_dir),
             "--concurrency", "2"],
            env={**os.environ, "IMGRESS_BROKER_URL": BROKER, **env},
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
