"""In-process dispatcher: worker threads in the server process (the embedded default).

libvips releases the GIL while it works, so threads use every core for imaging. A plain
queue keeps `submit` cheap (a commit of 1,000 images hands over 1,000 ids).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

import structlog

from imgress.jobs.base import TaskHandler, check_handlers

log = structlog.get_logger("imgress.jobs")
_STOP = ("", "")


class InProcessDispatcher:
    def __init__(self, workers: int):
        self.workers = workers
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._handlers: Mapping[str, TaskHandler] = {}
        self._busy = 0
        self._lock = threading.Lock()

    def start(self, handlers: Mapping[str, TaskHandler]) -> None:
        check_handlers(handlers)
        self._handlers = dict(handlers)
        self._threads = [
            threading.Thread(target=self._work, name=f"imgress-worker-{n}", daemon=True)
            for n in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: str, *ids: str) -> None:
        if not self._threads:
            raise RuntimeError("dispatcher not started")
        if task not in self._handlers:
            raise KeyError(f"no handler for task {task!r}")
        for item_id in ids:
            self._queue.put((task, item_id))

    def _work(self) -> None:
        while True:
            task, item_id = self._queue.get()
            if (task, item_id) == _STOP:
                return
            with self._lock:
                self._busy += 1
            try:
                self._handlers[task](item_id)
            except Exception:  # a worker never dies of one task
                log.exception("task_crashed", task=task, id=item_id)
            finally:
                with self._lock:
                    self._busy -= 1

    def ping(self) -> None:
        if not self._threads or not all(t.is_alive() for t in self._threads):
            raise RuntimeError("worker threads are not running")

    def pending(self) -> int:
        return self._queue.qsize() + self._busy

    def stop(self) -> None:
        """Let running tasks finish; queued ones stay `pending` in the database and are
        recovered at the next start."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []
