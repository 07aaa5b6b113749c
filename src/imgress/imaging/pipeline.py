"""Rendering variants: a named list of small steps over one context.

The order lives in `STEPS`. The source is decoded once, at reduced scale where the
format allows (JPEG DCT shrink-on-load), and every variant is derived from that.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyvips
import structlog

from imgress.config import VariantPreset
from imgress.errors import ProcessingError
from imgress.imaging.orientation import Detection
from imgress.imaging.probe import Header, _first_line, read_header

Detector = Callable[[pyvips.Image], Detection | None]
FileDetector = Callable[[Path], Detection | None]  # decodes its own preview(s)

PIPELINE_VERSION = "1"
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "webp": {"effort": 2},
    "jpeg": {"optimize_coding": True, "interlace": True},
    "avif": {"effort": 2},
    "png": {"compression": 6},
}


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    path: Path
    width: int
    height: int
    format: str
    size: int


@dataclass(slots=True)
class Context:
    source: Path
    out_dir: Path
    presets: Sequence[VariantPreset]
    fmt: str
    quality: int
    detector: Detector | None = None
    known: Detection | None = None  # judged earlier (the inference task): not again
    threshold: float = 1.0
    header: Header | None = None
    image: pyvips.Image | None = None
    detection: Detection | None = None
    applied: bool = False
    renditions: list[Rendition] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def box(self) -> tuple[int, int]:
        """The smallest box every variant can be derived from."""
        return max(p.width for p in self.presets), max(p.height for p in self.presets)


def step_load(ctx: Context) -> None:
    header = ctx.header = read_header(ctx.source)
    options: dict[str, object] = {"access": "sequential", "fail_on": "truncated"}
    if header.loader.startswith("jpegload"):
        box_w, box_h = ctx.box
        fit = min(box_w / header.width, box_h / header.height)
        shrink = 1
        while shrink < 8 and fit * shrink * 2 <= 1:
            shrink *= 2
        if shrink > 1:
            options["shrink"] = shrink
    ctx.image = pyvips.Image.new_from_file(str(ctx.source), **options)


def step_orient(ctx: Context) -> None:
    """Runs on the small in-memory base: turning a sequentially read image would need
    its rows out of order (orientations 3 and 4 read the bottom first)."""
    assert ctx.image is not None
    ctx.image = ctx.image.autorot()


def step_colour(ctx: Context) -> None:
    """Everything leaves as 8-bit sRGB (or grey); CMYK, 16-bit and ICC handled here."""
    image = ctx.image
    assert image is not None
    if image.get_typeof("icc-profile-data"):
        try:
            image = image.icc_transform("srgb", embedded=True, intent="perceptual")
        except pyvips.Error:
            image = image.colourspace("srgb")
    elif image.interpretation not in ("srgb", "b-w"):
        image = image.colourspace("srgb")
    if image.format != "uchar":
        target = "b-w" if image.interpretation in ("b-w", "grey16") else "srgb"
        image = image.colourspace(target)
        if image.format != "uchar":
            image = image.cast("uchar")
    ctx.image = image


def step_base(ctx: Context) -> None:
    """Resize once to the common box and keep that small image in memory. The image is
    not yet upright, so the box is turned with it."""
    assert ctx.image is not None and ctx.header is not None
    box_w, box_h = ctx.box
    if ctx.header.swaps_axes:
        box_w, box_h = box_h, box_w
    ctx.image = ctx.image.thumbnail_image(box_w, height=box_h, size="down").copy_memory()


def step_detect(ctx: Context) -> None:
    """Judge from the content whether the EXIF-upright picture is still turned, and turn
    it when the model is sure enough. Runs on the small base: the model needs 48 px."""
    if ctx.detector is None or ctx.image is None:
        return
    # Materialize the colour-converted, upright base once: the model reads it here and
    # every variant reads it after, instead of each re-running the lazy chain.
    ctx.image = ctx.image.copy_memory()
    found = ctx.detection = ctx.known or _judge(ctx.detector, ctx.image)
    if (found is not None and found.angle and ctx.threshold < 1.0
            and found.confidence >= ctx.threshold):  # 1.0: report only, never turn
        ctx.image = ctx.image.rot(f"d{found.angle}")  # libvips turns clockwise
        ctx.applied = True


def _judge(detector: Detector, image: pyvips.Image) -> Detection | None:
    """The model never fails an image: on an error it abstains (and says so)."""
    try:
        return detector(image)
    except Exception as exc:
        structlog.get_logger("imgress.imaging").warning(
            "orientation_abstained", error=f"{type(exc).__name__}: {exc}")
        return None


def step_variants(ctx: Context) -> None:
    assert ctx.image is not None
    save = dict(_SAVE_OPTIONS.get(ctx.fmt, {}), Q=ctx.quality, keep="none")
    if ctx.fmt == "png":
        save.pop("Q")
    for preset in ctx.presets:
        started = time.perf_counter()
        image = ctx.image.thumbnail_image(preset.width, height=preset.height, size="down")
        if ctx.fmt == "jpeg" and image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        out = ctx.out_dir / f"{preset.name}.{ctx.fmt}"
        image.write_to_file(str(out), **save)
        ctx.renditions.append(Rendition(
            name=preset.name, path=out, width=image.width, height=image.height,
            format=ctx.fmt, size=out.stat().st_size,
        ))
        ctx.timings[f"variant_{preset.name}"] = time.perf_counter() - started


STEPS: tuple[tuple[str, Callable[[Context], None]], ...] = (
    ("load", step_load),
    ("base", step_base),
    ("colour", step_colour),  # on the small base: an ICC transform costs per pixel
    ("orient", step_orient),
    ("detect", step_detect),
    ("variants", step_variants),
)


class Pipeline:
    def __init__(self, presets: Sequence[VariantPreset], fmt: str, quality: int, *,
                 detector: Detector | None = None, threshold: float = 1.0,
                 detector_tag: str = "", detect_file: FileDetector | None = None):
        """`detector_tag` names the model (and the threshold names the policy): both
        change what the variants look like, so both are part of the fingerprint.
        `detect_file`: the same detector judging a file (detect_source, scale-out)."""
        self.presets, self.fmt, self.quality = tuple(presets), fmt, quality
        self.detector, self.threshold, self.detect_file = detector, threshold, detect_file
        self.detector_tag = f"{detector_tag}@{threshold:g}" if detector else "off"

    def fingerprint(self, preset: VariantPreset) -> str:
        """Names a rendering: the same bytes and fingerprint never render twice."""
        spec = f"{PIPELINE_VERSION}|{preset}|{self.fmt}|{self.quality}|{self.detector_tag}"
        return hashlib.sha256(spec.encode()).hexdigest()[:12]

    def detect_source(self, source: Path) -> Detection | None:
        """Rotation judged from the file by the detector's own preview (shrink-on-load,
        EXIF applied; None when undecodable: rendering fails it with a proper code): the
        inference task of scale-out, which runs ahead of rendering on a queue of its own."""
        if self.detector is None or self.detect_file is None:
            return None
        return self.detect_file(source)

    def render(self, source: Path, out_dir: Path, known: Detection | None = None
               ) -> Context:
        """`known`: a detection made earlier (the inference task); not made again."""
        ctx = Context(source=source, out_dir=out_dir, presets=self.presets,
                      fmt=self.fmt, quality=self.quality, detector=self.detector,
                      known=known, threshold=self.threshold)
        for name, step in STEPS:
            started = time.perf_counter()
            try:
                step(ctx)
            except pyvips.Error as exc:
                raise ProcessingError(
                    f"the image could not be processed ({name})",
                    code="encode_failed" if name == "variants" else "decode_failed",
                    step=name, detail=_first_line(exc),
                ) from None
            ctx.timings[name] = time.perf_counter() - started
        return ctx
