"""Direct-upload commit: server-side time of one commit of N uploads, and end to end
files/s of the CLI with --direct vs --multipart, against a real `imgress serve`.

    .venv/bin/python bench/commit.py [--uploads 1000] [--runs 5] [--photos 500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyvips

KEY = "bench-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, data_dir: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgress", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir)],
            env={**os.environ, "IMGRESS_API_KEYS": KEY, "IMGRESS_LOG_LEVEL": "warning", **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def bench_commit(uploads: int, runs: int) -> list[tuple[str, str]]:
    """Reserve, put tiny distinct JPEGs, then time the commit (Server-Timing header)."""
    tiny = [pyvips.Image.black(8, 8).draw_rect([i % 256, (i // 256) % 256, 7], 0, 0, 4, 4,
                                               fill=True).jpegsave_buffer()
            for i in range(uploads * runs)]
    server_ms, wall_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        srv = Serve(Path(tmp) / "data", IMGRESS_WORKERS="1")
        try:
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"},
                              timeout=120) as c:
                for run in range(runs):
                    batch = tiny[run * uploads:(run + 1) * uploads]
                    slots = c.post("/v1/uploads", json={"files": [
                        {"filename": f"{i}.jpg", "size": len(b), "content_type": "image/jpeg"}
                        for i, b in enumerate(batch)]}).json()["uploads"]
                    for slot, data in zip(slots, batch, strict=True):
                        httpx.put(slot["url"], content=data, headers=slot["headers"])
                    started = time.perf_counter()
                    r = c.post("/v1/uploads/commit",
                               json={"upload_ids": [s["upload_id"] for s in slots]})
                    wall_ms.append((time.perf_counter() - started) * 1000)
                    server_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
                    assert r.status_code == 200
        finally:
            srv.stop()
    return [(f"commit of {uploads} uploads, server time (median of {runs})",
             f"{statistics.median(server_ms):.1f} ms"),
            (f"commit of {uploads} uploads, client wall time (median of {runs})",
             f"{statistics.median(wall_ms):.1f} ms")]


def make_photos(count: int, folder: Path) -> list[Path]:
    """Distinct 2-5 MB JPEGs cut from the real wallpapers the process bench fetched
    (a little grain keeps smooth artwork from compressing far below 2 MB)."""
    sources = sorted(p for p in (CACHE / "photos").rglob("*")
                     if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not sources:
        raise SystemExit("run bench/process.py first: it fetches the real photos")
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        src = pyvips.Image.new_from_file(str(sources[i % len(sources)]))
        if src.width < 3000 or src.height < 2000:
            src = src.resize(max(3000 / src.width, 2000 / src.height))
        w, h = 3000, 2000
        x, y = (i * 37) % (src.width - w + 1), (i * 53) % (src.height - h + 1)
        out = folder / f"photo{i:04}.jpg"
        grain = pyvips.Image.gaussnoise(w, h, sigma=6, mean=0)
        (src.crop(x, y, w, h)[:3] + grain).cast("uchar").jpegsave(str(out), Q=95)
        made.append(out)
    return made


def bench_cli(photos: list[Path]) -> list[tuple[str, str]]:
    rows = []
    size = sum(p.stat().st_size for p in photos) / 1e6
    for mode in ("--direct", "--multipart"):
        with tempfile.TemporaryDirectory() as tmp:
            srv = Serve(Path(tmp) / "data", IMGRESS_WORKERS="1")
            try:
                started = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "imgress", "upload", mode, "--json",
                     "--server", srv.url, str(photos[0].parent)],
                    env={**os.environ, "IMGRESS_KEY": KEY}, capture_output=True)
                elapsed = time.perf_counter() - started
            finally:
                srv.stop()
        assert proc.returncode == 0, proc.stderr[-500:]
        rows.append((f"CLI {mode}, {len(photos)} photos ({size:.0f} MB)",
                     f"{len(photos) / elapsed:.1f} files/s, {size / elapsed:.0f} MB/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--photos", type=int, default=500)
    args = parser.parse_args()
    rows = bench_commit(args.uploads, args.runs)
    if args.photos:
        folder = Path(tempfile.mkdtemp(prefix="imgress-photos-"))
        try:
            rows += bench_cli(make_photos(args.photos, folder))
        finally:
            shutil.rmtree(folder)
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
