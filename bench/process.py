"""Variant rendering throughput on real 8-24 MP photos: imgress vs pyvips vs Pillow.

Every approach renders the same two WebP variants (web: fit 1920x1080, thumb: fit
256x256, both from the decoded web-sized image) for the same files, each approach in
its own subprocess (so its peak RSS is its own), rounds interleaved.
Photos come from Debian wallpaper packages, fetched with `apt-get download` and
unpacked with `dpkg-deb -x` into bench/.cache (never installed).
Usage: .venv/bin/python bench/process.py [--rounds 3] [--vips-concurrency 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds")
EXTRA_PACKAGES = ("gnome-backgrounds", "desktop-base")  # only if fewer than --min-count
WEB, THUMB = (1920, 1080), (256, 256)


def fetch(packages: tuple[str, ...]) -> None:
    """apt-get download each package once, and unpack every .deb once."""
    debs, photos = CACHE / "debs", CACHE / "photos"
    debs.mkdir(parents=True, exist_ok=True)
    photos.mkdir(parents=True, exist_ok=True)
    for package in packages:
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    for deb in debs.glob("*.deb"):
        marker = photos / f".unpacked-{deb.name}"
        if not marker.exists():
            subprocess.run(["dpkg-deb", "-x", str(deb), str(photos)], check=True)
            marker.touch()


def candidates(low: float = 8e6, high: float = 24e6) -> list[Path]:
    """JPEG and PNG files of 8-24 megapixels among the unpacked files."""
    import pyvips

    found = []
    for path in sorted((CACHE / "photos").rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.is_file():
            image = pyvips.Image.new_from_file(str(path))
            if low <= image.width * image.height <= high:
                found.append(path)
    return found


def photos(min_count: int) -> list[Path]:
    """The benchmark's photo set; extra packages only when the first two fall short."""
    fetch(PACKAGES)
    found = candidates()
    if len(found) < min_count:
        fetch(EXTRA_PACKAGES)
        found = candidates()
    if len(found) < min_count:
        sys.exit(f"only {len(found)} photos of 8-24 MP found, {min_count} wanted")
    return found


# -- the approaches (run inside the worker subprocess) ------------------------------

def run_imgress(path: Path, out: Path, effort: int) -> int:
    """imgress's own Pipeline (its WebP effort is fixed in the pipeline: 2)."""
    from imgress.config import VariantPreset
    from imgress.imaging.pipeline import Pipeline

    pipeline = Pipeline([VariantPreset("thumb", *THUMB), VariantPreset("web", *WEB)],
                        "webp", 80)
    return len(pipeline.render(path, out).renditions)


def run_pyvips(path: Path, out: Path, effort: int) -> int:
    """Plain pyvips: thumbnail (shrink-on-load) to the web box, then the thumb from it."""
    import pyvips

    web = pyvips.Image.thumbnail(str(path), WEB[0], height=WEB[1], size="down").copy_memory()
    web.write_to_file(str(out / "web.webp"), Q=80, keep="none", effort=effort)
    thumb = web.thumbnail_image(THUMB[0], height=THUMB[1], size="down")
    thumb.write_to_file(str(out / "thumb.webp"), Q=80, keep="none", effort=effort)
    return 2


def _pillow(path: Path, out: Path, effort: int, draft: bool) -> int:
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        if draft:
            opened.draft("RGB", WEB)  # JPEG only: DCT scaling to >= WEB; no-op for PNG
        image = ImageOps.exif_transpose(opened)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        scale = min(WEB[0] / image.width, WEB[1] / image.height)
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
    image.save(out / "web.webp", quality=80, method=effort)
    image.thumbnail(THUMB, Image.Resampling.LANCZOS)
    image.save(out / "thumb.webp", quality=80, method=effort)
    return 2


def run_pillow(path: Path, out: Path, effort: int) -> int:
    """Pillow: full-size decode, LANCZOS resize to the web box, thumbnail from that."""
    return _pillow(path, out, effort, draft=False)


def run_pillow_draft(path: Path, out: Path, effort: int) -> int:
    """Pillow with draft('RGB', box): JPEG decoded at 1/2, 1/4 or 1/8 scale."""
    return _pillow(path, out, effort, draft=True)


