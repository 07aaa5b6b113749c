"""Per-key rate limits with the `limits` library: in memory on the embedded default,
in Redis in scale-out so the limit holds across API servers."""

from __future__ import annotations

import math
import time

from limits import parse_many, storage, strategies

from imgress.errors import RateLimited


class RateLimiter:
    def __init__(self, spec: str, storage_url: str = "memory://"):
        self._limits = parse_many(spec) if spec else []
        self._strategy = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(storage_url))

    def check(self, owner: str, scope: str) -> None:
        """Count one request of `owner`; raise RateLimited with the wait in seconds."""
        for limit in self._limits:
            if not self._strategy.hit(limit, scope, owner):
                stats = self._strategy.get_window_stats(limit, scope, owner)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise RateLimited(f"more than {limit} for this key; retry in {wait} s",
                                  retry_after=wait)
