"""The whole public test-image corpus through one real server (needs IMGRESS_CORPUS).

Every file is uploaded (in batches, one request each), every answer is 200 with one
created/duplicate/rejected item per file, every created image finishes (ready or failed,
never stuck), the server survives, and known files end as they must.
"""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, corpus_dir

BATCH = 40
FINISH_TIMEOUT = 180.0
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
TEXT_FILES = re.compile(r"^(LICENSE|README|MANIFEST|COPYING)([-.].*)?$", re.IGNORECASE)
MAX_PIXELS = 100_000_000  # the default IMGRESS_MAX_PIXELS
BOXES = {"thumb": (256, 256), "web": (1920, 1080)}  # the default variants

ORIENT = "exif-orientation-examples"
PILLOW = "Pillow/Tests/images"
LIBVIPS = "libvips/test/test-suite/images"


def corpus_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and not TEXT_FILES.match(p.name)
    )


class Outcomes:
    """Per corpus file: the upload item and (once finished) the image record."""

    def __init__(self, server: Server, root: Path, files: list[str]):
        self.server, self.root, self.files = server, root, files
        self.items: dict[str, dict] = {}
        self.records: dict[str, dict] = {}  # image id -> record
        self.upload_seconds = 0.0
        self.finish_seconds = 0.0

    def record(self, rel: str) -> dict | None:
        item = self.items[rel]
        return self.records[item["image"]["id"]] if item["image"] else None

    def outcome(self, rel: str) -> str:
        item = self.items[rel]
        if item["status"] == "rejected":
            return f"rejected:{item['error']['code']}"
        record = self.record(rel)
        assert record is not None
        if record["status"] == "failed":
            return f"{item['status']}->failed:{record['error']['code']}"
        return f"{item['status']}->{record['status']}"

    def summary(self) -> str:
        counts = Counter(self.outcome(rel) for rel in self.files)
        lines = [f"corpus: {len(self.files)} files, upload {self.upload_seconds:.1f}s, "
                 f"processing done {self.finish_seconds:.1f}s after the last upload"]
        lines += [f"  {n:4d}  {what}" for what, n in sorted(counts.items(), key=lambda x: -x[1])]
        return "\n".join(lines)


def batches(files: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(files), BATCH):
        yield files[i:i + BATCH]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcomes]:
    root = corpus_dir()
    if root is None:
        pytest.skip("IMGRESS_CORPUS not set: the corpus tests need the test-image corpus")
    files = corpus_files(root)
    srv = Server(tmp_path_factory.mktemp("corpus") / "data").start()
    try:
        outcomes = Outcomes(srv, root, files)
        started = time.monotonic()
        with srv.client() as c:
            for batch in batches(files):
                parts = [("files", (rel, (root / rel).read_bytes(), "application/octet-stream"))
                         for rel in batch]
                r = c.post("/v1/images", files=parts)
                assert r.status_code == 200, f"batch starting {batch[0]}: {r.status_code} {r.text}"
                items = r.json()["items"]
                assert len(items) == len(batch), (batch[0], len(items))
                outcomes.items.update(zip(batch, items, strict=True))
        outcomes.upload_seconds = time.monotonic() - started
        started = time.monotonic()
        outcomes.records = wait_all_finished(srv, started + FINISH_TIMEOUT)
        outcomes.finish_seconds = time.monotonic() - started
        yield outcomes
    finally:
        srv.stop()


def wait_all_finished(srv: Server, deadline: float) -> dict[str, dict]:
    """Every record, once none is pending or processing (one listing per poll)."""
    with srv.client() as c:
        while True:
            records, cursor = {}, None
            while True:
                params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
                r = c.get("/v1/images", params=params)
                assert r.status_code == 200, r.text
                page = r.json()
                records.update((rec["id"], rec) for rec in page["items"])
                if not (cursor := page["next_cursor"]):
                    break
            stuck = {i: rec["status"] for i, rec in records.items()
                     if rec["status"] not in ("ready", "failed")}
            if not stuck:
                return records
            if time.monotonic() > deadline:
                names = [records[i]["filename"] for i in list(stuck)[:20]]
                raise AssertionError(f"{len(stuck)} images never finished, e.g. {names}; "
                                     f"server alive: {srv.proc.poll() is None}")
            time.sleep(0.5)


