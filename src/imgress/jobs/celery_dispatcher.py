"""Celery dispatch for scale-out: tasks carry ids only, state stays in the database.

The API side only sends; `imgress worker` registers the handlers and consumes. Late
acknowledgement plus idempotent handlers mean a worker killed mid-task loses nothing:
the broker hands the message to another worker, which finishes or skips the work.
"""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery

from imgress.jobs.base import TASK_NAMES, TaskHandler, check_handlers

# One queue per kind of work, so operators size each worker pool apart (CPU-bound
# rendering, model inference, network-bound downloads). A task name in TASK_NAMES runs on
# Celery once it has a queue here.
QUEUES = {
    "process_image": "imgress.process",
    "detect_orientation": "imgress.orientation",
    "run_download": "imgress.downloads",
}


def celery_tasks() -> list[str]:
    """The task names this deployment routes through Celery."""
    return sorted(name for name in TASK_NAMES if name in QUEUES)


def resolve_queues(spec: str | None) -> list[str]:
    """`--queues`: queue names or their short forms (`process,downloads`); all if unset."""
    known = {QUEUES[name] for name in celery_tasks()}
    if not spec:
        return sorted(known)
    chosen = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        queue = part if part.startswith("imgress.") else f"imgress.{part}"
        if queue not in known:
            raise ValueError(f"unknown queue {part!r}; known: {', '.join(sorted(known))}")
        chosen.append(queue)
    return chosen


def make_celery(broker_url: str, visibility_timeout: int = 300) -> Celery:
    app = Celery("imgress", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_routes={f"imgress.{name}": {"queue": q} for name, q in QUEUES.items()},
        broker_transport_options={"visibility_timeout": visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def register_tasks(app: Celery, handlers: Mapping[str, TaskHandler]) -> None:
    """Worker side: bind each task name to its handler, retried with backoff."""
    check_handlers(handlers)
    for name in celery_tasks():
        handler = handlers[name]

        def run(item_id: str, _handler: TaskHandler = handler) -> None:
            _handler(item_id)

        app.task(name=f"imgress.{name}", autoretry_for=(ConnectionError, OSError),
                 retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
                 max_retries=8)(run)


class CeleryDispatcher:
    def __init__(self, app: Celery):
        self.app = app

    def start(self, handlers: Mapping[str, TaskHandler]) -> None:
        check_handlers(handlers)  # the API side runs nothing, but names must match

    def submit(self, task: str, *ids: str) -> None:
        if task not in QUEUES:
            raise KeyError(f"no queue for task {task!r}")
        with self.app.producer_or_acquire() as producer:
            for item_id in ids:
                self.app.send_task(f"imgress.{task}", args=[item_id], queue=QUEUES[task],
                                   producer=producer)

    def pending(self) -> int:
        return 0  # queue depth lives in the broker; see its own metrics

    def ping(self) -> None:
        with self.app.connection_for_write() as conn:
            # One quick retry: a readiness probe wants an answer, not a wait.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1,
                                   timeout=1)

    def stop(self) -> None:
        pass
