"""`imgress upload PATH...`: bulk upload from the command line with a progress bar."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

import click
from tqdm import tqdm

from imgress.client import CONTENT_TYPES, AsyncClient, FileResult, Progress


def find_images(paths: tuple[Path, ...], recursive: bool, follow_links: bool) -> list[Path]:
    """Files given by name are taken as they are; folders are walked for image extensions."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
            continue
        walker = os.walk(path, followlinks=follow_links)
        for root, dirs, names in walker:
            dirs.sort()
            found.extend(Path(root) / n for n in sorted(names)
                         if Path(n).suffix.lower() in CONTENT_TYPES and not n.startswith("."))
            if not recursive:
                break
    return found


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--server", envvar="IMGRESS_URL", default="http://127.0.0.1:8080",
              show_default=True, help="Base URL (IMGRESS_URL).")
@click.option("--key", envvar="IMGRESS_KEY", default=None, help="API key (IMGRESS_KEY).")
@click.option("--direct/--multipart", default=True, show_default=True,
              help="Reserve/put/commit (default) or multipart POSTs.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--commit-batch", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--recursive/--no-recursive", default=True, show_default=True)
@click.option("--follow-links", is_flag=True, default=False, help="Follow symlinked folders.")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print one JSON document with every file's result.")
def upload(paths: tuple[Path, ...], server: str, key: str | None, direct: bool,
           concurrency: int, commit_batch: int, recursive: bool, follow_links: bool,
           as_json: bool) -> None:
    """Upload images; exit code 1 when any file was rejected or failed."""
    files = find_images(paths, recursive, follow_links)
    if not files:
        raise click.UsageError("no image files found")
    bar = tqdm(total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True,
               unit_divisor=1024, desc=f"0/{len(files)} files", disable=as_json or None,
               file=sys.stderr, dynamic_ncols=True)

    def on_progress(p: Progress) -> None:
        bar.n = p.bytes_sent
        bar.set_description(f"{p.files_done}/{p.files_total} files", refresh=False)
        bar.refresh()

    async def run() -> list[FileResult]:
        async with AsyncClient(server, key, concurrency=concurrency,
                               commit_batch=commit_batch) as client:
            if direct:
                return await client.upload_many(files, on_progress)
            return await client.upload_multipart(files, on_progress=on_progress)

    results = asyncio.run(run())
    bar.close()
    counts = Counter(r.status for r in results)
    summary = {s: counts.get(s, 0) for s in ("created", "duplicate", "rejected", "failed")}
    if as_json:
        click.echo(json.dumps({"summary": summary, "files": [r.to_dict() for r in results]}))
    else:
        for r in results:
            if r.status in ("rejected", "failed"):
                err = r.error or {}
                click.echo(f"{r.status}: {r.path}: {err.get('code')}: {err.get('message')}",
                           err=True)
        click.echo(" ".join(f"{k}={v}" for k, v in summary.items()))
    sys.exit(1 if summary["rejected"] or summary["failed"] else 0)
