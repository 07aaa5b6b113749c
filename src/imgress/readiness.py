"""Readiness that says which dependency is down, cheap enough to poll every second.

Every check runs at once, each in a thread of its own, and gets `timeout` seconds: a
hung database or a black-holed broker answers "down: no answer" instead of holding the
probe. A check still hanging from an earlier probe is not started again (no pile-up of
threads). The answer is kept for `ttl` seconds, so a burst of probes costs one round.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait

from imgress.service import ImageService

Check = Callable[[], None]


class Readiness:
    def __init__(self, checks: Mapping[str, Check], timeout: float = 1.0, ttl: float = 1.0):
        self.checks, self.timeout, self.ttl = dict(checks), timeout, ttl
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._at = -1e9
        self._last: dict[str, str] = {}

    def __call__(self) -> dict[str, str]:
        """{name: "ok" | "down: why"}; blocking, at most about `timeout` seconds."""
        with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return self._last
            for name, check in self.checks.items():
                running = self._running.get(name)
                if running is None or running.done():
                    self._running[name] = _start(name, check)
            wait(self._running.values(), timeout=self.timeout)
            self._last = {name: _verdict(f, self.timeout) for name, f in self._running.items()}
            self._at = time.monotonic()
            return self._last


def _start(name: str, check: Check) -> Future[None]:
    """A daemon thread per check: one that hangs must not hold up the process's exit
    (a ThreadPoolExecutor's threads are joined at exit)."""
    future: Future[None] = Future()

    def run() -> None:
        try:
            check()
            future.set_result(None)
        except BaseException as exc:  # handed to the probe, which reports it
            future.set_exception(exc)

    threading.Thread(target=run, name=f"imgress-ready-{name}", daemon=True).start()
    return future


def _verdict(future: Future[None], timeout: float) -> str:
    if not future.done():
        return f"down: no answer within {timeout:g} s"
    exc = future.exception()
    if exc is None:
        return "ok"
    if isinstance(exc, FileNotFoundError):  # the storage probe object need not exist
        return "ok"
    return f"down: {type(exc).__name__}"  # the type only: messages can carry hosts, users


def service_checks(svc: ImageService) -> dict[str, Check]:
    """The checks for one service: database, storage, queue (broker or worker threads)."""
    return {"database": lambda: _database(svc), "storage": lambda: _storage(svc),
            "queue": svc.dispatcher.ping}


def _database(svc: ImageService) -> None:
    engine = svc.repo.engine
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        # Pooled connections keep a moved or deleted file open and go on answering;
        # a fresh open finds out that the file is not where it should be.
        probe = sqlite3.connect(f"file:{engine.url.database}?mode=rw", uri=True, timeout=1)
        try:
            probe.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        finally:
            probe.close()
    svc.repo.ping()


def _storage(svc: ImageService) -> None:
    probe = getattr(svc.storage, "probe", None)  # S3: a no-retry, short-timeout client
    if probe is not None:
        probe()
    else:
        svc.storage.stat("health/ready-probe")
