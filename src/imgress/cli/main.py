"""`imgress serve | migrate`: the operator's contract."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from imgress.cli.download import download
from imgress.cli.upload import upload
from imgress.config import Settings, SettingsError, load_settings


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        for line in exc.lines:
            click.echo(f"imgress: {line}", err=True)
        sys.exit(2)


@click.group()
def cli() -> None:
    """imgress: image ingestion service."""


@cli.command()
@click.option("--host", default=None, help="Address to bind (IMGRESS_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (IMGRESS_PORT, 8080).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Database, files and keys (IMGRESS_DATA_DIR, ./data).")
@click.option("--workers", type=int, default=None, help="Processing threads.")
@click.option("--no-auth", is_flag=True, default=False,
              help="Accept requests without an API key (same as IMGRESS_AUTH=false).")
@click.option("--processes", type=click.IntRange(1, 64), default=1, envvar="IMGRESS_PROCESSES",
              show_default=True, help="Server processes (IMGRESS_PROCESSES); metrics are "
                                      "summed over them.")
def serve(host: str | None, port: int | None, data_dir: Path | None, workers: int | None,
          no_auth: bool, processes: int) -> None:
    """Run the API, the web page and (embedded default) the background workers."""
    from granian import Granian
    from granian.constants import Interfaces

    from imgress.keys import load_or_create

    settings = _settings(host=host, port=port, data_dir=data_dir, workers=workers,
                         auth=False if no_auth else None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _, created = load_or_create(settings.data_dir, settings.api_keys, settings.auth)
    if created:
        click.echo(f"imgress: created an API key; it is shown only this once:\n\n  {created}\n\n"
                   f"Use it as 'Authorization: Bearer <key>'. Only its hash is kept in "
                   f"{settings.data_dir / 'api_keys.sha256'}.", err=True)
    if not settings.auth:
        click.echo("imgress: authentication is OFF (explicitly); anyone can upload.", err=True)
    # The server process migrates and builds the app from the environment: pass the
    # flags along (migrating there keeps SQLAlchemy out of this idle parent process).
    os.environ.update({
        "IMGRESS_HOST": settings.host, "IMGRESS_PORT": str(settings.port),
        "IMGRESS_DATA_DIR": str(settings.data_dir.resolve()),
        "IMGRESS_WORKERS": str(settings.workers),
        "IMGRESS_AUTH": "true" if settings.auth else "false",
        "IMGRESS_PROCESSES": str(processes),
    })
    if processes > 1:
        _multiprocess_metrics(settings.data_dir.resolve())
    click.echo(f"imgress: serving on http://{settings.host}:{settings.port}", err=True)
    Granian(
        "imgress.app:create_app", factory=True, address=settings.host, port=settings.port,
        interface=Interfaces.ASGI, workers=processes, log_access=False, log_level="warning",
    ).serve()


def _multiprocess_metrics(data_dir: Path) -> None:
    """Several server processes: each keeps its metric values in files in one folder
    and /metrics sums them. A folder of this run, emptied now (values of a past run
    would be summed in); an operator's own PROMETHEUS_MULTIPROC_DIR is used as given."""
    import shutil

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = data_dir / "run" / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def migrate(data_dir: Path | None) -> None:
    """Bring the database schema up to date."""
    from imgress.db.migrate import upgrade

    settings = _settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    click.echo("imgress: database schema is up to date", err=True)


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--concurrency", type=int, default=None,
              help="Tasks at once in this process, as threads (IMGRESS_WORKERS).")
@click.option("--queues", default=None,
              help="Comma-separated queues to consume: process, orientation, downloads "
                   "(or imgress.process, …). Default: all of them.")
def worker(data_dir: Path | None, concurrency: int | None, queues: str | None) -> None:
    """Run a Celery worker (scale-out): same settings, same task functions."""
    from imgress import logs
    from imgress.app import build_service
    from imgress.jobs.celery_dispatcher import CeleryDispatcher, register_tasks, resolve_queues

    settings = _settings(data_dir=data_dir, workers=concurrency)
    if not settings.broker_url:
        click.echo("imgress: IMGRESS_BROKER_URL is not set; `imgress serve` runs the "
                   "workers itself on the embedded default", err=True)
        sys.exit(2)
    try:
        consumed = resolve_queues(queues)
    except ValueError as exc:
        click.echo(f"imgress: --queues: {exc}", err=True)
        sys.exit(2)
    logs.configure(settings.log_level, settings.log_format)
    logging.getLogger("pyvips").setLevel(logging.WARNING)  # libvips chatter at INFO
    if port := os.environ.get("IMGRESS_METRICS_PORT"):
        from imgress.metrics import start_worker_server

        start_worker_server(int(port))  # Prometheus scrapes each worker here
    parts = build_service(settings)
    dispatcher = parts.dispatcher
    assert isinstance(dispatcher, CeleryDispatcher)
    register_tasks(dispatcher.app, parts.handlers)
    # Threads, as in the embedded default: libvips releases the GIL while it works.
    dispatcher.app.worker_main(argv=[
        "worker", "--pool=threads", f"--concurrency={settings.workers}",
        f"--queues={','.join(consumed)}", "--loglevel=INFO", "--without-gossip",
        "--without-mingle",
    ])


cli.add_command(upload)
cli.add_command(download)

if __name__ == "__main__":
    cli()
