"""The web page end to end: a real browser (Debian's chromium, driven by Playwright)
against a real `imgress serve`. Also saves the screenshots in docs/screenshots/."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import KEY, Server, services_required

CHROMIUM = os.environ.get("IMGRESS_CHROMIUM", "/usr/bin/chromium")
# IMGRESS_SCREENSHOTS=docs/screenshots refreshes the README's pictures (off by default,
# so a test run leaves the work tree as it was).
SHOTS = Path(os.environ["IMGRESS_SCREENSHOTS"]) if os.environ.get("IMGRESS_SCREENSHOTS") else None
TIMEOUT = 60_000


def _playwright():  # type: ignore[no-untyped-def]
    missing = None
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing:
        if services_required():
            raise RuntimeError(missing)
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with _playwright()() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Loopback is allowed so the URL form can fetch from a local origin in the test.
    srv = Server(tmp_path_factory.mktemp("web") / "data",
                 IMGRESS_DOWNLOAD_ALLOW_PRIVATE="true").start()
    yield srv
    srv.stop()


class Page:
    """A page with the key in localStorage, collecting console errors and CSP reports."""

    def __init__(self, browser, server: Server, key: str | None = KEY):  # type: ignore[no-untyped-def]
        self.context = browser.new_context(viewport={"width": 1280, "height": 860},
                                           accept_downloads=True)
        if key is not None:
            self.context.add_init_script(
                f"localStorage.setItem('imgress-key', {json.dumps(key)})")
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" and "401" not in m.text else None)
        self.server = server
        self.response = self.page.goto(server.base_url + "/")

    def close(self) -> None:
        self.context.close()
        assert not [e for e in self.errors if "Content Security Policy" in e or "pageerror" in e], \
            self.errors

    def cards(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#gallery .card")

    def wait_ready(self, count: int) -> None:
        """Every card shows its thumbnail (loaded) and a ready badge."""
        self.page.wait_for_function(
            """n => {
                const cards = [...document.querySelectorAll('#gallery .card')];
                return cards.length >= n && cards.every(c =>
                    c.querySelector('.badge.ready') && c.querySelector('img')?.complete
                    && c.querySelector('img').naturalWidth > 0);
            }""", arg=count, timeout=TIMEOUT)

    def shot(self, name: str) -> None:
        from PIL import Image

        if SHOTS is None:
            return
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)  # small in git


def photos(folder: Path, count: int, start: int = 0, size: tuple[int, int] = (480, 360)
           ) -> list[Path]:
    """Distinct photos with some noise (so they have a realistic size to upload)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(start, start + count):
        noise = Image.effect_noise(size, 60).convert("RGB")
        tint = Image.new("RGB", size, ((n * 53) % 256, (n * 97) % 256, (n * 151) % 256))
        img = Image.blend(tint, noise, 0.3)
        ImageDraw.Draw(img).ellipse((40 + n % 7 * 20, 30, 260, 250), fill=(250, 240, 200))
        path = folder / f"IMG_{n:04d}.jpg"
        img.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def throttle(page, bytes_per_second: int) -> None:  # type: ignore[no-untyped-def]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1,
        "uploadThroughput": bytes_per_second})


# -- scenarios, in order: they share one server --------------------------------------------


def test_page_is_served_with_a_strict_csp(browser, web_server: Server) -> None:
    p = Page(browser, web_server)
    csp = p.response.headers["content-security-policy"]
    for part in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                 "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert part in csp
    p.page.wait_for_selector("#gallery-empty:not([hidden])")
    assert p.page.locator("#key-status").inner_text() == "API key set"
    p.shot("empty")
    p.close()


def test_upload_thirty_photos_then_reload(browser, web_server: Server, tmp_path: Path) -> None:
    files = photos(tmp_path / "photos", 30)
    p = Page(browser, web_server)
    p.page.wait_for_selector("#gallery-empty:not([hidden])")
    throttle(p.page, 1_500_000)  # slow enough to see the bars move
    started = time.monotonic()
    p.page.set_input_files("#files", [str(f) for f in files])
    p.page.wait_for_function(
        "() => { const b = document.querySelector('#total-progress');"
        " return b.value > b.max * 0.3 && b.value < b.max * 0.8; }", timeout=TIMEOUT)
    p.shot("uploading")
    assert p.page.locator("#active .file progress").count() >= 1
    p.wait_ready(30)
    elapsed = time.monotonic() - started
    assert p.cards().count() == 30
    text = p.page.locator("#total-text").inner_text()
    assert "30 of 30 files done" in text and "30 created" in text, text
    assert p.page.locator("#problems-box").is_hidden()

    p.page.reload()
    p.wait_ready(30)
    names = p.page.locator("#gallery .card .name").all_inner_texts()
    assert sorted(names) == sorted(f.name for f in files)
    p.close()
    print(f"30 photos uploaded and processed through the page in {elapsed:.1f} s")


