"""`imgress download`: URLs or image ids into one zip, with a progress bar fed by events."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from imgress.download_client import DownloadError, Downloads


def read_items(source: Path | None, image_ids: tuple[str, ...]) -> list[dict[str, str]]:
    """One URL or image id per line; blank lines and # comments skipped; `URL NAME` names
    the file in the zip."""
    items: list[dict[str, str]] = [{"image_id": i} for i in image_ids]
    if source is not None:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            ref, _, name = line.partition(" ")
            item = {"image_id": ref} if ref.startswith("img_") else {"url": ref}
            if name.strip():
                item["name"] = name.strip()
            items.append(item)
    return items


@click.command()
@click.option("--from", "source", type=click.Path(allow_dash=True, path_type=Path),
              help="File of URLs or image ids, one per line ('-' for stdin).")
@click.option("--image-id", "image_ids", multiple=True, help="An image id (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write the zip.")
@click.option("--variant", default="original", show_default=True)
@click.option("--name", default=None, help="Name of the archive (server side).")
@click.option("--server", envvar="IMGRESS_URL", default="http://127.0.0.1:8080",
              show_default=True, help="Base URL (IMGRESS_URL).")
@click.option("--key", envvar="IMGRESS_KEY", default=None, help="API key (IMGRESS_KEY).")
@click.option("--quiet", is_flag=True, default=False, help="No progress bars.")
def download(source: Path | None, image_ids: tuple[str, ...], output: Path, variant: str,
             name: str | None, server: str, key: str | None, quiet: bool) -> None:
    """Fetch many images into one zip; exit code 1 when any item failed."""
    items = read_items(source, image_ids)
    if not items:
        raise click.UsageError("nothing to download: give --from FILE or --image-id")
    try:
        with Downloads(server, key) as client:
            job = client.start(items, variant=variant, name=name)
            failed = _follow(client, job["id"], len(items), quiet)
            bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="zip",
                       disable=quiet or None, file=sys.stderr, dynamic_ncols=True)

            def on_bytes(done: int, total: int) -> None:
                bar.total = total or None
                bar.update(done - bar.n)

            written = client.save(job["id"], output, on_bytes)
            bar.close()
    except DownloadError as exc:
        click.echo(f"imgress download: {exc.code}: {exc.message}", err=True)
        sys.exit(2)
    click.echo(f"{output}: {written} bytes, {len(items) - len(failed)} files"
               + (f", {len(failed)} failed (see errors.txt inside)" if failed else ""),
               err=True)
    for line in failed:
        click.echo(line, err=True)
    sys.exit(1 if failed else 0)


def _follow(client: Downloads, job_id: str, total: int, quiet: bool) -> list[str]:
    failed: list[str] = []
    with tqdm(total=total, unit="file", desc="fetch", disable=quiet or None,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for event, data in client.events(job_id):
            if event == "item":
                bar.update(1)
                bar.set_postfix(failed=data["failed"], refresh=False)
                if data["status"] == "failed":
                    failed.append(f"  {data['index']}: {data['name']}: "
                                  f"{data['error']['code']}: {data['error']['message']}")
    return failed
