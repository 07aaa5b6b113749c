"""Scrape-time gauges from the database: the processing backlog, whatever runs it.

With Celery the queue lives in the broker and the workers elsewhere; the database is
the source of truth for what is unfinished, so that is where the backlog is read.
One indexed query (ix_images_status, over unfinished rows only), cached for a second
so a burst of scrapes costs one query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from imgress.db.schema import images

log = structlog.get_logger("imgress.metrics")
_UNFINISHED = ("pending", "processing")


class BacklogCollector(Collector):
    def __init__(self, engine: Engine, ttl: float = 1.0):
        self.engine, self.ttl = engine, ttl
        self._lock = threading.Lock()
        self._at = -1e9
        self._counts: dict[str, int] = {}
        self._oldest: datetime | None = None

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return
            query = (select(images.c.status, func.count(), func.min(images.c.created_at))
                     .where(images.c.status.in_(_UNFINISHED)).group_by(images.c.status))
            # A read: autocommit, so on SQLite it never takes the writers' lock.
            with self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:
                rows = conn.execute(query).all()
            self._counts = {s: 0 for s in _UNFINISHED} | {r[0]: int(r[1]) for r in rows}
            oldest = [r[2] for r in rows if r[2] is not None]
            self._oldest = min(map(_aware, oldest)) if oldest else None
            self._at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        try:
            self._refresh()
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("backlog_query_failed", error=type(exc).__name__)
            return
        by_status = GaugeMetricFamily(
            "imgress_images", "Images not yet processed, by status (from the database)",
            labels=["status"])
        for status, count in sorted(self._counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        age = 0.0
        if self._oldest is not None:
            age = max(0.0, (datetime.now(UTC) - self._oldest).total_seconds())
        yield GaugeMetricFamily(
            "imgress_oldest_pending_seconds",
            "Age of the oldest image not yet processed (0: none waiting)", value=age)


def _aware(value: datetime | str) -> datetime:
    """SQLite hands back naive datetimes (stored UTC) — or text from min()."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