def test_rejected_file_shows_the_servers_reason(browser, web_server: Server,
                                                tmp_path: Path) -> None:
    good = photos(tmp_path / "more", 3, start=100)
    bad = tmp_path / "more" / "notes.jpg"
    bad.write_text("this is not a picture\n" * 20)
    truncated = tmp_path / "more" / "cut.jpg"
    truncated.write_bytes(good[0].read_bytes()[:300])
    reason = _commit_reason(web_server, bad.read_bytes())

    p = Page(browser, web_server)
    p.wait_ready(30)
    p.page.set_input_files("#files", [str(f) for f in [good[0], bad, good[1], good[2]]])
    row = p.page.locator("#problems .file", has_text="notes.jpg")
    row.wait_for()
    assert f"Rejected: {reason}" in row.inner_text()
    assert row.locator("button.retry").count() == 0  # the server said no: nothing to retry
    p.wait_ready(33)
    assert p.cards().count() == 33
    p.close()


def _commit_reason(server: Server, data: bytes) -> str:
    """What the server says about these bytes, asked directly (the page must show it)."""
    import httpx

    with server.client() as c:
        slot = c.post("/v1/uploads", json={"files": [
            {"filename": "probe.jpg", "size": len(data), "content_type": "image/jpeg"}]}
        ).json()["uploads"][0]
        put = httpx.put(slot["url"], content=data, headers=slot["headers"])
        if put.status_code >= 400:
            return put.json()["error"]["message"]
        item = c.post("/v1/uploads/commit", json={"upload_ids": [slot["upload_id"]]}
                      ).json()["items"][0]
        assert item["status"] == "rejected", item
        return item["error"]["message"]


