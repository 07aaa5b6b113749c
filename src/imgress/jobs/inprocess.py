"""In-process dispatcher: worker threads in the server process (the embedded default).

libvips releases the GIL while it works, so threads use every core for imaging. A plain
queue keeps `submit` cheap (a commit of 1,000 images hands over 1,000 ids). Some tasks
get a lane of their own (threads and queue), as Celery gives them a queue of their own:
a long batch download must not hold up image processing, nor the other way round.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

import structlog

from imgress import metrics
from imgress.jobs.base import TaskHandler, check_handlers

log = structlog.get_logger("imgress.jobs")
_STOP = ("", "")
_SHARED = "*"


class _Lane:
    def __init__(self, name: str, workers: int):
        self.name, self.workers = name, workers
        self.queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self.threads: list[threading.Thread] = []


class InProcessDispatcher:
    def __init__(self, workers: int, lanes: Mapping[str, int] | None = None):
        """`lanes` maps a task name to the threads it gets for itself."""
        self.workers = workers
        self._lanes = {_SHARED: _Lane(_SHARED, workers)}
        for task, count in (lanes or {}).items():
            self._lanes[task] = _Lane(task, count)
        self._handlers: Mapping[str, TaskHandler] = {}
        self._busy = 0
        self._lock = threading.Lock()
        self._started = False

    def _lane(self, task: str) -> _Lane:
        return self._lanes.get(task, self._lanes[_SHARED])

    def start(self, handlers: Mapping[str, TaskHandler]) -> None:
        check_handlers(handlers)
        self._handlers = dict(handlers)
        for lane in self._lanes.values():
            lane.threads = [
                threading.Thread(target=self._work, args=(lane,), daemon=True,
                                 name=f"imgress-{lane.name.strip('*') or 'worker'}-{n}")
                for n in range(lane.workers)
            ]
            for thread in lane.threads:
                thread.start()
        self._started = True

    def submit(self, task: str, *ids: str) -> None:
        if not self._started:
            raise RuntimeError("dispatcher not started")
        if task not in self._handlers:
            raise KeyError(f"no handler for task {task!r}")
        lane = self._lane(task)
        metrics.QUEUE_DEPTH.inc(len(ids))  # kept live, so every process's value is current
        for item_id in ids:
            lane.queue.put((task, item_id))

    def _work(self, lane: _Lane) -> None:
        while True:
            task, item_id = lane.queue.get()
            if (task, item_id) == _STOP:
                return
            with self._lock:
                self._busy += 1
            try:
                self._handlers[task](item_id)
            except Exception:  # a worker never dies of one task
                log.exception("task_crashed", task=task, id=item_id)
            finally:
                metrics.QUEUE_DEPTH.dec()
                with self._lock:
                    self._busy -= 1

    def ping(self) -> None:
        threads = [t for lane in self._lanes.values() for t in lane.threads]
        if not self._started or not all(t.is_alive() for t in threads):
            raise RuntimeError("worker threads are not running")

    def pending(self) -> int:
        return sum(lane.queue.qsize() for lane in self._lanes.values()) + self._busy

    def stop(self) -> None:
        """Let running tasks finish; queued ones stay unfinished in the database and are
        recovered at the next start."""
        for lane in self._lanes.values():
            while True:
                try:
                    lane.queue.get_nowait()
                    metrics.QUEUE_DEPTH.dec()
                except queue.Empty:
                    break
            for _ in lane.threads:
                lane.queue.put(_STOP)
        for lane in self._lanes.values():
            for thread in lane.threads:
                thread.join(timeout=60)
            lane.threads = []
        self._started = False
