"""Processing throughput in scale-out: 1 vs 2 Celery worker processes vs the in-process
pool, on PostgreSQL + Redis, against a real `imgress serve`.

Each mode gets a fresh database and an emptied Redis database; workers are started and
ready before the photos are uploaded (one multipart request). Throughput is that of the
backlog: the images still unfinished when the upload answers (all stored and queued),
divided by the time until the database says every image is ready. Each worker process runs one
task at a time with VIPS_CONCURRENCY=1, so N processes can use N cores; the in-process
pool gets as many threads as worker processes in the largest Celery mode.

    .venv/bin/python bench/workers.py [--photos 24] [--rounds 2]
        [--postgres postgresql://127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/9]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pyvips
import redis

from commit import KEY, Serve  # same folder: the real server, started the same way

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"


def photos(count: int) -> list[Path]:
    """Real photos from bench/.cache (bench/process.py fetches them), else generated
    12 MP JPEGs with structure and grain (about 4 MB each), cached for the next run."""
    real = sorted(p for p in (CACHE / "photos").rglob("*")
                  if p.suffix.lower() in (".jpg", ".jpeg") and p.stat().st_size > 1e6)
    if len(real) >= count:
        return real[:count]
    folder = CACHE / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        out = folder / f"gen{i:03}.jpg"
        if not out.exists():
            w, h = 4000, 3000
            xy = pyvips.Image.xyz(w, h)
            base = ((xy[0] * (1 + i % 5) + xy[1] * 2) % 256).bandjoin(
                [(xy[1] + i * 17) % 256, (xy[0] * 0.5 + xy[1] * 0.3) % 256])
            grain = pyvips.Image.gaussnoise(w, h, sigma=5, mean=0)
            (base + grain).cast("uchar").jpegsave(str(out), Q=90)
        made.append(out)
    return made


class Database:
    def __init__(self, admin_url: str):
        self.admin_url, self.name = admin_url, f"imgress_bench_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"{admin_url.rsplit('/', 1)[0]}/{self.name}"

    def finished(self) -> int:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT count(*) FROM images "
                               "WHERE status IN ('ready', 'failed')").fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their children."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    todo, ticks, seen = list(roots), 0, set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        ticks += stats[pid][1]
        todo += [child for child, (parent, _) in stats.items() if parent == pid]
    return ticks / os.sysconf("SC_CLK_TCK")


def start_worker(data_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "imgress", "worker", "--data-dir", str(data_dir),
             "--queues", "process,orientation", "--concurrency", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_mode(workers: int, threads: int, files: list[Path], args: argparse.Namespace
             ) -> tuple[float, float]:
    """Images per second for one mode (`workers` Celery processes, or 0: in-process),
    and the cores its processing processes got meanwhile (CPU seconds / wall seconds)."""
    db = Database(args.postgres)
    redis.Redis.from_url(args.redis).flushdb()
    env = {**os.environ, "IMGRESS_DATABASE_URL": db.url, "VIPS_CONCURRENCY": "1",
           "IMGRESS_LOG_LEVEL": "warning", "IMGRESS_API_KEYS": KEY,
           "IMGRESS_UPLOAD_SECRET": "bench-secret-0123456789"}
    if workers:
        env["IMGRESS_BROKER_URL"] = args.redis
    else:
        env["IMGRESS_WORKERS"] = str(threads)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        saved = dict(os.environ)
        os.environ.update(env)  # Serve passes its own environment on
        try:
            srv = Serve(data)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            logs = [Path(tmp) / f"worker{i}.log" for i in range(workers)]
            procs = [start_worker(data, env, log) for log in logs]
            deadline = time.monotonic() + 60
            while not all("ready" in log.read_text(errors="replace") for log in logs):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start: " + logs[0].read_text())
                time.sleep(0.2)
            handles = [f.open("rb") for f in files]
            r = httpx.post(f"{srv.url}/v1/images", timeout=600,
                           headers={"Authorization": f"Bearer {KEY}"},
                           files=[("files", (f.name, h, "image/jpeg"))
                                  for f, h in zip(files, handles, strict=True)])
            for h in handles:
                h.close()
            assert r.status_code == 200, r.text
            busy = [p.pid for p in procs] or [srv.proc.pid]
            started, backlog = time.perf_counter(), len(files) - db.finished()
            cpu = tree_cpu(busy)
            while db.finished() < len(files):
                if time.perf_counter() - started > 600:
                    raise RuntimeError("processing did not finish")
                time.sleep(0.05)
            wall = time.perf_counter() - started
            return backlog / wall, (tree_cpu(busy) - cpu) / wall
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            srv.stop()
            db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    files = photos(args.photos)
    size = sum(f.stat().st_size for f in files) / 1e6
    modes = {"Celery, 1 worker process": (1, 0), "Celery, 2 worker processes": (2, 0),
             "in-process pool, 2 threads": (0, 2)}
    rates: dict[str, list[float]] = {name: [] for name in modes}
    cores: dict[str, list[float]] = {name: [] for name in modes}
    load = []
    for _ in range(args.rounds):  # rounds interleaved: load from others hits every mode
        for name, (workers, threads) in modes.items():
            rate, used = run_mode(workers, threads, files, args)
            rates[name].append(rate)
            cores[name].append(used)
            load.append(os.getloadavg()[0])
    base = statistics.median(rates["Celery, 1 worker process"])
    base_cpu = base / statistics.median(cores["Celery, 1 worker process"])
    print(f"{len(files)} photos, {size:.0f} MB; median of {args.rounds} rounds; "
          f"{os.cpu_count()} cores; load average during the run "
          f"{min(load):.1f}-{max(load):.1f}\n")
    print("| mode | images/s | vs 1 worker process | cores it got | images per CPU-s "
          "(vs 1 worker) |\n|---|---|---|---|---|")
    for name, values in rates.items():
        rate, used = statistics.median(values), statistics.median(cores[name])
        print(f"| {name} | {rate:.2f} | {rate / base:.2f}x | {used:.2f} | "
              f"{rate / used:.2f} ({rate / used / base_cpu:.2f}x) |")


if __name__ == "__main__":
    main()