def test_drop_files_on_the_page(browser, web_server: Server) -> None:
    p = Page(browser, web_server)
    p.wait_ready(33)
    from conftest import make_jpeg

    payload = [list(make_jpeg(80, 60, seed=200 + n)) for n in range(2)]
    p.page.evaluate("""payload => {
        const dt = new DataTransfer();
        payload.forEach((bytes, n) => dt.items.add(
            new File([new Uint8Array(bytes)], `dropped-${n}.jpg`, {type: 'image/jpeg'})));
        const zone = document.querySelector('#drop');
        zone.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", payload)
    p.wait_ready(35)
    assert p.page.locator("#gallery .card .name", has_text="dropped-1.jpg").count() == 1
    p.close()


def test_select_five_and_download_the_zip(browser, web_server: Server, tmp_path: Path) -> None:
    p = Page(browser, web_server)
    p.wait_ready(35)
    picks = p.page.locator("#gallery .card .pick")
    picks.nth(1).click()
    picks.nth(4).click(modifiers=["Shift"])  # a range: cards 1..4
    p.page.locator("#gallery .card .thumb").nth(6).focus()
    p.page.keyboard.press("Space")  # and one more from the keyboard
    assert p.page.locator("#gallery .card.selected").count() == 5
    expected = p.page.locator("#gallery .card.selected .name").all_inner_texts()
    p.shot("gallery-selection")

    p.page.locator("#gallery .card", has_text="IMG_0005.jpg").locator(".thumb").click()
    dialog = p.page.locator("#detail")
    dialog.wait_for(state="visible")
    p.page.wait_for_function(
        "() => { const i = document.querySelector('#detail .picture img');"
        " return i && i.complete && i.naturalWidth > 0; }")
    info = dialog.locator("dl").inner_text()
    assert "480 \u00d7 360 px" in info and "EXIF orientation" in info and "Rotation applied" in info
    assert "/web" in dialog.locator(".picture img").get_attribute("src")
    p.shot("detail")
    p.page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    with p.page.expect_download(timeout=TIMEOUT) as info_dl:
        p.page.locator("#download-selected").click()
    download = info_dl.value
    path = tmp_path / "selected.zip"
    download.save_as(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert sorted(names) == sorted(expected)
        for name in names:
            assert z.read(name)[:2] == b"\xff\xd8"
    status = p.page.locator("#downloads .download .status").first
    assert "Ready: 5 files" in status.inner_text()
    p.close()


class SlowOrigin:
    """A plain HTTP origin on loopback whose files come slowly (to watch progress)."""

    def __init__(self, files: dict[str, bytes], delay: float):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                time.sleep(origin.delay)
                body = origin.files.get(self.path.lstrip("/"))
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "image/jpeg" if body else "text/plain")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.files, self.delay = files, delay
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_urls_into_a_zip(browser, web_server: Server, tmp_path: Path) -> None:
    files = {p.name: p.read_bytes() for p in photos(tmp_path / "remote", 12, start=300)}
    origin = SlowOrigin(files, delay=0.6)
    try:
        p = Page(browser, web_server)
        p.wait_ready(35)
        p.page.locator("#url-toggle").click()
        lines = [f"{origin.url}/{name}" for name in files] + [f"{origin.url}/missing.jpg"]
        p.page.locator("#urls").fill("\n".join(lines))
        p.page.locator("#zip-name").fill("from-the-web")
        with p.page.expect_download(timeout=TIMEOUT) as info_dl:
            p.page.locator("#url-form button[type=submit]").click()
            p.page.wait_for_function(
                "() => { const b = document.querySelector('#downloads progress');"
                " return b && b.value >= 3 && b.value < b.max; }")
            p.shot("download-progress")
        path = tmp_path / "urls.zip"
        info_dl.value.save_as(path)
        assert info_dl.value.suggested_filename.startswith("from-the-web")
        with zipfile.ZipFile(path) as z:
            assert sorted(z.namelist()) == sorted([*files, "errors.txt"])
            assert b"missing.jpg" in z.read("errors.txt")
        row = p.page.locator("#downloads .download").first
        assert "1 could not be fetched" in row.locator(".status").inner_text()
        assert "missing.jpg" in row.locator(".problems").inner_text()
        # A line that is not an address is refused before anything is sent.
        p.page.locator("#urls").fill("ftp://example.com/x.jpg")
        p.page.locator("#url-form button[type=submit]").click()
        assert "Not an http(s) address" in p.page.locator("#url-error").inner_text()
        p.close()
    finally:
        origin.close()


def test_wrong_key_says_so_and_can_be_changed(browser, web_server: Server) -> None:
    p = Page(browser, web_server, key="igk_wrong-key-0000000000000000")
    alert = p.page.locator("#alert")
    alert.wait_for(state="visible")
    assert "The API key was refused" in alert.inner_text()
    assert p.page.locator("#key-status").inner_text() == "API key refused"
    assert p.cards().count() == 0
    alert.get_by_role("button", name="Enter API key").click()
    p.page.locator("#key-input").fill(KEY)
    p.page.locator("#key-save").click()
    p.wait_ready(35)
    assert alert.is_hidden()
    assert p.page.evaluate("localStorage.getItem('imgress-key')") == KEY
    p.close()


def test_no_key_needed_when_auth_is_off(browser, tmp_path: Path) -> None:
    srv = Server(tmp_path / "open").start("--no-auth")
    try:
        p = Page(browser, srv, key=None)
        p.page.wait_for_selector("#gallery-empty:not([hidden])")
        assert p.page.locator("#key-status").inner_text() == "No key needed (auth is off)"
        assert p.page.locator("#alert").is_hidden()
        p.page.set_input_files("#files", [str(f) for f in photos(tmp_path / "p", 2)])
        p.wait_ready(2)
        p.close()
    finally:
        srv.stop()


def test_the_static_files_are_in_the_package() -> None:
    from importlib.resources import files

    web = files("imgress.web")
    for name in ("index.html", "app.js", "app.css", "api.js", "uploads.js", "upload-panel.js",
                 "gallery.js", "downloads.js", "ui.js"):
        assert web.joinpath(name).is_file(), name
    imports = io.StringIO(web.joinpath("app.js").read_text())
    for line in imports:
        if line.startswith("import"):
            module = line.rsplit("./", 1)[1].split('"')[0]
            assert web.joinpath(module).is_file(), module
