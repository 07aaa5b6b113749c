"""Processing, part of the service layer: the task behind `process_image`, and the
recovery that hands unfinished work out again. Idempotent, so duplicates are harmless.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import structlog

from imgress import metrics
from imgress.db.repository import Repository
from imgress.errors import ImgressError
from imgress.imaging.orientation import Detection
from imgress.imaging.pipeline import Pipeline
from imgress.jobs.base import Dispatcher
from imgress.models import Location, Orientation, Variant, original_key, variant_key
from imgress.storage.base import Storage

log = structlog.get_logger("imgress.processing")


class ImageProcessor:
    def __init__(self, repo: Repository, storage: Storage, dispatcher: Dispatcher,
                 pipeline: Pipeline, lease_seconds: float = 300):
        self.repo, self.storage, self.dispatcher = repo, storage, dispatcher
        self.pipeline, self.lease_seconds = pipeline, lease_seconds

    def process_image(self, image_id: str) -> None:
        """Render every variant of one image. Idempotent; never raises for a bad image."""
        image = self.repo.claim(image_id, self.lease_seconds)
        if image is None:
            return
        log_ = log.bind(image_id=image_id, request_id=image.request_id)
        metrics.observe_wait(image.created_at)
        try:
            cached = self._cached_variants(image.sha256)
            if cached is None:
                known = image.orientation
                variants, orientation = self._render(image.sha256, Detection(
                    known.angle, known.confidence or 0.0) if known and known.angle is not None
                    else None)
            else:
                variants, orientation = cached
                metrics.RESULT_CACHE_HITS.inc()
            self.repo.finish(image_id, variants=variants, orientation=orientation)
            metrics.PROCESSED.labels("ready", "").inc()
            log_.info("image_ready", detected_angle=orientation and orientation.angle,
                      applied=bool(orientation and orientation.applied))
        except ImgressError as exc:
            self.repo.finish(image_id, error=(exc.code, exc.message))
            metrics.PROCESSED.labels("failed", exc.code).inc()
            log_.info("image_failed", code=exc.code, detail=exc.extra.get("detail"))
        except Exception:
            log_.exception("image_crashed")
            self.repo.finish(image_id, error=("internal_error", "processing crashed"))
            metrics.PROCESSED.labels("failed", "internal_error").inc()

    def _cached_variants(self, sha256: str
                         ) -> tuple[dict[str, Variant], Orientation | None] | None:
        """A rendering of the same bytes with the same fingerprints (so the same model
        and threshold), with the orientation found for it."""
        keys = {p.name: variant_key(sha256, p.name, self.pipeline.fingerprint(p),
                                    self.pipeline.fmt) for p in self.pipeline.presets}
        for ready, orientation in self.repo.ready_variants(sha256):
            if all(name in ready and ready[name].key == key for name, key in keys.items()):
                return {name: ready[name] for name in keys}, orientation
        return None

    def detect_orientation(self, image_id: str) -> None:
        """Scale-out: rotation inference on a queue of its own (scaled apart from
        rendering), then the image goes on to `process_image`. Whatever happens here,
        the image is handed on: rendering judges it inline when no answer was saved."""
        image = self.repo.get_image(image_id)
        if image is None or image.status not in ("pending", "processing"):
            return
        try:
            if image.orientation is None and self.pipeline.detector is not None:
                # Reuse only a judgement of the same model and threshold: one that came
                # with variants of today's fingerprint (a new model judges again).
                cached = self._cached_variants(image.sha256)
                found = replace(cached[1], applied=False) if cached and cached[1] else None
                if found is None:
                    with self._local_original(image.sha256) as source:
                        started = time.perf_counter()
                        seen = self.pipeline.detect_source(source)
                    found = _judged(seen, applied=False,
                                    seconds=time.perf_counter() - started)
                self.repo.save_orientation(image_id, found)
                log.info("orientation_detected", image_id=image_id, angle=found.angle,
                         confidence=found.confidence, request_id=image.request_id)
        except Exception:
            log.exception("orientation_crashed", image_id=image_id)
        finally:
            self.dispatcher.submit("process_image", image_id)

    def _render(self, sha256: str, known: Detection | None = None
                ) -> tuple[dict[str, Variant], Orientation | None]:
        with self._local_original(sha256) as source, tempfile.TemporaryDirectory(
            dir=self.storage.spool_dir(), prefix="render-"
        ) as out_dir:
            ctx = self.pipeline.render(source, Path(out_dir), known)
            for step, seconds in ctx.timings.items():
                metrics.PROCESS_STEP_SECONDS.labels(step).observe(seconds)
            variants = {}
            for r in ctx.renditions:
                preset = next(p for p in self.pipeline.presets if p.name == r.name)
                key = variant_key(sha256, r.name, self.pipeline.fingerprint(preset), r.format)
                self.storage.put(key, r.path)
                variants[r.name] = Variant(r.name, key, r.width, r.height, r.format, r.size)
        if self.pipeline.detector is None:
            return variants, None
        if known is not None:  # judged (and counted) on the inference queue
            return variants, Orientation(known.angle, known.confidence, ctx.applied)
        return variants, _judged(ctx.detection, ctx.applied, ctx.timings.get("detect"))

    @contextmanager
    def _local_original(self, sha256: str) -> Iterator[Path]:
        key = original_key(sha256)
        location = Location(key, self.storage.url(key), "", "")
        if location.local_path is not None:
            yield location.local_path
            return
        with tempfile.NamedTemporaryFile(dir=self.storage.spool_dir()) as tmp, \
                self.storage.open(key) as src:
            shutil.copyfileobj(src, tmp, 1024 * 1024)
            tmp.flush()
            yield Path(tmp.name)

    def recover(self, exclusive: bool) -> int:
        """Submit every unfinished image again (after a restart or a lost queue).
        `exclusive`: this process is the only worker (the embedded default)."""
        if exclusive:
            self.repo.release_processing()
        ids = self.repo.unfinished_ids()
        if ids:
            self.dispatcher.submit("process_image", *ids)
        return len(ids)

    def resubmit_stale(self) -> int:
        """Periodic: hand out again work whose worker died or whose message the broker
        lost; the database, not the queue, is the source of truth."""
        ids = self.repo.stale_ids(self.lease_seconds)
        if ids:
            self.dispatcher.submit("process_image", *ids)
            log.info("resubmitted_stale", count=len(ids))
        return len(ids)


def _judged(found: Detection | None, applied: bool, seconds: float | None) -> Orientation:
    """A fresh judgement (None: the model abstained) as a record, counted once."""
    angle, confidence = (found.angle, found.confidence) if found else (None, None)
    metrics.observe_orientation(angle, confidence, seconds)
    return Orientation(angle, confidence, applied)
