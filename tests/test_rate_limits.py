"""Per-key rate limits: 429 with Retry-After; shared through Redis across servers."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Server, empty_redis

KEYS = "key-aaaa-0123456789,key-bbbb-0123456789"


def test_limit_per_key_with_retry_after(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", IMGRESS_API_KEYS=KEYS, IMGRESS_RATE_LIMIT="3/minute")
    srv.start()
    try:
        with srv.client(key="key-aaaa-0123456789") as a, \
                srv.client(key="key-bbbb-0123456789") as b:
            assert [a.get("/v1/images").status_code for _ in range(3)] == [200] * 3
            refused = a.get("/v1/images")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert b.get("/v1/images").status_code == 200  # another key is unaffected
            metrics = a.get("/metrics").text
        assert 'imgress_rate_limited_total{scope="api"} 1.0' in metrics
    finally:
        srv.stop()


def test_limit_holds_across_two_servers_through_redis(tmp_path: Path) -> None:
    url = empty_redis(os.environ.get("IMGRESS_TEST_REDIS_LIMITS", "redis://127.0.0.1:6379/8"))
    env = {"IMGRESS_API_KEYS": KEYS, "IMGRESS_RATE_LIMIT": "4/minute",
           "IMGRESS_RATE_LIMIT_STORAGE": url}
    one = Server(tmp_path / "one", **env).start()
    two = Server(tmp_path / "two", **env).start()
    try:
        with one.client(key="key-aaaa-0123456789") as c1, \
                two.client(key="key-aaaa-0123456789") as c2:
            codes = [c1.get("/v1/images").status_code, c2.get("/v1/images").status_code,
                     c1.get("/v1/images").status_code, c2.get("/v1/images").status_code,
                     c1.get("/v1/images").status_code]
        assert codes == [200, 200, 200, 200, 429]
    finally:
        one.stop()
        two.stop()
