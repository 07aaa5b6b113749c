"""Upload ingest MB/s: imgress vs a raw ASGI sink (and nginx, if installed), one run.

The same curl multipart POSTs go to every receiver over loopback: one 1 GiB file, then
200 x 2 MiB files in one request; each file a tiny valid JPEG padded with random bytes.
Usage: .venv/bin/python bench/ingest.py [--runs 3] [--no-nginx]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyvips

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API_KEY = "bench-ingest-key-0123456789"
MIB = 1024 * 1024
NGINX_CONF = """worker_processes 1; daemon off; pid {d}/nginx.pid; {user}
events {{ worker_connections 64; }}
http {{ access_log off; client_max_body_size 0; client_body_in_file_only on;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://127.0.0.1:{back};
    proxy_pass_request_body off; proxy_set_header Content-Length ""; }} }}
  server {{ listen 127.0.0.1:{back}; location / {{ return 200 "ok\\n"; }} }} }}
"""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    """One server under test: its process, URL and the folder its bodies land in."""

    name: str
    cmd: list[str]
    url: str
    body_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    rates: dict[str, list[float]] = field(default_factory=dict)  # per case: MB/s per run
    cpu: dict[str, list[float]] = field(default_factory=dict)  # server CPU s per run
    rss: dict[str, int] = field(default_factory=dict)  # peak over runs
    responses: dict[str, str] = field(default_factory=dict)
    idle_rss: int = 0

    def start(self, log: Path) -> None:
        """Launch and wait (up to a minute) until GET /healthz answers 2xx."""
        self.body_dir.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=out, stderr=out,
                                         env={**os.environ, **self.env})
        health = self.url.replace("/v1/images", "/healthz")
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2):
                settle(self.proc.pid)
                self.idle_rss = sum(p.memory_info().rss for p in tree(self.proc.pid))
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Terminate the server (and its worker processes) started by start()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def measure(self, case: str, files: list[Path], response: Path) -> None:
        """One upload from a clean, synced state: MB/s, server CPU, peak RSS, response."""
        assert self.proc is not None
        for leftover in [p for p in self.body_dir.glob("*") if p.is_file()]:
            leftover.unlink()
        os.sync()
        poll, cpu0 = PeakRss(self.proc.pid), cpu(self.proc.pid)
        seconds, size, self.responses[case] = curl(self.url, files, response)
        self.cpu.setdefault(case, []).append(cpu(self.proc.pid) - cpu0)
        self.rss[case] = max(self.rss.get(case, 0), poll.stop())
        self.rates.setdefault(case, []).append(size / seconds / 1e6)
        settle(self.proc.pid)


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


class PeakRss(threading.Thread):
    """Polls the summed RSS of a process tree every 50 ms until stop() returns the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()
        self.start()

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, sum(p.memory_info().rss for p in tree(self.pid)))

    def run(self) -> None:
        self.sample()
        while not self._done.wait(0.05):
            self.sample()

    def stop(self) -> int:
        self._done.set()
        self.join()
        self.sample()
        return self.peak


def cpu(pid: int) -> float:
    """User + system CPU seconds of a process tree so far."""
    return sum(sum(p.cpu_times()[:2]) for p in tree(pid))


def settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the server tree is idle (background variant jobs done)."""
    last, deadline = cpu(pid), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        last, before = cpu(pid), last
        if last - before < 0.03:
            return


def payloads(folder: Path, count: int, mib: int) -> list[Path]:
    """Files of a valid 64x64 JPEG, then random bytes, ending in FF D9 (a complete JPEG)."""
    paths = [folder / f"{count}x{mib}-{i:03d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        head = pyvips.Image.black(64, 64).add(i % 200).cast("uchar").write_to_buffer(".jpg")
        with path.open("wb") as out:
            out.write(head)
            for left in range(mib * MIB - len(head) - 2, 0, -16 * MIB):
                out.write(os.urandom(min(left, 16 * MIB)))
            out.write(b"\xff\xd9")
    return paths


def retag(paths: list[Path]) -> None:
    """New random bytes right after each JPEG so no run is a duplicate of another."""
    for path in paths:
        with path.open("r+b") as f:
            os.pwrite(f.fileno(), os.urandom(16), 4096)


def curl(url: str, files: list[Path], out: Path) -> tuple[float, int, str]:
    """One multipart POST; returns (seconds, bytes uploaded, short response summary)."""
    cmd = ["curl", "-sS", "-o", str(out), "-w", "%{time_total} %{size_upload} %{http_code}",
           "-H", "Expect:", "-H", f"Authorization: Bearer {API_KEY}"]
    for path in files:
        cmd += ["-F", f"files=@{path};type=image/jpeg"]
    done = subprocess.run([*cmd, url], check=True, capture_output=True, text=True)
    seconds, size, code = done.stdout.split()
    body: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        body = json.loads(out.read_text())
    counts = Counter(item.get("status") for item in body.get("items", []))
    summary = [code, *(f"{n} {status}" for status, n in sorted(counts.items()))]
    if "error" in body:
        summary.append(str(body["error"].get("code")))
    return float(seconds), int(size), ", ".join(summary)


def receivers(tmp: Path, use_nginx: bool) -> tuple[list[Receiver], str]:
    """imgress, the raw ASGI sink (plain and durable), and nginx when it is installed."""
    data, sink = tmp / "imgress-data", tmp / "sink"
    granian = [str(BIN / "granian"), "--interface", "asgi", "--workers", "1", "--no-ws",
               "--log-level", "warning", "--working-dir", str(ROOT), "bench.reference_sink:app"]
    specs = [
        ("imgress `POST /v1/images`",
         [str(BIN / "imgress"), "serve", "--data-dir", str(data)], data / "storage" / ".spool",
         {"IMGRESS_API_KEYS": API_KEY, "IMGRESS_MAX_PART_BYTES": str(2 * 1024**3)}),
        ("raw ASGI sink", granian, sink, {"BENCH_SINK_DIR": str(sink)}),
        ("raw ASGI sink + SHA-256 + fsync", granian, sink.with_name("durable"),
         {"BENCH_SINK_DIR": str(sink.with_name("durable")), "BENCH_SINK_DURABLE": "1"}),
    ]  # PYTHONDONTWRITEBYTECODE: no bench/__pycache__ from the sink's import
    out = []
    for name, cmd, body_dir, env in specs:
        port = free_port()
        out.append(Receiver(name, [*cmd, "--port", str(port)], f"http://127.0.0.1:{port}"
                            "/v1/images", body_dir, {**env, "PYTHONDONTWRITEBYTECODE": "1"}))
    nginx = shutil.which("nginx")
    if not use_nginx or nginx is None:
        return out, ("nginx skipped (--no-nginx)." if nginx else
                     "nginx is not installed (apt-get install nginx-light): row skipped.")
    d, port, back = tmp / "nginx", free_port(), free_port()
    for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    user = "user root root;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, user=user, port=port, back=back))
    cmd = [nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    out.append(Receiver("nginx", cmd, f"http://127.0.0.1:{port}/v1/images", d / "body"))
    return out, ("nginx: `client_body_in_file_only on`, then `proxy_pass` with "
                 "`proxy_pass_request_body off` to a `return 200`.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the single file")
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-mib", type=int, default=2)
    parser.add_argument("--no-nginx", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imgress-bench-ingest-", dir="/tmp"))
    servers: list[Receiver] = []
    try:
        cases = {f"1 x {args.big_mib} MiB": payloads(tmp, 1, args.big_mib),
                 f"{args.small_count} x {args.small_mib} MiB":
                 payloads(tmp, args.small_count, args.small_mib)}
        servers, note = receivers(tmp, not args.no_nginx)
        for i, recv in enumerate(servers):
            recv.start(tmp / f"server-{i}.log")
        for case, files in cases.items():
            for run in range(args.runs):  # a new order each run: no receiver always first
                retag(files)
                for recv in servers[run % len(servers):] + servers[:run % len(servers)]:
                    recv.measure(case, files, tmp / "response.json")
        print(table(servers, cases))
        print(f"\nMB/s: 10^6 bytes of multipart body per second of curl `time_total`, median "
              f"of {args.runs}. Peak RSS (polled every 50 ms) and CPU (user+system, median) "
              "are the server's whole process tree. All on granian (1 worker) but nginx. The "
              "raw sink writes the body to a file; the durable one also hashes it and fsyncs "
              "once; imgress (FastAPI) parses multipart, hashes and fsyncs each part, links it "
              f"and fsyncs its folder, then inserts the rows. {note}")
    finally:
        for recv in servers:
            recv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def table(servers: list[Receiver], cases: dict[str, list[Path]]) -> str:
    """The markdown table: one row per case and receiver, ratio to the raw ASGI sink."""
    lines = ["| case | receiver | MB/s (median) | runs | vs raw sink | vs durable sink "
             "| server CPU s | peak RSS (idle) | response |", "|---" * 9 + "|"]
    for case in cases:
        ref, durable = (statistics.median(servers[i].rates[case]) for i in (1, 2))
        for recv in servers:
            med = statistics.median(recv.rates[case])
            each = " / ".join(f"{r:.0f}" for r in recv.rates[case])
            lines.append(f"| {case} | {recv.name} | {med:.0f} | {each} | {med / ref:.2f} | "
                         f"{med / durable:.2f} | {statistics.median(recv.cpu[case]):.2f} | "
                         f"{recv.rss[case] / MIB:.0f} MiB ({recv.idle_rss / MIB:.0f}) | "
                         f"{recv.responses[case]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
