"""The fetcher: one URL at a time into a file, many at once under caps.

httpx (async) with one connection pool; a global and a per-host semaphore bound the
concurrency; redirects are followed by hand, one hop at a time, each hop checked by
the address guard again; network errors, 5xx and 429 are retried with exponential
backoff and full jitter (429/503 `Retry-After` honoured). Bodies stream to disk.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin

import httpx

from imgress.downloads.addresses import AddressRefused, Target, resolve
from imgress.errors import ImgressError
from imgress.limits import sniff_content_type

_MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}


class FetchFailed(ImgressError):
    """An item that cannot be fetched; recorded on the item, never raised to the job."""

    status, code = 422, "fetch_failed"


class _Retry(Exception):
    def __init__(self, reason: str, code: str, after: float | None = None):
        super().__init__(reason)
        self.reason, self.code, self.after = reason, code, after


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    concurrency: int = 16
    per_host: int = 8
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    item_timeout: float = 600.0
    max_item_bytes: int = 512 * 1024**2
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    allow_private: bool = False
    exempt: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Fetched:
    size: int
    content_type: str | None  # sniffed from the bytes, not the server's header
    final_url: str
    attempts: int


class ByteBudget:
    """The job's byte cap, shared by every item of the job."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise FetchFailed(f"the job passed its limit of {self.limit} bytes",
                              code="job_too_large", limit=self.limit)

    def give(self, count: int) -> None:
        self.used -= count


class Fetcher:
    """Owns the connection pool; use as `async with Fetcher(policy) as f`."""

    def __init__(self, policy: FetchPolicy,
                 sleep: Callable[[float], object] = asyncio.sleep):
        self.policy = policy
        self._sleep = sleep
        self._global = asyncio.Semaphore(policy.concurrency)
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(policy.per_host))
        self._client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout,
                                  pool=None),
            limits=httpx.Limits(max_connections=policy.concurrency,
                                max_keepalive_connections=policy.concurrency),
            headers={"User-Agent": "imgress-downloader/1", "Accept-Encoding": "identity"},
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, dest: Path, budget: ByteBudget) -> Fetched:
        """Fetch with retries; raise AddressRefused or FetchFailed with a reason."""
        policy = self.policy
        for attempt in range(1, policy.retries + 2):
            try:
                async with asyncio.timeout(policy.item_timeout):
                    return await self._follow(url, dest, budget, attempt)
            except TimeoutError:
                raise FetchFailed(f"no complete answer within {policy.item_timeout:g} s",
                                  code="timeout") from None
            except _Retry as retry:
                if attempt > policy.retries:
                    raise FetchFailed(f"{retry.reason} (gave up after {attempt} attempts)",
                                      code=retry.code) from None
                ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
                delay = retry.after if retry.after is not None else random.uniform(0, ceiling)
                await self._sleep(min(delay, policy.max_backoff))
        raise AssertionError("unreachable")

    async def _follow(self, url: str, dest: Path, budget: ByteBudget, attempt: int
                      ) -> Fetched:
        for _ in range(_MAX_REDIRECTS + 1):
            target = await resolve(url, allow_private=self.policy.allow_private,
                                   exempt=self.policy.exempt)
            async with self._global, self._hosts[target.host]:
                location = await self._get(target, dest, budget)
            if isinstance(location, Fetched):
                return Fetched(location.size, location.content_type, url, attempt)
            url = location
        raise FetchFailed(f"more than {_MAX_REDIRECTS} redirects", code="too_many_redirects")

    async def _get(self, target: Target, dest: Path, budget: ByteBudget) -> Fetched | str:
        request = self._client.build_request(
            "GET", target.connect_url, headers={"Host": target.host_header},
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})", "timeout") from None
        except httpx.TransportError as exc:
            raise _Retry(f"network error: {exc or type(exc).__name__}", "network_error") \
                from None
        try:
            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise FetchFailed(f"HTTP {status} without a Location", code="bad_redirect")
                return urljoin(target.url, location)
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}", f"http_{status}",
                             _retry_after(response.headers.get("retry-after")))
            if status != 200:
                raise FetchFailed(f"HTTP {status}", code=f"http_{status}")
            return await self._save(response, dest, budget)
        finally:
            await response.aclose()

    async def _save(self, response: httpx.Response, dest: Path, budget: ByteBudget
                    ) -> Fetched:
        cap = self.policy.max_item_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchFailed(f"the file is {declared} bytes, over the limit of {cap}",
                              code="too_large", limit=cap)
        size, head = 0, b""
        try:
            with dest.open("wb") as out:
                async for chunk in response.aiter_raw():  # as read: no re-chunking copies
                    size += len(chunk)
                    if size > cap:
                        raise FetchFailed(f"the body passed the limit of {cap} bytes",
                                          code="too_large", limit=cap)
                    budget.take(len(chunk))
                    if len(head) < 64:
                        head += chunk[:64]
                    out.write(chunk)
            if declared.isdigit() and size != int(declared):
                raise _Retry(f"got {size} of {declared} bytes", "short_body")
        except httpx.TimeoutException:
            budget.give(size)
            raise _Retry("timed out while reading the body", "timeout") from None
        except httpx.TransportError as exc:
            budget.give(size)
            raise _Retry(f"connection lost mid-body: {exc or type(exc).__name__}",
                         "network_error") from None
        except BaseException:
            budget.give(size)  # a retry or a failure must not count these bytes
            raise
        return Fetched(size, sniff_content_type(head), str(response.url), 1)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from imgress.models import utcnow

    return max(0.0, (moment - utcnow()).total_seconds())


__all__ = ["AddressRefused", "ByteBudget", "FetchFailed", "FetchPolicy", "Fetched",
           "Fetcher"]
