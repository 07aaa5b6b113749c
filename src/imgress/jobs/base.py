"""The dispatcher protocol: the service hands work over by task name and ids only.

Job state lives in the database, so a dispatcher may lose its queue (a restart) and
nothing is lost: `recover` on start submits whatever is unfinished again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

TaskHandler = Callable[[str], None]
TASK_NAMES = frozenset({"process_image", "detect_orientation", "run_download"})


class Dispatcher(Protocol):
    def submit(self, task: str, *ids: str) -> None: ...

    def start(self, handlers: Mapping[str, TaskHandler]) -> None: ...

    def stop(self) -> None: ...

    def pending(self) -> int: ...

    def ping(self) -> None:
        """Raise when work cannot be handed over (readiness)."""


def check_handlers(handlers: Mapping[str, TaskHandler]) -> None:
    """Refuse to start when a task has no handler (or a handler no task)."""
    missing = TASK_NAMES - handlers.keys()
    extra = handlers.keys() - TASK_NAMES
    if missing or extra:
        raise RuntimeError(f"task handlers do not match: missing {missing}, unknown {extra}")
