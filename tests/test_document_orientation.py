"""Documents judged by Tesseract's OSD (the real binary), photos still by the model, and
every way Tesseract can fail falling back to the model."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips

from conftest import Server, corpus_dir, make_jpeg, upload
from imgress.app import make_detector, make_pipeline
from imgress.config import load_settings
from imgress.imaging import document_orientation as docs
from imgress.imaging import orientation
from imgress.imaging.document_orientation import DocumentFirst, looks_like_text
from imgress.imaging.orientation import Detection
from test_orientation import TURNS

PARAGRAPHS = (
    "The committee met on Tuesday to review the annual budget and the plans for the new "
    "library building. Several members raised concerns about the cost of heating during "
    "the winter months, and asked the treasurer to prepare a more detailed estimate.",
    "In the second part of the meeting, the chair presented a report on the volunteer "
    "programme. More than forty people have signed up since the spring, most of them "
    "students from the nearby college.",
    "Please note that the car park will be closed for resurfacing from the twelfth to the "
    "nineteenth of September. Visitors are asked to use the public car park on Station "
    "Road during that week.",
    "Invoices received after the end of the month will be paid in the following period. "
    "Suppliers who have not yet registered with the new accounting system should contact "
    "the office as soon as possible.",
)


def page(dpi: int = 150, font: str = "DejaVu Serif 11", dark: bool = False) -> pyvips.Image:
    """An A4 page of black-on-white prose (or light on dark, as a dark-mode screen)."""
    width, height, margin = int(8.27 * dpi), int(11.69 * dpi), dpi
    text = "<b>Minutes of the meeting</b>\n\n" + "\n\n".join(PARAGRAPHS)
    ink = pyvips.Image.text(text, font=font, dpi=dpi, width=width - 2 * margin)
    paper = (255 - ink).embed(margin, margin, width, height, extend="white")
    if dark:
        paper = 255 - paper
    return paper.cast("uchar").copy(interpretation="b-w").copy_memory()


def screenshot() -> pyvips.Image:
    """A 1280x860 window: grey title bar, sidebar, 96 dpi sans-serif text, in colour."""
    body = 255 - pyvips.Image.text("\n\n".join(PARAGRAPHS), font="DejaVu Sans 10", dpi=96,
                                   width=880)
    win = (pyvips.Image.black(1280, 860) + 248).draw_rect(70, 0, 0, 1280, 44, fill=True)
    win = win.draw_rect(232, 0, 44, 250, 816, fill=True).insert(body, 300, 80)
    return win.cast("uchar").bandjoin([win, win]).copy(interpretation="srgb").copy_memory()


class Refuse:
    """A fallback that says whether it was asked: proves who answered."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: pyvips.Image) -> Detection | None:
        self.calls += 1
        return Detection(0, 0.5)


def _corpus() -> Path:
    root = corpus_dir()
    if root is None:
        pytest.skip("IMGRESS_CORPUS not set: these tests judge photos of the test corpus")
    return root


@pytest.mark.parametrize("kind", ["page", "dark", "screenshot", "pipeline base"])
def test_turned_documents_are_read_by_tesseract(tesseract: str, kind: str) -> None:
    if kind == "screenshot":
        upright = screenshot()
    elif kind == "pipeline base":  # a 300 dpi scan, shrunk into the default 1920x1080 box
        upright = page(300, "DejaVu Sans 10").thumbnail_image(1920, height=1080).copy_memory()
    else:
        upright = page(dark=kind == "dark")
    fallback = Refuse()
    detect = DocumentFirst(fallback)
    for turn, want in TURNS:
        image = upright.rot(turn) if turn else upright
        assert looks_like_text(image), turn
        found = detect(image)
        assert found is not None and found.angle == want, (turn, found)
        assert 0.97 <= found.confidence <= 1.0
    assert fallback.calls == 0  # every answer was Tesseract's


def test_turned_document_file(tesseract: str, tmp_path: Path) -> None:
    """detect_file (POST /v1/orientation, scale-out) decodes the page again, bigger."""
    path = tmp_path / "scan.jpg"
    page(200).rot("d90").jpegsave(str(path), Q=80)
    found = DocumentFirst(Refuse()).detect_file(path)
    assert found is not None and found.angle == 270 and found.confidence >= 0.97


def test_photos_still_go_to_the_model() -> None:
    """The gate turns photos away before Tesseract, so the model's answer is unchanged,
    from an image and from a file."""
    from test_orientation import PHOTOS

    root = _corpus()
    detect = DocumentFirst(orientation.detect, binary="/nonexistent/tesseract")
    for rel in PHOTOS:
        image = pyvips.Image.thumbnail(str(root / rel), 1024).copy_memory()
        assert not looks_like_text(image), rel
        assert detect(image) == orientation.detect(image), rel
        assert detect.detect_file(root / rel) == orientation.detect_file(root / rel), rel


