"""Prometheus metrics. Label values are bounded sets: never ids, names, URLs or hosts.

Several processes (granian workers, Celery workers) each count on their own; with
PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps the values in files there and
`exposition()` sums them, so a scrape of any one process sees the whole machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector

REQUESTS = Counter(
    "imgress_http_requests_total", "HTTP requests by route and status class",
    ["method", "route", "status_class"],
)
UPLOAD_FILES = Counter(
    "imgress_upload_files_total", "Uploaded files by outcome (created, duplicate, rejected)",
    ["outcome", "reason"],
)
UPLOAD_BYTES = Counter("imgress_upload_bytes_total", "Uploaded bytes by outcome", ["outcome"])
UPLOAD_SECONDS = Histogram(
    "imgress_upload_request_seconds", "Time to receive and store one bulk upload request",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
COMMIT_SECONDS = Histogram(
    "imgress_commit_seconds", "Server time of one direct-upload batch commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DEDUP_HITS = Counter("imgress_dedup_hits_total", "Uploads answered by an existing record")
PROCESS_STEP_SECONDS = Histogram(
    "imgress_process_step_seconds", "Processing time per pipeline step", ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROCESS_WAIT_SECONDS = Histogram(
    "imgress_process_wait_seconds", "From upload to a worker claiming the image (lag)",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
PROCESSED = Counter(
    "imgress_processed_total", "Images finished processing, by result and error code",
    ["result", "code"],
)
RESULT_CACHE_HITS = Counter(
    "imgress_result_cache_hits_total", "Images whose variants were reused, not rendered",
)
QUEUE_DEPTH = Gauge("imgress_queue_depth",
                    "Tasks submitted to this server's in-process workers, not yet finished",
                    multiprocess_mode="livesum")
RATE_LIMITED = Counter("imgress_rate_limited_total", "Requests refused by a rate limit",
                       ["scope"])

DOWNLOAD_JOBS = Counter("imgress_download_jobs_total", "Batch download jobs", ["event"])
DOWNLOAD_ITEMS = Counter(
    "imgress_download_items_total",
    "Finished download items by result (done, failed) and reason (an error code; "
    "address_refused, bad_url, bad_scheme, dns_failed: refused by the SSRF guard)",
    ["result", "reason"],
)
DOWNLOAD_BYTES = Counter("imgress_download_bytes_total", "Bytes fetched or packed by downloads")
DOWNLOAD_FETCH_SECONDS = Histogram(
    "imgress_download_fetch_seconds", "Time to fetch one URL item (retries included)",
    ["result"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
)
# The SSRF guard's codes (downloads/addresses.py): refusals, not origin failures.
SSRF_REASONS = frozenset({"address_refused", "bad_url", "bad_scheme", "dns_failed",
                          "url_refused"})

ORIENTATION_DETECTIONS = Counter(
    "imgress_orientation_detections_total",
    "Content-based rotation detections by angle (0/90/180/270, none: not judged) and "
    "confidence band (low < 0.6 <= medium < 0.9 <= high)",
    ["angle", "band"],
)
ORIENTATION_SECONDS = Histogram(
    "imgress_orientation_inference_seconds", "Time of one rotation detection",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
             0.5, 1.0, 2.5),  # the upper ones: documents read by Tesseract
)


def confidence_band(confidence: float | None) -> str:
    if confidence is None:
        return "none"
    return "high" if confidence >= 0.9 else "medium" if confidence >= 0.6 else "low"


def observe_orientation(angle: int | None, confidence: float | None,
                        seconds: float | None = None) -> None:
    """One detection: `angle` None when the picture was too small or flat to judge."""
    ORIENTATION_DETECTIONS.labels("none" if angle is None else str(angle),
                                  confidence_band(confidence)).inc()
    if seconds is not None:
        ORIENTATION_SECONDS.observe(seconds)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text format: this process's metrics (or every process's, summed, in
    multi-process mode), plus `extra` collectors computed now (database gauges)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    scrape = CollectorRegistry(auto_describe=False)
    for collector in extra:
        scrape.register(collector)
    return body + generate_latest(scrape)


def start_worker_server(port: int) -> None:
    """A Celery worker has no HTTP server of its own: serve /metrics on `port`."""
    from prometheus_client import start_http_server

    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)


def observe_wait(created_at: datetime) -> None:
    """Lag of one image: from its upload to a worker claiming it."""
    aware = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    PROCESS_WAIT_SECONDS.observe(max(0.0, (datetime.now(UTC) - aware).total_seconds()))
