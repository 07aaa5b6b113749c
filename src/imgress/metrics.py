"""Prometheus metrics. Label values are bounded sets: never ids, names or URLs."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
PROCESSED = Counter(
    "imgress_processed_total", "Images finished processing, by result and error code",
    ["result", "code"],
)
RESULT_CACHE_HITS = Counter(
    "imgress_result_cache_hits_total", "Images whose variants were reused, not rendered",
)
QUEUE_DEPTH = Gauge("imgress_queue_depth", "Tasks submitted and not yet finished")
RATE_LIMITED = Counter("imgress_rate_limited_total", "Requests refused by a rate limit")
