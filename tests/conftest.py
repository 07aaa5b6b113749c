"""Real servers over real HTTP: `imgress serve` in a subprocess with its own data dir."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from origin import Origin

KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `imgress serve` process; stop() and start() again keep the same data dir."""

    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "IMGRESS_API_KEYS": KEY, "IMGRESS_LOG_LEVEL": "info", **env}
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    def start(self, *extra: str) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgress", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), *extra],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, key: str | None = KEY, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kw)

    def wait_finished(self, image_ids: list[str], timeout: float = 60) -> list[dict]:
        with self.client() as c:
            deadline = time.monotonic() + timeout
            while True:
                answers = [c.get(f"/v1/images/{i}") for i in image_ids]
                limited = [a for a in answers if a.status_code == 429]
                records = [a.json() for a in answers]
                if not limited and all(r["status"] in ("ready", "failed") for r in records):
                    return records
                if time.monotonic() > deadline:
                    raise AssertionError(f"not finished: {[r.get('status') for r in records]}")
                # The server's rate limit counts these polls too: back off when told.
                time.sleep(float(limited[0].headers.get("retry-after", 1)) if limited else 0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("srv") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    """A loopback HTTP origin for batch downloads (tests/origin.py), one per module."""
    srv = Origin()
    srv.jpeg = make_jpeg(120, 80, seed=4242)
    yield srv
    srv.close()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()


def make_jpeg(width: int = 64, height: int = 48, seed: int = 0, exif_orientation: int | None = None,
              fmt: str = "JPEG") -> bytes:
    """A small photo-like image made with Pillow (only tests use Pillow)."""
    from PIL import Image

    img = Image.new("RGB", (width, height))
    px = img.load()
    for y in range(height):
        for x in range(width):
            px[x, y] = ((x * 4 + seed) % 256, (y * 4 + seed * 7) % 256, (x + y + seed * 13) % 256)
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def upload(client: httpx.Client, *files: tuple[str, bytes], **kw) -> httpx.Response:
    return client.post("/v1/images", files=[("files", (n, b, "image/jpeg")) for n, b in files],
                       **kw)


def corpus_dir() -> Path | None:
    value = os.environ.get("IMGRESS_CORPUS")
    if value and Path(value).is_dir():
        return Path(value)
    if os.environ.get("IMGRESS_REQUIRE_CORPUS"):
        raise RuntimeError("IMGRESS_REQUIRE_CORPUS is set but IMGRESS_CORPUS is not a folder")
    return None


PG_ADMIN_URL = os.environ.get("IMGRESS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def services_required() -> bool:
    """On CI every service-backed test must run: unreachable is a failure, not a skip."""
    return bool(os.environ.get("CI") or os.environ.get("IMGRESS_REQUIRE_SERVICES"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import secrets

    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if services_required():
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"imgress_t_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def tesseract() -> str:
    """Tesseract's version, for the tests that run it; skip when it (or its osd data) is
    not installed, fail on CI, where .ci/run installs it."""
    from imgress.imaging.document_orientation import tesseract_version

    version = tesseract_version()
    if version is None:
        missing = ("tesseract with its osd data is not installed "
                   "(apt-get install tesseract-ocr tesseract-ocr-osd)")
        if services_required():
            raise RuntimeError(missing)
        pytest.skip(missing)
    return version


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """A real S3 API server (moto's server mode) on loopback; its endpoint URL."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_bucket(moto_s3: str) -> str:
    import secrets

    import boto3

    name = f"imgress-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(Bucket=name)
    return name


class FlakyProxy:
    """Forwards to the server, but answers 503/429 to the first tries of each kind of
    request; the first commit is forwarded and its answer replaced by a 503, so the
    client retries a commit the server already made."""

    def __init__(self, target: str, failures: int = 2, always_fail: bool = False):
        self.target, self.failures, self.always_fail = target, failures, always_fail
        self.seen: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                kind = f"{self.command} {self.path.split('?')[0].rsplit('/', 1)[-1]}"
                kind = "PUT" if self.command == "PUT" else kind
                with proxy.lock:
                    proxy.seen[kind] += 1
                    tries = proxy.seen[kind]
                if proxy.always_fail or (tries <= proxy.failures and kind != "POST commit"):
                    code = 429 if tries % 2 else 503
                    self.send_response(code)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("content-length", "connection")}
                r = httpx.request(self.command, proxy.target + self.path, content=body,
                                  headers=headers, timeout=60)
                with proxy.lock:
                    proxy.forwarded[kind] += 1
                if kind == "POST commit" and tries == 1:
                    self.send_response(503)  # the server committed; the client must not know
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                length = r.headers.get("content-length", "0") if self.command == "HEAD" \
                    else str(len(r.content))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _relay

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


BROKER = os.environ.get("IMGRESS_TEST_REDIS", "redis://127.0.0.1:6379/7")


def empty_redis(url: str) -> str:
    """Flush a Redis database for one test; skip when Redis is away (fail on CI)."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.ConnectionError as exc:
        if services_required():
            raise
        pytest.skip(f"Redis not reachable at {url}: {exc}")
    return url


@pytest.fixture
def broker() -> str:
    """An emptied Redis database for Celery messages."""
    return empty_redis(BROKER)


def record_statements(engine) -> list[str]:  # type: ignore[no-untyped-def]
    """Every SQL statement the database is sent from now on."""
    from sqlalchemy import event

    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, stmt, *a: statements.append(stmt))
    return statements


def image_inserts(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("INSERT INTO IMAGES")]


def upload_concurrently(servers: list[Server], data: bytes, count: int) -> list[dict]:
    """The same file sent `count` times at once, spread over `servers`."""
    from concurrent.futures import ThreadPoolExecutor

    def send(n: int) -> dict:
        with servers[n % len(servers)].client() as c:
            r = upload(c, ("same.jpg", data))
            assert r.status_code == 200
            return r.json()["items"][0]

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def put_all(direct, slots: list[dict], datas: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Receive every slot's bytes in process, as the PUT handler would."""
    for slot, data in zip(slots, datas, strict=True):
        token = slot["url"].split("token=")[1]
        upload_, spool = direct.begin_put(slot["upload_id"], token, "image/jpeg")
        spool.write(data)
        direct.finish_put(upload_, spool)
