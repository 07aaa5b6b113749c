"""Rotation of documents, scans and screenshots: Tesseract's orientation and script
detection (OSD) ahead of the photo model in imgress.imaging.orientation.

Why: the model learnt from scenic photos and does poorly on pages of text, which OSD
reads well (it classifies up to 250 character shapes in each of the four turns).  OSD
costs ~0.5 s a page, so a sub-millisecond test on a small preview (`looks_like_text`)
decides first whether to send a picture; photos go straight to the model, as before.
Tesseract not answering (too few characters, unsure, a timeout, a crash, uninstalled)
is never an error: the model answers instead.  Numbers: bench/document_orientation.py.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable

import numpy as np
import pyvips
import structlog

from imgress.imaging import orientation
from imgress.imaging.orientation import ANGLES, PREVIEW, Detection

TAG = "osd1"  # this policy in the variants' fingerprint: change it when the policy changes
TILE = 32  # looks_like_text sorts the PREVIEW-sized view into tiles this big
OSD_SIDE = 2000  # long side OSD reads (measured: 1600 loses small print, 2400 adds ~nothing)
MAX_UPSCALE = 2.0  # smaller pictures are enlarged up to this much: small print needs it
MIN_OSD_SIDE = 400  # below this there is too little text to read
MIN_MARGIN = 7.0  # Tesseract's own min_orientation_margin, under which it ignores OSD too
TIMEOUT = 10.0  # seconds; a page takes ~0.5 s on one core

log = structlog.get_logger("imgress.imaging")


@functools.cache
def tesseract_version(binary: str = "tesseract") -> str | None:
    """Tesseract's version when `binary` runs and has the osd data; None: no OSD here."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        langs, version = (subprocess.run([path, flag], capture_output=True, text=True,
                                         timeout=TIMEOUT) for flag in ("--list-langs", "--version"))
    except (OSError, subprocess.SubprocessError):
        return None
    if "osd" not in langs.stdout.split():
        return None
    found = re.search(r"tesseract v?(\S+)", version.stdout + version.stderr)
    return found.group(1) if found else "unknown"


def confidence(margin: float) -> float:
    """OSD's "Orientation confidence" → 0..1.  It is the margin between the best and the
    second-best turn in summed log-likelihoods over the characters, so the logistic of
    it would be that two-way posterior if characters were independent; they are not
    (one font, one page), hence the halving.  Tesseract's own acceptance margin (7)
    becomes 0.97: trusted at least as much as the model at 0.95."""
    return round(1.0 / (1.0 + math.exp(-margin / 2.0)), 4)


def _grey(image: pyvips.Image) -> pyvips.Image:
    """Any decodable image → one-band 8-bit grey (alpha on white)."""
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    if image.interpretation != "b-w" or image.format != "uchar":
        image = image.colourspace("b-w")
    return image.extract_band(0).cast("uchar")


