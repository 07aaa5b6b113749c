"""Header reads: dimensions and orientation without decoding pixels.

The only other module (with pipeline.py) that imports pyvips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyvips

from imgress.errors import RejectedPart

# libvips' operation cache keeps decoded images alive; our images are used once.
pyvips.cache_set_max(0)


@dataclass(frozen=True, slots=True)
class Header:
    stored_width: int
    stored_height: int
    exif_orientation: int | None
    pages: int
    loader: str

    @property
    def swaps_axes(self) -> bool:
        return self.exif_orientation in (5, 6, 7, 8)

    @property
    def width(self) -> int:
        """Upright width (after EXIF orientation)."""
        return self.stored_height if self.swaps_axes else self.stored_width

    @property
    def height(self) -> int:
        return self.stored_width if self.swaps_axes else self.stored_height


def _field(image: pyvips.Image, name: str) -> object | None:
    return image.get(name) if image.get_typeof(name) else None


def read_header(path: Path) -> Header:
    try:
        image = pyvips.Image.new_from_file(str(path), access="sequential")
    except pyvips.Error as exc:
        raise RejectedPart(
            "the image header cannot be read (corrupt or unsupported variant of the format)",
            code="corrupt_image", detail=_first_line(exc),
        ) from None
    orientation = _field(image, "orientation")
    exif = int(orientation) if isinstance(orientation, int) and 1 <= orientation <= 8 else None
    pages = _field(image, "n-pages")
    return Header(
        stored_width=image.width,
        stored_height=image.height,
        exif_orientation=exif,
        pages=int(pages) if isinstance(pages, int) else 1,
        loader=str(_field(image, "vips-loader") or ""),
    )


def verify_decodes(path: Path) -> None:
    """Decode every pixel (at reduced scale where the format allows) and fail on
    truncated data. Used only when the cheap end-of-file check is unsure."""
    try:
        options: dict[str, object] = {"access": "sequential", "fail_on": "truncated"}
        if read_header(path).loader.startswith("jpegload"):
            options["shrink"] = 8
        pyvips.Image.new_from_file(str(path), **options).avg()
    except pyvips.Error as exc:
        raise RejectedPart(
            "the image data is truncated or corrupt", code="truncated_image",
            detail=_first_line(exc),
        ) from None


def verify_codec(path: Path, header: Header) -> None:
    """HEIF wraps HEVC or AV1; a libvips built without a decoder for one reads the header
    fine and fails on every pixel. Found out at upload, not as a failed image later.
    (libvips's error text is per process and other threads may clear it, so the
    compression named in the header decides the code, not the message.)"""
    if not header.loader.startswith("heifload"):
        return
    image = pyvips.Image.new_from_file(str(path))
    compression = image.get("heif-compression") if image.get_typeof("heif-compression") \
        else "unknown"
    try:
        image.crop(0, 0, 1, 1).avg()
    except pyvips.Error as exc:
        if compression == "hevc":
            raise RejectedPart(
                "this HEIF file is HEVC-coded, which this server cannot decode",
                code="unsupported_codec", detail=_first_line(exc)) from None
        raise RejectedPart("the image data is truncated or corrupt",
                           code="corrupt_image", detail=_first_line(exc)) from None


def _first_line(exc: pyvips.Error) -> str:
    text = f"{exc.message} {exc.detail or ''}".strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "libvips error")[:200]
