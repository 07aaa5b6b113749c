"""Rotation detection inside processing: the record reports it, variants are turned only
above the operator's threshold, and the switch turns it off."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import pyvips

from conftest import Server, corpus_dir, make_jpeg, upload

PHOTO = "exif-orientation-examples/Landscape_1.jpg"  # never trained on (bench/orientation.py)


def _turned_jpegs() -> tuple[bytes, bytes]:
    root = corpus_dir()
    if root is None:
        pytest.skip("IMGRESS_CORPUS not set: this test judges a photo of the test corpus")
    upright = pyvips.Image.thumbnail(str(root / PHOTO), 1200).copy_memory()
    assert upright.width > upright.height
    save = {"Q": 90, "keep": "none"}  # no EXIF: only the content can tell
    return (upright.jpegsave_buffer(**save), upright.rot("d90").jpegsave_buffer(**save))


def _process(srv: Server, *files: tuple[str, bytes]) -> list[dict]:
    with srv.client() as c:
        items = upload(c, *files).json()["items"]
    return srv.wait_finished([i["image"]["id"] for i in items])


def _thumb_size(srv: Server, record: dict) -> tuple[int, int]:
    data = httpx.get(srv.base_url + record["variants"]["thumb"]["url"]).content
    image = pyvips.Image.new_from_buffer(data, "")
    return image.width, image.height


def test_turned_photo_is_detected_and_its_variants_turned(tmp_path: Path) -> None:
    upright, turned = _turned_jpegs()
    srv = Server(tmp_path / "data", IMGRESS_ORIENTATION_THRESHOLD="0.5").start()
    try:
        straight, sideways, tiny = _process(
            srv, ("upright.jpg", upright), ("sideways.jpg", turned),
            ("tiny.jpg", make_jpeg(16, 16, seed=3)))
        assert straight["status"] == sideways["status"] == tiny["status"] == "ready"
        assert straight["orientation"] == {"exif": None, "applied": False,
                                           "detected_angle": 0,
                                           "confidence": straight["orientation"]["confidence"]}
        found = sideways["orientation"]
        assert found["detected_angle"] == 270 and found["applied"] is True
        assert 0.5 <= found["confidence"] <= 1
        assert sideways["width"] < sideways["height"]  # the record keeps the file's shape
        thumb_w, thumb_h = _thumb_size(srv, sideways)
        assert thumb_w > thumb_h  # ...but the variants are turned upright
        assert sideways["variants"]["thumb"]["width"] == thumb_w
        assert tiny["orientation"]["detected_angle"] is None
        assert tiny["orientation"]["applied"] is False
    finally:
        srv.stop()


def test_below_threshold_only_reports_and_switch_turns_it_off(tmp_path: Path) -> None:
    _, turned = _turned_jpegs()
    strict = Server(tmp_path / "strict", IMGRESS_ORIENTATION_THRESHOLD="1.0").start()
    try:
        (record,) = _process(strict, ("sideways.jpg", turned))
    finally:
        strict.stop()
    assert record["orientation"]["detected_angle"] == 270
    assert record["orientation"]["applied"] is False
    assert _thumb_size_from_record(record) == "portrait"

    off = Server(tmp_path / "off", IMGRESS_ORIENTATION_DETECT="false").start()
    try:
        (record,) = _process(off, ("sideways.jpg", turned))
    finally:
        off.stop()
    assert record["orientation"] == {"exif": None, "applied": False, "detected_angle": None,
                                     "confidence": None}
    assert _thumb_size_from_record(record) == "portrait"


def _thumb_size_from_record(record: dict) -> str:
    thumb = record["variants"]["thumb"]
    return "portrait" if thumb["width"] < thumb["height"] else "landscape"


def test_scale_out_runs_inference_on_its_own_queue(broker: str, tmp_path: Path) -> None:
    """With Celery, new images go to `imgress.orientation` first: a worker on that queue
    alone judges them (nothing rendered yet); a rendering worker then turns the variants."""
    from test_celery import start_worker, stop

    _, turned = _turned_jpegs()
    env = {"IMGRESS_ORIENTATION_THRESHOLD": "0.5"}
    srv = Server(tmp_path / "data", IMGRESS_BROKER_URL=broker, **env).start()
    inference = start_worker(srv.data_dir, tmp_path / "w1.log", "--queues", "orientation", **env)
    renderer = None
    try:
        with srv.client() as c:
            (item,) = upload(c, ("sideways.jpg", turned)).json()["items"]
            deadline = time.monotonic() + 60
            while (record := c.get(f"/v1/images/{item['image']['id']}").json())[
                    "orientation"]["detected_angle"] is None:
                assert time.monotonic() < deadline, (tmp_path / "w1.log").read_text()
                time.sleep(0.1)
        assert record["status"] == "pending" and record["variants"] == {}
        assert record["orientation"]["detected_angle"] == 270
        assert record["orientation"]["applied"] is False  # judged, not yet rendered
        renderer = start_worker(srv.data_dir, tmp_path / "w2.log", "--queues", "process", **env)
        (done,) = srv.wait_finished([record["id"]], timeout=90)
    finally:
        stop(inference)
        if renderer is not None:
            stop(renderer)
        srv.stop()
    assert done["status"] == "ready" and done["orientation"]["applied"] is True
    assert _thumb_size_from_record(done) == "landscape"


def test_inference_reuses_a_judgement_only_from_the_same_model(tmp_path: Path) -> None:
    """The inference task (scale-out) reuses an earlier judgement of the same bytes only
    when it came with variants of today's fingerprint (same model and threshold); after
    a model upgrade the same bytes are judged again, not given the old model's answer."""
    import hashlib

    from conftest import put_all
    from imgress.app import build_service
    from imgress.config import load_settings
    from imgress.db.migrate import upgrade
    from imgress.direct_uploads import DeclaredFile
    from imgress.imaging import orientation
    from imgress.imaging.pipeline import Pipeline
    from imgress.jobs.base import TASK_NAMES

    settings = load_settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    parts = build_service(settings)
    parts.dispatcher.start({name: lambda _id: None for name in TASK_NAMES})
    data = make_jpeg(320, 240, seed=77)
    judged: list[Path] = []

    def counted(path: Path):  # the real detector, counted
        judged.append(path)
        return orientation.detect_file(path)

    def uploaded(owner: str) -> str:
        declared = DeclaredFile("a.jpg", len(data), "image/jpeg", hashlib.sha256(data).hexdigest())
        slots = parts.direct.reserve(owner, [declared], "http://x")
        put_all(parts.direct, slots, [data])
        _, items = parts.direct.commit(owner, [slots[0]["upload_id"]], "req")
        return items[0]["image"]["id"]

    def model(tag: str) -> Pipeline:
        return Pipeline(settings.presets, settings.variant_format, settings.variant_quality,
                        detector=orientation.detect, detector_tag=tag, detect_file=counted)

    proc = parts.processor
    try:
        proc.pipeline = model("old")
        first = uploaded("a")
        proc.detect_orientation(first)
        proc.process_image(first)
        assert len(judged) == 1
        answer = parts.images.repo.get_image(first).orientation
        assert answer is not None and answer.angle in orientation.ANGLES

        second = uploaded("b")  # same bytes, same model: the answer is reused
        proc.detect_orientation(second)
        assert len(judged) == 1
        assert parts.images.repo.get_image(second).orientation == answer

        proc.pipeline = model("new")  # an upgraded model judges again
        third = uploaded("c")
        proc.detect_orientation(third)
        assert len(judged) == 2
    finally:
        parts.dispatcher.stop()
        parts.images.repo.engine.dispose()