def fetch(srv: Server, url: str) -> bytes:
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        r = c.get(url)
        assert r.status_code == 200, (url, r.status_code)
        return r.content


def decoded_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size


# -- the whole corpus -------------------------------------------------------------------


def test_every_file_gets_an_answer(corpus: Outcomes, capsys: pytest.CaptureFixture):
    with capsys.disabled():
        print("\n" + corpus.summary())
    assert set(corpus.items) == set(corpus.files)
    assert len(corpus.files) > 600  # all six folders
    assert {rel.split("/")[0] for rel in corpus.files} == {
        ORIENT, "Pillow", "libvips", "image-rs", "libjpeg-turbo", "imgproxy"}
    for rel, item in corpus.items.items():
        assert item["status"] in ("created", "duplicate", "rejected"), (rel, item)
        if item["status"] == "rejected":
            assert item["image"] is None, (rel, item)
            assert SNAKE.match(item["error"]["code"]), (rel, item)
            assert item["error"]["message"], (rel, item)
        else:
            assert item["error"] is None, (rel, item)
            assert item["image"]["size"] == (corpus.root / rel).stat().st_size, rel
    statuses = Counter(item["status"] for item in corpus.items.values())
    assert statuses["created"] > 300, corpus.summary()
    assert statuses["rejected"] > 20, corpus.summary()


def test_every_created_image_finished(corpus: Outcomes):
    created = {item["image"]["id"] for item in corpus.items.values()
               if item["status"] == "created"}
    assert created <= set(corpus.records), "created images missing from the listing"
    assert len(corpus.records) == len(created), "records that no upload item created"
    for rec in corpus.records.values():
        assert rec["status"] in ("ready", "failed"), rec
        if rec["status"] == "failed":
            assert SNAKE.match(rec["error"]["code"]), rec
            assert rec["error"]["code"] != "internal_error", (
                f"processing crashed on {rec['filename']}: {rec['error']}")
            assert rec["variants"] == {}, rec
    ready = [r for r in corpus.records.values() if r["status"] == "ready"]
    assert len(ready) > 300, corpus.summary()


def test_duplicates_point_at_an_existing_record(corpus: Outcomes):
    for rel, item in corpus.items.items():
        if item["status"] == "duplicate":
            assert item["image"]["id"] in corpus.records, rel
            data = (corpus.root / rel).read_bytes()
            first = next(other for other, i in corpus.items.items()
                         if i["status"] == "created" and i["image"]["id"] == item["image"]["id"])
            assert (corpus.root / first).read_bytes() == data, (rel, first)


def test_ready_images_are_sane(corpus: Outcomes):
    for rec in corpus.records.values():
        if rec["status"] != "ready":
            continue
        assert 0 < rec["width"] * rec["height"] <= MAX_PIXELS, rec
        assert set(rec["variants"]) >= set(BOXES), rec
        for name, (box_w, box_h) in BOXES.items():
            v = rec["variants"][name]
            assert 0 < v["width"] <= box_w and 0 < v["height"] <= box_h, (rec["filename"], v)
            assert v["url"] == f"/i/{rec['sha256']}/{name}", v


def test_server_survived(corpus: Outcomes):
    srv = corpus.server
    assert srv.proc is not None and srv.proc.poll() is None, srv.log()[-3000:]
    with srv.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
    spool = [p for p in (srv.data_dir / "storage" / ".spool").rglob("*")]
    assert spool == [], spool


