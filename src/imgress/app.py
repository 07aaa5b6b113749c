"""The composition root: the one place that names concrete backends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI

from imgress import logs
from imgress.api import delivery, images, ops, uploads, web
from imgress.api import direct as direct_api
from imgress.api.deps import RequestContext, install_error_handlers
from imgress.config import Settings, load_settings, parse_s3_url
from imgress.db.engine import make_engine
from imgress.db.repository import Repository
from imgress.db.upload_repository import UploadRepository
from imgress.direct_uploads import DirectUploads
from imgress.imaging.pipeline import Pipeline
from imgress.jobs.base import Dispatcher
from imgress.jobs.inprocess import InProcessDispatcher
from imgress.keys import load_or_create, load_or_create_secret
from imgress.limits import UploadLimits
from imgress.processing import ImageProcessor
from imgress.ratelimit import RateLimiter
from imgress.service import ImageService
from imgress.storage.base import Storage
from imgress.storage.local import LocalStorage
from imgress.tokens import Signer

log = structlog.get_logger("imgress.app")


def make_storage(settings: Settings) -> Storage:
    if settings.storage_url.startswith("s3://"):
        from imgress.storage.s3 import S3Storage  # boto3 loads only when configured

        options = parse_s3_url(settings.storage_url)
        return S3Storage(
            options["bucket"], prefix=options["prefix"],
            endpoint_url=options.get("endpoint_url"), region=options.get("region"),
            public_url=options.get("public_url"), spool_root=settings.data_dir.resolve())
    return LocalStorage(settings.storage_root)


def make_dispatcher(settings: Settings) -> Dispatcher:
    if settings.broker_url:
        from imgress.jobs.celery_dispatcher import CeleryDispatcher, make_celery

        return CeleryDispatcher(make_celery(settings.broker_url,
                                            settings.broker_visibility_timeout))
    return InProcessDispatcher(settings.workers)


@dataclass(frozen=True, slots=True)
class Components:
    """Everything the HTTP app, the worker and the tests are built from."""

    images: ImageService
    direct: DirectUploads
    processor: ImageProcessor
    dispatcher: Dispatcher


def build_service(settings: Settings) -> Components:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    dispatcher = make_dispatcher(settings)
    repo, storage = Repository(engine), make_storage(settings)
    images = ImageService(repo=repo, storage=storage, dispatcher=dispatcher,
                          limits=UploadLimits.from_settings(settings))
    processor = ImageProcessor(
        repo, storage, dispatcher,
        Pipeline(settings.presets, settings.variant_format, settings.variant_quality),
        lease_seconds=settings.processing_lease_seconds,
    )
    direct = DirectUploads(
        images, UploadRepository(engine),
        Signer(load_or_create_secret(settings.data_dir, settings.upload_secret)),
        ttl_seconds=settings.upload_ttl_seconds, max_batch=settings.max_batch_uploads,
    )
    return Components(images, direct, processor, dispatcher)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    logs.configure(settings.log_level, settings.log_format)
    parts = build_service(settings)
    svc, direct, processor, dispatcher = (parts.images, parts.direct, parts.processor,
                                          parts.dispatcher)
    keys, created = load_or_create(settings.data_dir, settings.api_keys, settings.auth)
    if created:  # `imgress serve` normally does this (and prints) before the server starts
        print(f"imgress: created API key (shown once, stored hashed): {created}",
              file=sys.stderr)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from imgress.db.migrate import upgrade  # Alembic is needed once, at start

        upgrade(settings.resolved_database_url)  # serialized by a lock on PostgreSQL
        dispatcher.start({"process_image": processor.process_image})
        recovered = processor.recover(exclusive=not settings.broker_url)
        log.info("started", recovered=recovered, workers=settings.workers)
        housekeeping = [
            asyncio.create_task(_periodic(direct.cleanup, settings.upload_cleanup_seconds)),
            asyncio.create_task(_periodic(processor.resubmit_stale,
                                          settings.processing_lease_seconds / 2)),
        ]
        yield
        for task in housekeeping:
            task.cancel()
        dispatcher.stop()

    app = FastAPI(title="imgress", version="1", lifespan=lifespan,
                  description="Image ingestion: bulk upload, dedup, variants, delivery.")
    app.state.service, app.state.keys, app.state.dispatcher = svc, keys, dispatcher
    app.state.direct, app.state.public_url = direct, settings.public_url
    app.state.rate_limiter = RateLimiter(settings.rate_limit,
                                         settings.resolved_rate_limit_storage)
    install_error_handlers(app)
    for module in (uploads, direct_api, images, delivery, ops, web):
        app.include_router(module.router)
    app.add_middleware(RequestContext)
    return app


async def _periodic(task: Callable[[], object], every: float) -> None:
    """Run a blocking housekeeping task now and then; its failures are logged, not fatal."""
    from anyio import to_thread

    while True:
        try:
            await to_thread.run_sync(task)
        except Exception:
            log.exception("periodic_task_failed", task=getattr(task, "__name__", "task"))
        await asyncio.sleep(every)
