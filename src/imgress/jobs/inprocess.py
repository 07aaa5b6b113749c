"""In-process dispatcher: a thread pool in the server process (the embedded default).

libvips releases the GIL while it works, so threads use every core for imaging.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import structlog

from imgress.jobs.base import TaskHandler, check_handlers

log = structlog.get_logger("imgress.jobs")


class InProcessDispatcher:
    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._handlers: Mapping[str, TaskHandler] = {}
        self._queued = 0
        self._lock = threading.Lock()

    def start(self, handlers: Mapping[str, TaskHandler]) -> None:
        check_handlers(handlers)
        self._handlers = dict(handlers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="imgress-worker")

    def submit(self, task: str, *ids: str) -> None:
        if self._pool is None:
            raise RuntimeError("dispatcher not started")
        handler = self._handlers[task]
        for item_id in ids:
            with self._lock:
                self._queued += 1
            self._pool.submit(self._run, task, handler, item_id)

    def _run(self, task: str, handler: TaskHandler, item_id: str) -> None:
        try:
            handler(item_id)
        except Exception:  # a worker never dies of one task
            log.exception("task_crashed", task=task, id=item_id)
        finally:
            with self._lock:
                self._queued -= 1

    def pending(self) -> int:
        return self._queued

    def stop(self) -> None:
        if self._pool is not None:
            # Unstarted work stays `pending` in the database and is recovered on start.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
