"""What an operator sees: a real server, a few hundred uploads, /metrics every 0.5 s.

Starts `imgress serve` on a temporary data dir, uploads distinct photo-like JPEGs in
bursts (crops of bench/.cache photos when present, else generated with pyvips),
scrapes /metrics every 0.5 s and plots ingest rate, backlog (from the database) and
processing p95 per step (over a sliding 5 s window, as histogram_quantile would)
into docs/metrics.png.
Usage: .venv/bin/python bench/metrics_plot.py [--files 300] [--batch 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pyvips
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-metrics-key-0123456789"
STEPS = ("load", "base", "detect", "variants")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_images(count: int, folder: Path) -> list[Path]:
    """Distinct JPEGs (different crops re-encoded) about 1600 x 1200, photo-like."""
    photos = sorted((ROOT / "bench" / ".cache").rglob("*.jpg"))
    out = []
    for n in range(count):
        if photos:
            src = pyvips.Image.new_from_file(str(photos[n % len(photos)]))
            src = src.thumbnail_image(1800, height=1800)
            w, h = min(1600, src.width - 8), min(1200, src.height - 8)
            img = src.crop(n % 8, (n // 8) % 8, w, h)
        else:
            base = pyvips.Image.xyz(1600, 1200)
            img = ((base[0] * (3 + n % 5) + base[1] * 2 + n * 7) % 256).cast("uchar")
            img = img.bandjoin([((base[1] + n) % 256).cast("uchar"),
                                pyvips.Image.gaussnoise(1600, 1200).cast("uchar")])
        path = folder / f"p{n:04d}.jpg"
        img.write_to_file(str(path), Q=85)
        out.append(path)
    return out


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(
                count - prev_count, 1e-9)
        prev_bound, prev_count = bound, count
    return prev_bound


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.4, help="seconds between bursts")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "metrics.png")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imgress-metrics-"))
    print(f"making {args.files} images …", file=sys.stderr)
    images = make_images(args.files, tmp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IMGRESS_API_KEYS": KEY, "IMGRESS_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "imgress", "serve", "--port", str(port), "--data-dir",
         str(tmp / "data"), "--workers", str(args.workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"))
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        samples: list[tuple[float, dict]] = []
        done = threading.Event()
        t0 = time.monotonic()

        def scraper() -> None:
            with httpx.Client(base_url=base, timeout=10) as c:
                while not done.is_set():
                    at = time.monotonic() - t0
                    samples.append((at, parse(c.get("/metrics").text)))
                    done.wait(max(0.0, 0.5 - (time.monotonic() - t0 - at)))

        thread = threading.Thread(target=scraper, daemon=True)
        thread.start()
        time.sleep(1.5)
        uploaded = 0
        with httpx.Client(base_url=base, timeout=120,
                          headers={"Authorization": f"Bearer {KEY}"}) as c:
            for start in range(0, len(images), args.batch):
                chunk = images[start:start + args.batch]
                r = c.post("/v1/images", files=[
                    ("files", (p.name, p.read_bytes(), "image/jpeg")) for p in chunk])
                r.raise_for_status()
                uploaded += len(chunk)
                time.sleep(args.pause)
            upload_done = time.monotonic() - t0
            while True:  # until the backlog is empty
                last = samples[-1][1] if samples else {}
                backlog = sum(v for (n, _), v in last.items() if n == "imgress_images")
                if time.monotonic() - t0 > upload_done + 2 and backlog == 0:
                    break
                time.sleep(0.5)
        time.sleep(1.5)
        done.set()
        thread.join()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    plot(samples, args.out, uploaded, args.workers, upload_done)


def plot(samples: list[tuple[float, dict]], out: Path, uploaded: int, workers: int,
         upload_done: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [t for t, _ in samples]

    def series(name: str, **labels: str) -> list[float]:
        key = (name, tuple(sorted(labels.items())))
        return [s.get(key, 0.0) for _, s in samples]

    created = series("imgress_upload_files_total", outcome="created", reason="")
    processed = series("imgress_processed_total", result="ready", code="")
    rate_t, ingest, done_rate = [], [], []
    for i in range(2, len(samples)):  # over 1 s (two scrapes)
        dt = ts[i] - ts[i - 2]
        rate_t.append(ts[i])
        ingest.append((created[i] - created[i - 2]) / dt)
        done_rate.append((processed[i] - processed[i - 2]) / dt)
    pending = series("imgress_images", status="pending")
    running = series("imgress_images", status="processing")
    oldest = series("imgress_oldest_pending_seconds")

    window = 10  # scrapes: 5 s
    p95: dict[str, list[float | None]] = {step: [] for step in STEPS}
    for i in range(len(samples)):
        j = max(0, i - window)
        for step in STEPS:
            now, then = samples[i][1], samples[j][1]
            buckets = []
            for (name, labels), v in now.items():
                lab = dict(labels)
                if name == "imgress_process_step_seconds_bucket" and lab.get("step") == step:
                    buckets.append((float(lab["le"]), v - then.get((name, labels), 0.0)))
            p95[step].append(quantile(0.95, buckets))

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ax = axes[0]
    ax.plot(rate_t, ingest, label="uploaded (created) files/s")
    ax.plot(rate_t, done_rate, label="processed files/s")
    ax.set_ylabel("files / s")
    ax.set_title(f"imgress /metrics every 0.5 s: {uploaded} uploads in bursts, "
                 f"{workers} processing threads, {os.cpu_count()} CPU cores")
    ax.legend(loc="upper right")
    ax = axes[1]
    ax.plot(ts, [a + b for a, b in zip(pending, running, strict=True)],
            label="imgress_images pending + processing")
    ax.set_ylabel("images waiting")
    ax2 = ax.twinx()
    ax2.plot(ts, oldest, color="tab:red", linestyle="--",
             label="imgress_oldest_pending_seconds")
    ax2.set_ylabel("oldest waiting (s)", color="tab:red")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [str(x.get_label()) for x in lines], loc="upper left")
    ax = axes[2]
    for step in STEPS:
        pts = [(t, v) for t, v in zip(ts, p95[step], strict=True) if v is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=f"{step}")
    ax.set_ylabel("p95 per step, last 5 s (s)")
    ax.set_xlabel("seconds since start")
    ax.legend(loc="upper right", title="imgress_process_step_seconds")
    for a in axes:
        a.axvline(upload_done, color="grey", linewidth=0.8, linestyle=":")
        a.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    peak = max(a + b for a, b in zip(pending, running, strict=True))
    print(f"{uploaded} uploaded in {upload_done:.1f} s; backlog peak {peak:.0f}, "
          f"oldest waiting peak {max(oldest):.1f} s; all processed at {ts[-1]:.1f} s; "
          f"plot: {out}")


if __name__ == "__main__":
    main()
