"""Batch download: imgress vs a sequential fetch vs the bandwidth-bound ideal, one run.

A local origin (its own process) serves N files of SIZE bytes with LATENCY seconds
before each answer, on loopback. Measured side by side:
  sequential  one file after another with one httpx client (what ops staff did by hand)
  ideal       every file at once (N connections), bodies discarded: the bandwidth bound
  imgress     POST /v1/downloads to a real `imgress serve`, until the `end` event
              (bodies staged in storage), then the zip streamed back in full
and the server's peak RSS while the job runs.

    .venv/bin/python bench/download.py [--files 100] [--size-mb 10] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from commit import KEY, Serve, free_port  # a sibling bench module


def start_origin(port: int, size: int, latency: float, tmp: Path) -> subprocess.Popen:
    """granian + a tiny ASGI app (download_origin.py): zero-copy sends of one file."""
    body = tmp / "origin.bin"
    body.write_bytes(bytes(range(256)) * (size // 256) + b"\0" * (size % 256))
    return subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--backlog", "1024", "--log-level", "warning",
         "download_origin:app"],
        cwd=Path(__file__).resolve().parent,
        env={**os.environ, "ORIGIN_FILE": str(body), "ORIGIN_LATENCY": str(latency)})


def tree_rss(proc: psutil.Process) -> int:
    """The server and its worker processes (granian runs workers as children)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def sequential(urls: list[str]) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for url in urls:
            with client.stream("GET", url) as r:
                for _ in r.iter_raw(1 << 20):
                    pass
    return time.perf_counter() - started


def ideal(urls: list[str]) -> float:
    async def main() -> float:
        limits = httpx.Limits(max_connections=len(urls))
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            async def one(url: str) -> None:
                async with client.stream("GET", url) as r:
                    async for _ in r.aiter_raw(1 << 20):
                        pass
            started = time.perf_counter()
            await asyncio.gather(*(one(u) for u in urls))
            return time.perf_counter() - started
    return asyncio.run(main())


def curl_bound(urls: list[str]) -> float | None:
    """The loopback bound with a C client: curl, every file at once."""
    if shutil.which("curl") is None:
        return None
    args = [a for u in urls for a in ("-o", os.devnull, u)]
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-Z", "--parallel-max", str(len(urls)), *args], check=True)
    return time.perf_counter() - started


def imgress(urls: list[str], env: dict[str, str]) -> tuple[float, float, float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Serve(Path(tmp) / "data", IMGRESS_DOWNLOAD_ALLOW_PRIVATE="true", **env)
        proc = psutil.Process(server.proc.pid)
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss(proc))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            with httpx.Client(base_url=server.url, timeout=None,
                              headers={"Authorization": f"Bearer {KEY}"}) as c:
                idle = tree_rss(proc)
                sampler.start()
                started = time.perf_counter()
                job = c.post("/v1/downloads", json={"items": [{"url": u} for u in urls]}).json()
                with c.stream("GET", f"/v1/downloads/{job['id']}/events") as events:
                    for line in events.iter_lines():
                        if line.startswith("event: end") or line.startswith("event:end"):
                            break
                fetched = time.perf_counter() - started
                done = c.get(f"/v1/downloads/{job['id']}").json()
                assert done["done"] == len(urls), json.dumps(done)[:500]
                started = time.perf_counter()
                size = 0
                with c.stream("GET", f"/v1/downloads/{job['id']}/archive") as r:
                    for chunk in r.iter_raw(1 << 20):
                        size += len(chunk)
                zipped = time.perf_counter() - started
                stop.set()
                return fetched, zipped, size / zipped / 1e6, peak[0], idle
        finally:
            stop.set()
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--size-mb", type=float, default=10)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    size = int(args.size_mb * 1024 * 1024)
    port = free_port()
    tmp = Path(tempfile.mkdtemp())
    origin = start_origin(port, size, args.latency, tmp)
    urls = [f"http://127.0.0.1:{port}/f/{n}.bin" for n in range(args.files)]
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/warm", timeout=5)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        env = {"IMGRESS_DOWNLOAD_CONCURRENCY": str(args.concurrency),
               "IMGRESS_DOWNLOAD_PER_HOST": str(args.concurrency)}
        t_ideal = ideal(urls)
        t_curl = curl_bound(urls)
        t_seq = sequential(urls)
        t_img, t_zip, zip_mbs, peak, idle = imgress(urls, env)
    finally:
        origin.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    total_mb = args.files * size / 1e6
    print(f"\n{args.files} files x {args.size_mb:g} MB, {args.latency * 1000:.0f} ms latency "
          f"per request, loopback; imgress concurrency {args.concurrency} (per host too)\n")
    print(f"{'fetch':<36}{'seconds':>9}{'MB/s':>9}{'vs imgress':>12}")
    rows = [("sequential (one httpx client)", t_seq),
            (f"ideal, httpx ({args.files} connections)", t_ideal),
            ("imgress job (staged to storage)", t_img)]
    if t_curl:
        rows.insert(2, (f"ideal, curl -Z ({args.files} at once)", t_curl))
    for name, t in rows:
        print(f"{name:<36}{t:>9.2f}{total_mb / t:>9.0f}{t / t_img:>11.2f}x")
    print(f"\nimgress vs sequential: {t_seq / t_img:.1f}x faster (goal >= 20x)")
    print(f"imgress vs ideal:      {t_ideal / t_img:.2f}x of the httpx bound (goal >= 0.8x)")
    if t_curl:
        print(f"                       {t_curl / t_img:.2f}x of the curl bound "
              f"(sequential is {t_seq / t_curl:.1f}x slower than it)")
    print(f"zip streamed back:     {t_zip:.2f} s ({zip_mbs:.0f} MB/s)")
    print(f"server RSS (all processes): {idle / 2**20:.0f} MiB idle, "
          f"{peak / 2**20:.0f} MiB peak during the job and the zip")


if __name__ == "__main__":
    main()