def looks_like_text(image: pyvips.Image) -> bool:
    """A page, scan or screenshot rather than a photo: on a small view cut into tiles,
    most tiles are plain background or text (flat, with dense sharp edges), some text.
    Measured: all 112 generated page views and 4 of 6 real screenshots pass (not those
    full of pictures); 5 of 155 pictures from photo packages do, all graphics on white."""
    try:
        view = _grey(image.thumbnail_image(PREVIEW, height=PREVIEW, size="down"))
        g = np.ndarray(buffer=view.write_to_memory(), dtype=np.uint8,
                       shape=(view.height, view.width)).astype(np.int16)
    except pyvips.Error:
        return False
    h, w = g.shape[0] // TILE * TILE, g.shape[1] // TILE * TILE
    if not h or not w:
        return False
    p = np.pad(g, ((0, 1), (0, 1)), mode="edge")
    edge = np.maximum(np.abs(np.diff(p, axis=1))[:h, :w], np.abs(np.diff(p, axis=0))[:h, :w])
    grey, edge = (a[:h, :w].reshape(h // TILE, TILE, w // TILE, TILE).swapaxes(1, 2)
                  .reshape(-1, TILE * TILE) for a in (g, edge))
    flat = (np.abs(grey - np.median(grey, axis=1, keepdims=True)) <= 16).mean(axis=1)
    sharp = (edge > 48).mean(axis=1)
    text, blank = (flat >= 0.5) & (sharp >= 0.04), (flat >= 0.9) & (sharp < 0.04)
    return bool(text.mean() >= 0.05 and (text | blank).mean() >= 0.75)


def run_osd(image: pyvips.Image, binary: str = "tesseract", timeout: float = TIMEOUT
            ) -> tuple[int, float] | None:
    """Tesseract's ("Rotate", "Orientation confidence") for an EXIF-upright picture, or
    None when it has no answer.  "Rotate" is our angle, degrees clockwise to upright
    (its "Orientation in degrees" is the turn the page has, the other way round)."""
    try:
        grey = _grey(image)
        long_side = max(grey.width, grey.height)
        if long_side < MIN_OSD_SIDE:
            return None
        scale = min(OSD_SIDE / long_side, MAX_UPSCALE)
        if abs(scale - 1.0) > 0.01:
            grey = grey.resize(scale)
        pgm = b"P5\n%d %d\n255\n" % (grey.width, grey.height) + grey.write_to_memory()
    except pyvips.Error:
        return None
    try:  # stdin: no temporary file to leave behind; one thread, as the model runs
        done = subprocess.run([binary, "stdin", "stdout", "--psm", "0", "-l", "osd"],
                              input=pgm, capture_output=True, timeout=timeout,
                              env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    except (OSError, subprocess.SubprocessError) as exc:  # run() kills it on a timeout
        log.warning("osd_failed", error=f"{type(exc).__name__}: {exc}"[:200])
        return None
    out = done.stdout.decode(errors="replace")
    rotate = re.search(r"^Rotate: (\d+)", out, re.M)
    margin = re.search(r"^Orientation confidence: ([\d.]+)", out, re.M)
    if done.returncode or rotate is None or margin is None:
        if b"Too few characters" not in done.stdout + done.stderr:  # a photo, a blank page
            log.warning("osd_failed", returncode=done.returncode,
                        error=done.stderr.decode(errors="replace")[-200:])
        return None
    return int(rotate.group(1)), float(margin.group(1))


def read_orientation(image: pyvips.Image, binary: str = "tesseract",
                     timeout: float = TIMEOUT) -> Detection | None:
    """OSD's answer when its margin is at least MIN_MARGIN, else None."""
    found = run_osd(image, binary, timeout)
    if found is None or found[0] not in ANGLES or found[1] < MIN_MARGIN:
        return None
    return Detection(found[0], confidence(found[1]))


class DocumentFirst:
    """OSD for what looks like text, `fallback` (the photo model) for the rest and
    whenever OSD has no answer.  Called on an image that can be read more than once
    (the pipeline's in-memory base), as the pipeline's detector."""

    def __init__(self, fallback: Callable[[pyvips.Image], Detection | None], *,
                 binary: str = "tesseract", timeout: float = TIMEOUT) -> None:
        self.fallback, self.binary, self.timeout = fallback, binary, timeout

    def __call__(self, image: pyvips.Image) -> Detection | None:
        found = read_orientation(image, self.binary, self.timeout) \
            if looks_like_text(image) else None
        return found or self.fallback(image)

    def detect_file(self, path: str | os.PathLike[str]) -> Detection | None:
        """As orientation.detect_file (same preview, so photos get the same answer);
        a document is decoded again, bigger, for OSD.  None when undecodable."""
        preview = orientation.preview(path)
        if preview is None:
            return None
        found = None
        if looks_like_text(preview):
            with contextlib.suppress(pyvips.Error):  # then the model judges the preview
                page = pyvips.Image.thumbnail(os.fspath(path), OSD_SIDE, height=OSD_SIDE,
                                              size="down")
                found = read_orientation(page, self.binary, self.timeout)
        return found or self.fallback(preview)