APPROACHES: dict[str, tuple[str, Callable[[Path, Path, int], int]]] = {
    "imgress": ("imgress `Pipeline.render`", run_imgress),
    "pyvips": ("plain pyvips `thumbnail` + `thumbnail_image`", run_pyvips),
    "pillow": ("Pillow open + LANCZOS resize", run_pillow),
    "pillow-draft": ('Pillow `draft("RGB", size)` + LANCZOS', run_pillow_draft),
}


def worker(name: str, files: list[Path], out: Path, effort: int) -> None:
    """Render every file once (after one untimed warm-up) and print a JSON result."""
    render = APPROACHES[name][1]
    (out / "warmup").mkdir()
    render(files[0], out / "warmup", effort)
    variants, cpu0, started, each = 0, time.process_time(), time.perf_counter(), []
    for i, path in enumerate(files):
        (out / str(i)).mkdir()
        variants += render(path, out / str(i), effort)
        each.append(time.perf_counter() - started - sum(each))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    written = sum(f.stat().st_size for i in range(len(files)) for f in (out / str(i)).iterdir())
    print(json.dumps({"seconds": seconds, "cpu": cpu, "images": len(files), "each": each,
                      "variants": variants, "bytes_out": written,
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--min-count", type=int, default=20)
    parser.add_argument("--effort", type=int, default=2,
                        help="WebP effort/method for pyvips and Pillow (imgress uses 2)")
    parser.add_argument("--vips-concurrency", type=int, default=1,
                        help="libvips threads per process (Pillow is single-threaded)")
    parser.add_argument("--worker", choices=sorted(APPROACHES), help=argparse.SUPPRESS)
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, [Path(p) for p in args.files.read_text().split("\n")], args.out,
               args.effort)
        return

    files = photos(args.min_count)
    for path in files:  # into the page cache, so no approach pays for the first read
        path.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="imgress-bench-process-", dir="/tmp"))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in APPROACHES}
    env = {**os.environ, "VIPS_CONCURRENCY": str(args.vips_concurrency)}
    try:
        (tmp / "files.txt").write_text("\n".join(str(p) for p in files))
        for _ in range(args.rounds):
            for name in APPROACHES:
                out = tmp / name
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", name, "--files",
                     str(tmp / "files.txt"), "--out", str(out), "--effort", str(args.effort)],
                    check=True, capture_output=True, text=True, env=env)
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(results, files, args))


def table(results: dict[str, list[dict[str, Any]]], files: list[Path],
          args: argparse.Namespace) -> str:
    """The markdown table, ratios against plain pyvips, plus a line on the photo set."""
    def rate(name: str, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")) -> float:
        picked = [i for i, p in enumerate(files) if p.suffix.lower() in suffixes]
        return statistics.median(len(picked) / sum(r["each"][i] for i in picked)
                                 for r in results[name])

    base = rate("pyvips")
    lines = ["| approach | images/s | variants/s | vs plain pyvips | JPEG images/s | PNG images/s"
             " | CPU s/image | peak RSS | KB out/image |", "|---|---|---|---|---|---|---|---|---|"]
    for name, (label, _) in APPROACHES.items():
        runs = results[name]
        images = runs[0]["images"]
        cpu = statistics.median(r["cpu"] for r in runs) / images
        rss = max(r["maxrss"] for r in runs) / 1024**2
        per_image = runs[0]["variants"] / images
        lines.append(f"| {label} | {rate(name):.2f} | {rate(name) * per_image:.2f}"
                     f" | {rate(name) / base:.2f} | {rate(name, ('.jpg', '.jpeg')):.2f}"
                     f" | {rate(name, ('.png',)):.2f} | {cpu:.3f} | {rss:.0f} MiB | "
                     f"{runs[0]['bytes_out'] / images / 1024:.0f} |")
    jpeg = sum(p.suffix.lower() in (".jpg", ".jpeg") for p in files)
    lines.append(f"\n{len(files)} files ({jpeg} JPEG, {len(files) - jpeg} PNG) of 8-24 MP from "
                 f"{', '.join(PACKAGES)}; one process per approach, VIPS_CONCURRENCY="
                 f"{args.vips_concurrency}; WebP q80 effort {args.effort}; median of "
                 f"{args.rounds} interleaved rounds; peak RSS = max ru_maxrss of the worker.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
