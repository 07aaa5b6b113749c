"""The composition root: the one place that names concrete backends."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI

from imgress import logs
from imgress.api import delivery, downloads, images, ops, orientation, uploads, web
from imgress.api import direct as direct_api
from imgress.api.deps import RequestContext, install_error_handlers
from imgress.backlog import BacklogCollector
from imgress.config import Settings, load_settings, parse_s3_url
from imgress.db.download_repository import DownloadRepository
from imgress.db.engine import make_engine
from imgress.db.repository import Repository
from imgress.db.upload_repository import UploadRepository
from imgress.direct_uploads import DirectUploads
from imgress.download_jobs import DownloadService
from imgress.downloads.fetcher import FetchPolicy
from imgress.imaging.pipeline import Detector, FileDetector, Pipeline
from imgress.jobs.base import Dispatcher, TaskHandler
from imgress.jobs.inprocess import InProcessDispatcher
from imgress.keys import load_or_create, load_or_create_secret
from imgress.limits import UploadLimits
from imgress.processing import ImageProcessor
from imgress.ratelimit import RateLimiter
from imgress.readiness import Readiness, service_checks
from imgress.service import ImageService
from imgress.storage.base import Storage
from imgress.storage.local import LocalStorage
from imgress.tokens import LinkSigner, Signer

log = structlog.get_logger("imgress.app")


def make_storage(settings: Settings) -> Storage:
    if settings.storage_url.startswith("s3://"):
        from imgress.storage.s3 import S3Storage  # boto3 loads only when configured

        options = parse_s3_url(settings.storage_url)
        return S3Storage(
            options["bucket"], prefix=options["prefix"],
            endpoint_url=options.get("endpoint_url"), region=options.get("region"),
            public_url=options.get("public_url"),
            presign_endpoint=options.get("presign_endpoint"),
            spool_root=settings.data_dir.resolve())
    return LocalStorage(settings.storage_root)


def make_dispatcher(settings: Settings) -> Dispatcher:
    if settings.broker_url:
        from imgress.jobs.celery_dispatcher import CeleryDispatcher, make_celery

        return CeleryDispatcher(make_celery(settings.broker_url,
                                            settings.broker_visibility_timeout))
    return InProcessDispatcher(settings.workers,
                               lanes={"run_download": settings.download_workers})


def make_detector(settings: Settings) -> tuple[Detector, FileDetector, str]:
    """Content-based rotation detection: on an image, on a file, and its tag for the
    variants' fingerprint.  Tesseract's OSD judges documents ahead of the photo model
    where tesseract and its osd data are installed; the tag then names both (and the
    Tesseract version), so nothing rendered under the model alone is reused."""
    from imgress.imaging import document_orientation, orientation

    tag = hashlib.sha256(orientation.WEIGHTS.read_bytes()).hexdigest()[:8]
    version = document_orientation.tesseract_version() if settings.orientation_documents \
        else None
    if version is None:
        return orientation.detect, orientation.detect_file, tag
    both = document_orientation.DocumentFirst(orientation.detect)
    return both, both.detect_file, f"{tag}+{document_orientation.TAG}-{version}"


def make_pipeline(settings: Settings) -> Pipeline:
    if not settings.orientation_detect:
        return Pipeline(settings.presets, settings.variant_format, settings.variant_quality)
    detect, detect_file, tag = make_detector(settings)
    return Pipeline(settings.presets, settings.variant_format, settings.variant_quality,
                    detector=detect, threshold=settings.orientation_threshold,
                    detector_tag=tag, detect_file=detect_file)


@dataclass(frozen=True, slots=True)
class Components:
    """Everything the HTTP app, the worker and the tests are built from."""

    images: ImageService
    direct: DirectUploads
    processor: ImageProcessor
    downloads: DownloadService
    dispatcher: Dispatcher

    @property
    def handlers(self) -> dict[str, TaskHandler]:
        """Every task name and the use case that runs it (in-process or on a worker)."""
        return {"process_image": self.processor.process_image,
                "detect_orientation": self.processor.detect_orientation,
                "run_download": self.downloads.run}


def build_service(settings: Settings) -> Components:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow,
                         pool_recycle=settings.db_pool_recycle,
                         pool_timeout=settings.db_pool_timeout)
    dispatcher = make_dispatcher(settings)
    repo, storage = Repository(engine), make_storage(settings)
    # Scale-out: inference on its own queue ahead of rendering; embedded: inline, on the
    # base image rendering decodes anyway (no second decode).
    queued_inference = bool(settings.broker_url) and settings.orientation_detect
    images = ImageService(repo=repo, storage=storage, dispatcher=dispatcher,
                          limits=UploadLimits.from_settings(settings),
                          first_task="detect_orientation" if queued_inference
                          else "process_image")
    processor = ImageProcessor(
        repo, storage, dispatcher,
        make_pipeline(settings),
        lease_seconds=settings.processing_lease_seconds,
    )
    direct = DirectUploads(
        images, UploadRepository(engine),
        Signer(load_or_create_secret(settings.data_dir, settings.upload_secret)),
        ttl_seconds=settings.upload_ttl_seconds, max_batch=settings.max_batch_uploads,
    )
    downloads = DownloadService(
        DownloadRepository(engine), repo, storage, dispatcher,
        LinkSigner(load_or_create_secret(settings.data_dir, settings.upload_secret),
                   "download-archive"),
        FetchPolicy(
            concurrency=settings.download_concurrency, per_host=settings.download_per_host,
            connect_timeout=settings.download_connect_timeout,
            read_timeout=settings.download_read_timeout,
            item_timeout=settings.download_item_timeout,
            max_item_bytes=settings.download_max_item_bytes,
            retries=settings.download_retries,
            allow_private=settings.download_allow_private,
            exempt=frozenset(settings.download_allow_addresses)),
        max_items=settings.download_max_items, max_job_bytes=settings.download_max_job_bytes,
        ttl_seconds=settings.download_ttl_seconds,
        variants=[p.name for p in settings.presets],
    )
    return Components(images, direct, processor, downloads, dispatcher)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    logs.configure(settings.log_level, settings.log_format)
    parts = build_service(settings)
    svc, direct, processor, dispatcher = (parts.images, parts.direct, parts.processor,
                                          parts.dispatcher)
    downloads_svc = parts.downloads
    keys, created = load_or_create(settings.data_dir, settings.api_keys, settings.auth)
    if created:  # `imgress serve` normally does this (and prints) before the server starts
        print(f"imgress: created API key (shown once, stored hashed): {created}",
              file=sys.stderr)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from imgress.db.migrate import upgrade  # Alembic is needed once, at start

        upgrade(settings.resolved_database_url)  # serialized by a lock on PostgreSQL
        dispatcher.start(parts.handlers)
        # Exclusive: this process is the only worker (embedded default, one process).
        exclusive = not settings.broker_url and os.environ.get("IMGRESS_PROCESSES", "1") == "1"
        recovered = processor.recover(exclusive=exclusive)
        recovered += downloads_svc.recover(exclusive=exclusive)
        log.info("started", recovered=recovered, workers=settings.workers)
        housekeeping = [
            asyncio.create_task(_periodic(direct.cleanup, settings.upload_cleanup_seconds)),
            asyncio.create_task(_periodic(processor.resubmit_stale,
                                          settings.processing_lease_seconds / 2)),
            asyncio.create_task(_periodic(downloads_svc.resubmit_stale, 30)),
            asyncio.create_task(_periodic(downloads_svc.cleanup, 300)),
        ]
        yield
        for task in housekeeping:
            task.cancel()
        dispatcher.stop()
        svc.close()

    app = FastAPI(title="imgress", version="1", lifespan=lifespan,
                  description="Image ingestion: bulk upload, dedup, variants, delivery.")
    app.state.service, app.state.keys, app.state.dispatcher = svc, keys, dispatcher
    app.state.direct, app.state.public_url = direct, settings.public_url
    app.state.downloads = downloads_svc
    app.state.settings = settings
    # POST /v1/orientation judges whether or not processing does.
    app.state.detect_orientation = processor.pipeline.detect_file or make_detector(settings)[1]
    app.state.readiness = Readiness(service_checks(svc))
    app.state.backlog = BacklogCollector(svc.repo.engine)
    app.state.rate_limiter = RateLimiter(settings.rate_limit,
                                         settings.resolved_rate_limit_storage)
    install_error_handlers(app)
    for module in (uploads, direct_api, images, downloads, delivery, ops, orientation, web):
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
