"""A real HTTP origin on loopback for batch-download tests, with the bad behaviours a
fetcher meets in the wild: 404s, flaky 5xx, 429 with Retry-After, redirects, a body
that drips one byte a second, an endless body, and latency."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def payload(name: str, size: int) -> bytes:
    """Deterministic bytes for /file/<name>?size=N (a JPEG signature first)."""
    seed = hashlib.sha256(name.encode()).digest()
    body = (seed * (size // len(seed) + 1))[:size]
    return b"\xff\xd8\xff\xe0" + body[4:] if size >= 4 else body


class Origin:
    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.hits: Counter[str] = Counter()
        self.jpeg: bytes = b""  # served by /jpeg/<name>; tests set it
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                origin.hits[parts.path] += 1
                if origin.latency:
                    time.sleep(origin.latency)
                kind, _, rest = parts.path.strip("/").partition("/")
                getattr(self, f"_{kind}", self._missing)(rest, query, origin.hits[parts.path])

            def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _missing(self, *_: object) -> None:
                self._send(404, b"no such thing")

            def _file(self, name: str, q: dict, _: int) -> None:
                self._send(200, payload(name, int(q.get("size", 1000))))

            def _jpeg(self, name: str, q: dict, _: int) -> None:
                self._send(200, origin.jpeg, Content_Type="image/jpeg")

            def _status(self, code: str, q: dict, _: int) -> None:
                self._send(int(code), b"status")

            def _flaky(self, name: str, q: dict, hit: int) -> None:
                if hit <= int(q.get("fail", 2)):
                    self._send(500, b"oops")
                else:
                    self._send(200, payload(name, 2000))

            def _busy(self, name: str, q: dict, hit: int) -> None:
                if hit == 1:
                    self._send(429, b"slow down", Retry_After="1")
                else:
                    self._send(200, payload(name, 2000))

            def _redirect(self, _: str, q: dict, __: int) -> None:
                self._send(302, b"", Location=q["to"])

            def _drip(self, *_: object) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _n in range(1000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass

            def _endless(self, *_: object) -> None:
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b"\0" * 65536
                try:
                    while True:
                        self.wfile.write(chunk)
                except OSError:
                    pass
                self.close_connection = True

            def _big(self, name: str, q: dict, _: int) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(10**12))
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
