"""The imaging pipeline: all 8 EXIF orientations turned upright, metadata stripped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from imgress.config import VariantPreset
from imgress.errors import ProcessingError
from imgress.imaging.pipeline import Pipeline
from imgress.imaging.probe import read_header

# Stored = inverse(transform) applied to the upright picture, per EXIF orientation.
_INVERSE = {
    1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
QUADRANTS = {(0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (0, 1): (0, 0, 255), (1, 1): (255, 255, 0)}


def _upright() -> Image.Image:
    # Big enough that libvips streams it (and shrinks on load): orientations 3 and 4
    # once failed only on images read in several strips.
    img = Image.new("RGB", (1800, 1200))
    for (qx, qy), colour in QUADRANTS.items():
        img.paste(colour, (qx * 900, qy * 600, qx * 900 + 900, qy * 600 + 600))
    return img


def _stored(orientation: int, path: Path) -> None:
    img = _upright()
    if _INVERSE[orientation] is not None:
        img = img.transpose(_INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8825] = {2: 40}  # a GPS IFD that must never reach a variant
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_ends_upright(orientation: int, tmp_path: Path) -> None:
    source = tmp_path / "in.jpg"
    _stored(orientation, source)
    header = read_header(source)
    assert header.exif_orientation == orientation
    assert (header.width, header.height) == (1800, 1200)
    # A full-size variant: no shrink-on-load, so the decoder streams strips.
    pipeline = Pipeline([VariantPreset("web", 1800, 1800), VariantPreset("t", 150, 150)],
                        "png", 80)
    ctx = pipeline.render(source, tmp_path)
    web, thumb = ctx.renditions
    assert (web.width, web.height, thumb.width, thumb.height) == (1800, 1200, 150, 100)
    rendered = Image.open(web.path).convert("RGB")
    for (qx, qy), colour in QUADRANTS.items():
        pixel = rendered.getpixel((qx * 900 + 450, qy * 600 + 300))
        assert all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=True)), (
            orientation, (qx, qy), pixel)
    fields = pyvips.Image.new_from_file(str(thumb.path)).get_fields()
    assert "exif-data" not in fields and "orientation" not in fields


@pytest.mark.parametrize("fmt,magic", [("webp", b"RIFF"), ("jpeg", b"\xff\xd8\xff")])
def test_formats_and_no_metadata(fmt: str, magic: bytes, tmp_path: Path) -> None:
    source = tmp_path / "in.jpg"
    _stored(6, source)
    ctx = Pipeline([VariantPreset("t", 64, 64), VariantPreset("w", 200, 200)], fmt, 80
                   ).render(source, tmp_path)
    assert [r.name for r in ctx.renditions] == ["t", "w"]
    for r in ctx.renditions:
        data = r.path.read_bytes()
        assert data.startswith(magic)
        assert b"Exif" not in data and r.size == len(data)
    assert {"load", "orient", "colour", "base", "variants"} <= set(ctx.timings)


def test_never_upscales(tmp_path: Path) -> None:
    source = tmp_path / "small.jpg"
    _upright().resize((30, 20)).save(source)
    (out,) = Pipeline([VariantPreset("web", 1920, 1080)], "webp", 80).render(
        source, tmp_path).renditions
    assert (out.width, out.height) == (30, 20)


def test_fingerprint_changes_with_presets() -> None:
    preset = VariantPreset("web", 1920, 1080)
    a = Pipeline([preset], "webp", 80).fingerprint(preset)
    assert a == Pipeline([preset], "webp", 80).fingerprint(preset)
    assert a != Pipeline([preset], "webp", 70).fingerprint(preset)
    assert a != Pipeline([preset], "jpeg", 80).fingerprint(preset)


def test_undecodable_data_is_a_processing_error(tmp_path: Path) -> None:
    source = tmp_path / "cut.png"
    buf = io.BytesIO()
    _upright().save(buf, "PNG")
    source.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ProcessingError) as err:
        Pipeline([VariantPreset("web", 100, 100)], "webp", 80).render(source, tmp_path)
    assert err.value.code == "decode_failed"
