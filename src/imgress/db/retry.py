"""Retrying a repository call when the database, not the request, failed.

Retried: serialization failures and deadlocks (SQLSTATE 40001/40P01: PostgreSQL rolled
the transaction back), a connection dropped while a statement ran (nothing was
committed: the transaction died with it), and a connection that could not be opened.
Never retried: a connection lost during COMMIT, where the outcome is unknown. Writes are
conditional UPDATEs or `ON CONFLICT DO NOTHING` inserts, so a retry never duplicates.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

log = structlog.get_logger("imgress.db")

ATTEMPTS = 4
BACKOFF = 0.05  # seconds, doubled per attempt, with jitter
_ROLLED_BACK = frozenset({"40001", "40P01"})

P = ParamSpec("P")
T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _ROLLED_BACK:
        return True
    if exc.statement is not None:
        return exc.connection_invalidated  # dropped mid-statement: nothing committed
    # No statement: a failed connect (retry) or a failed COMMIT (unknown outcome).
    return isinstance(exc, OperationalError) and not exc.connection_invalidated


def retried(fn: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except DBAPIError as exc:
                if attempt == ATTEMPTS or not transient(exc):
                    raise
                delay = random.uniform(0.5, 1.0) * BACKOFF * 2 ** (attempt - 1)
                log.warning("db_retry", call=fn.__qualname__, attempt=attempt,
                            error=type(exc.orig).__name__, sqlstate=getattr(
                                exc.orig, "sqlstate", None))
                time.sleep(delay)
        raise AssertionError("unreachable")

    return call