# -- known files ---------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 9))
def test_exif_landscape_is_landscape(corpus: Outcomes, n: int):
    rec = corpus.record(f"{ORIENT}/Landscape_{n}.jpg")
    assert rec is not None and rec["status"] == "ready", (rec or {}).get("error")
    assert rec["width"] > rec["height"], rec
    assert rec["orientation"]["exif"] == n, rec["orientation"]
    web = rec["variants"]["web"]
    assert web["width"] > web["height"], web
    assert decoded_size(fetch(corpus.server, web["url"])) == (web["width"], web["height"])


@pytest.mark.parametrize("n", range(1, 9))
def test_exif_portrait_is_portrait(corpus: Outcomes, n: int):
    rec = corpus.record(f"{ORIENT}/Portrait_{n}.jpg")
    assert rec is not None and rec["status"] == "ready", (rec or {}).get("error")
    assert rec["height"] > rec["width"], rec
    assert rec["orientation"]["exif"] == n, rec["orientation"]
    web = rec["variants"]["web"]
    assert web["height"] > web["width"], web
    assert decoded_size(fetch(corpus.server, web["url"])) == (web["width"], web["height"])


def test_gps_is_stripped_from_variants(corpus: Outcomes):
    from PIL import Image

    rel = f"{PILLOW}/exif_gps.jpg"
    with Image.open(corpus.root / rel) as original:  # the fixture really has GPS
        assert original.getexif().get_ifd(0x8825), "corpus file lost its GPS IFD"
    rec = corpus.record(rel)
    assert rec is not None and rec["status"] == "ready", (corpus.outcome(rel), rec)
    for name in BOXES:
        data = fetch(corpus.server, rec["variants"][name]["url"])
        with Image.open(io.BytesIO(data)) as im:
            assert len(im.getexif()) == 0, (name, dict(im.getexif()))
            assert "exif" not in im.info and "xmp" not in im.info, (name, list(im.info))
        assert b"Exif\x00\x00" not in data and b"EXIF" not in data, name


@pytest.mark.parametrize("rel", [f"{PILLOW}/truncated_jpeg.jpg", f"{LIBVIPS}/truncated.jpg"])
def test_truncated_files_rejected(corpus: Outcomes, rel: str):
    item = corpus.items[rel]
    assert item["status"] == "rejected", (rel, corpus.outcome(rel), item)
    assert item["error"]["code"] in ("truncated_image", "corrupt_image"), item


@pytest.mark.parametrize("rel", [f"{PILLOW}/decompression_bomb.gif",
                                 f"{PILLOW}/decompression_bomb.ico",
                                 f"{LIBVIPS}/17000x17000.avif"])
def test_decompression_bombs_never_ready(corpus: Outcomes, rel: str):
    item = corpus.items[rel]
    if item["status"] == "rejected":
        assert SNAKE.match(item["error"]["code"]), item
        return
    rec = corpus.record(rel)
    assert rec is not None and rec["status"] == "failed", (rel, corpus.outcome(rel), rec)


def test_17000x17000_avif_refused_for_its_pixels(corpus: Outcomes):
    """libvips reads this header (17000x17000 = 289 Mpx > the 100 Mpx default limit)."""
    item = corpus.items[f"{LIBVIPS}/17000x17000.avif"]
    assert item["status"] == "rejected", item
    assert item["error"]["code"] == "too_many_pixels", item


def test_heif_without_a_decoder_is_refused_at_upload(corpus: Outcomes):
    """An HEVC-coded HEIF: refused at once when this libvips cannot decode HEVC, else
    processed like any image. Never accepted and then failed."""
    import pyvips

    rel = f"{PILLOW}/avif/hopper.heif"
    item = corpus.items[rel]
    try:
        pyvips.Image.new_from_file(str(corpus.root / rel)).crop(0, 0, 1, 1).avg()
        decodable = True
    except pyvips.Error:
        decodable = False
    if decodable:
        rec = corpus.record(rel)
        assert rec is not None and rec["status"] == "ready", (rel, rec)
    else:
        assert item["status"] == "rejected", item
        assert item["error"]["code"] == "unsupported_codec", item