def test_blank_tiny_and_odd_images_give_a_defined_answer(tesseract: str) -> None:
    blank = (pyvips.Image.black(1240, 1754) + 255).cast("uchar").copy(interpretation="b-w")
    assert docs.read_orientation(blank) is None  # Tesseract: "Too few characters"
    assert docs.read_orientation(page().crop(0, 0, 300, 300)) is None  # under MIN_OSD_SIDE
    detect = DocumentFirst(orientation.detect)
    assert detect(blank) is None  # the model: a single colour has no up
    assert detect(pyvips.Image.black(20, 20).cast("uchar")) is None
    line = (255 - pyvips.Image.text("Just one short line", dpi=150)).embed(
        100, 100, 1200, 900, extend="white").cast("uchar").copy(interpretation="b-w")
    found = detect(line)  # too little text for OSD: the model answers, or nobody
    assert found is None or (found.angle in orientation.ANGLES and found.confidence <= 1)
    rng = np.random.default_rng(0)
    odd = {
        "grey16": pyvips.Image.new_from_array(rng.integers(0, 65535, (600, 800), np.uint16)
                                              ).copy(interpretation="grey16"),
        "cmyk": pyvips.Image.new_from_array(rng.integers(0, 255, (600, 800, 4), np.uint8)
                                            ).copy(interpretation="cmyk"),
        "rgba": page().bandjoin([page(), page(), page()]).copy(interpretation="srgb"),
    }
    for name, image in odd.items():
        found = detect(image)
        assert found is None or found.angle in orientation.ANGLES, name


def _fake_tesseract(tmp_path: Path, body: str) -> str:
    path = tmp_path / "tesseract"
    path.write_text(f"#!/bin/sh\ncat > /dev/null\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("body", [
    "echo 'Error during processing.' >&2; exit 1",  # crashed
    "exec sleep 30",  # hung: killed at the timeout
    "printf 'Rotate: 90\\nOrientation confidence: 3.10\\n'",  # unsure
    "printf 'Rotate: 45\\nOrientation confidence: 30.0\\n'",  # nonsense
    "echo",  # said nothing
])
def test_tesseract_failures_fall_back_to_the_model(tmp_path: Path, body: str) -> None:
    fallback = Refuse()
    detect = DocumentFirst(fallback, binary=_fake_tesseract(tmp_path, body), timeout=1.0)
    started = time.monotonic()
    assert detect(page().rot("d90")) == Detection(0, 0.5)
    assert fallback.calls == 1 and time.monotonic() - started < 10


def test_missing_tesseract_falls_back_and_is_not_offered(tmp_path: Path) -> None:
    fallback = Refuse()
    assert DocumentFirst(fallback, binary=str(tmp_path / "none"))(page()) == Detection(0, 0.5)
    assert docs.tesseract_version(str(tmp_path / "none")) is None
    no_osd = _fake_tesseract(tmp_path, "echo 'List of available languages (1):'; echo eng")
    assert docs.tesseract_version(no_osd) is None


def test_app_wires_documents_only_when_on_and_installed(tesseract: str, tmp_path: Path
                                                        ) -> None:
    on = load_settings(data_dir=tmp_path)
    off = load_settings(data_dir=tmp_path, orientation_documents=False)
    detect, _, tag = make_detector(on)
    assert isinstance(detect, DocumentFirst) and tag.endswith(f"+{docs.TAG}-{tesseract}")
    assert make_detector(off)[:2] == (orientation.detect, orientation.detect_file)
    preset = on.presets[0]  # a new policy renders again rather than reuse old variants
    assert make_pipeline(on).fingerprint(preset) != make_pipeline(off).fingerprint(preset)


def test_server_turns_a_sideways_page_and_endpoint_reads_it(tesseract: str, tmp_path: Path
                                                            ) -> None:
    sideways = page(150).rot("d270").pngsave_buffer()
    srv = Server(tmp_path / "data", IMGRESS_ORIENTATION_THRESHOLD="0.95").start()
    try:
        with srv.client() as c:
            items = upload(c, ("scan.png", sideways), ("photo.jpg", make_jpeg(64, 48))
                           ).json()["items"]
            r = c.post("/v1/orientation", files={"file": ("scan.png", io.BytesIO(sideways),
                                                          "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["detected_angle"] == 90 and r.json()["confidence"] >= 0.97
        scan, photo = srv.wait_finished([i["image"]["id"] for i in items])
    finally:
        srv.stop()
    assert scan["status"] == photo["status"] == "ready"
    assert scan["orientation"]["detected_angle"] == 90 and scan["orientation"]["applied"]
    thumb = scan["variants"]["thumb"]
    assert thumb["width"] < thumb["height"]  # the page stands upright again
