"""Documents' rotation: Tesseract's OSD in front of the photo model
(imaging/document_orientation.py) against the model alone; accuracy per angle and time
per image on one core.

    OMP_NUM_THREADS=1 VIPS_CONCURRENCY=1 IMGRESS_CORPUS=../shared/corpus \\
        .venv/bin/python bench/document_orientation.py [--pages 28]

Generated pages: A4 prose in 7 kinds (clean; scan-like: grey paper, noise, JPEG;
photographed on a desk; dark mode; two columns; a window screenshot; a short note),
fonts, sizes and 150-300 dpi varied by seed.  Each is turned 0/90/180/270 and judged
as the pipeline sees it (the base: fit in 1920x1080, in memory), and once more from a
PNG file by `detect_file` (scale-out and POST /v1/orientation decode it bigger).  Real:
the screenshots in docs/screenshots and opencv-doc's text image where installed.
Photos: the test corpus' (IMGRESS_CORPUS) and the photo packages of
tools/orientation_data.py that are installed, through the gate; OSD is also run on every
photo, gate or not, to show its largest margin there.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/libvips start
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import argparse
import glob
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyvips

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from imgress.imaging import document_orientation as docs  # noqa: E402
from imgress.imaging import orientation  # noqa: E402
from orientation import CORPUS_PHOTOS, TURNS  # noqa: E402  (bench/orientation.py)

ANGLES = orientation.ANGLES
KINDS = ("clean", "scan", "desk", "dark", "two columns", "screenshot", "short note")
FONTS = ("DejaVu Serif", "DejaVu Sans", "Lato", "FreeSerif", "FreeSans", "DejaVu Sans Mono")
PARAGRAPHS = (
    "The committee met on Tuesday to review the annual budget and the plans for the new "
    "library building. Several members raised concerns about the cost of heating during "
    "the winter months, and asked the treasurer to prepare a more detailed estimate "
    "before the next meeting.",
    "In the second part of the meeting, the chair presented a report on the volunteer "
    "programme. More than forty people have signed up since the spring, most of them "
    "students from the nearby college.",
    "The committee thanked everyone who helped with the summer fair, which raised enough "
    "money to repair the roof of the hall and to buy new chairs for the reading room.",
    "Any other business: the date of the next meeting was set for the first Monday of "
    "October. Minutes were taken by the secretary and will be circulated by email.",
    "Please note that the car park will be closed for resurfacing from the twelfth to the "
    "nineteenth of September. Visitors are asked to use the public car park on Station "
    "Road during that week.",
    "Invoices received after the end of the month will be paid in the following period. "
    "Suppliers who have not yet registered with the new accounting system should contact "
    "the office as soon as possible.",
)
PHOTO_GLOBS = ("/usr/share/backgrounds/mate/nature/*.jpg", "/usr/share/kphotoalbum/demo/*.jpg",
               "/usr/share/palapeli/collection/*.jpg",
               "/usr/share/games/wesnoth/1.16/data/core/images/story/*.jpg",
               "/usr/share/doc/opencv-doc/examples/data/*.jpg")
REAL_DOCS = (*sorted(glob.glob(str(ROOT / "docs/screenshots/*.png"))),
             *glob.glob("/usr/share/doc/opencv-doc/examples/data/imageTextN.png"))


def _ink(rng: random.Random, width: int, pt: int, dpi: int, font: str, n: int = 6,
         heading: bool = True) -> pyvips.Image:
    text = "\n\n".join(rng.sample(PARAGRAPHS, k=n))
    if heading:
        text = "<b>Minutes of the meeting</b>\n\n" + text
    return pyvips.Image.text(text, font=f"{font} {pt}", dpi=dpi, width=width,
                             justify=rng.random() < 0.5)


def document(seed: int) -> tuple[str, pyvips.Image]:
    """One upright generated page, of kind KINDS[seed % 7]."""
    rng, kind = random.Random(seed), KINDS[seed % len(KINDS)]
    dpi, pt, font = rng.choice((150, 200, 300)), rng.choice((9, 10, 11, 12, 14)), \
        rng.choice(FONTS)
    w, h = int(8.27 * dpi), int(11.69 * dpi)
    if rng.random() < 0.25:
        w, h = h, w
    m = int(dpi * rng.uniform(0.6, 1.1))
    if kind == "two columns":
        gap = int(dpi * 0.3)
        col = (w - 2 * m - gap) // 2
        a, b = _ink(rng, col, pt, dpi, font), _ink(rng, col, pt, dpi, font, heading=False)
        ink = a.embed(0, 0, w - 2 * m, max(a.height, b.height)).insert(b, col + gap, 0)
    else:
        ink = _ink(rng, w - 2 * m, pt, dpi, font, n=2 if kind == "short note" else 6)
    ink = ink.crop(0, 0, ink.width, min(ink.height, h - 2 * m))
    page = (255 - ink).embed(m, m, w, h, extend="white").cast("uchar")
    if kind == "scan":
        arr = np.ndarray(buffer=page.write_to_memory(), dtype=np.uint8, shape=(h, w))
        arr = arr * 0.9 + 10 + np.random.default_rng(seed).normal(0, 6, arr.shape) \
            + np.linspace(-8, 8, w)[None, :]
        page = pyvips.Image.new_from_array(arr.clip(0, 255).astype(np.uint8))
        page = pyvips.Image.new_from_buffer(page.jpegsave_buffer(Q=70), "")
    elif kind == "desk":  # the page on a darker desk under a lamp, half size
        page = page.resize(0.5)
        desk = pyvips.Image.black(int(page.width * 1.35), int(page.height * 1.3)) + 90
        photo = desk.insert(page, int(page.width * 0.17), int(page.height * 0.15))
        lamp = pyvips.Image.xyz(photo.width, photo.height)[0] / photo.width * 60
        page = pyvips.Image.new_from_buffer((photo - lamp).cast("uchar").jpegsave_buffer(Q=80),
                                            "")
    elif kind == "dark":
        page = ((255 - page) * 0.85 + 20).cast("uchar")
    elif kind == "screenshot":  # title bar, sidebar, 96 dpi text
        body = 255 - _ink(rng, 900, rng.choice((10, 11, 12)), 96,
                          rng.choice(("DejaVu Sans", "Lato", "FreeSans")))
        side = 255 - _ink(rng, 200, 10, 96, "DejaVu Sans", n=1, heading=False)
        win = (pyvips.Image.black(1280, 860) + 246).draw_rect(60, 0, 0, 1280, 48, fill=True)
        win = win.draw_rect(230, 0, 48, 260, 812, fill=True)
        win = win.insert(side.crop(0, 0, side.width, min(side.height, 700)) * 0.94, 20, 80)
        page = win.insert(body.crop(0, 0, body.width, min(body.height, 760)), 310, 80)
        page = page.cast("uchar")
    return kind, page.copy(interpretation="b-w").copy_memory()


def base(image: pyvips.Image) -> pyvips.Image:
    """What the pipeline's detect step is given with the default presets."""
    return image.thumbnail_image(1920, height=1080, size="down").copy_memory()


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def ms(times: list[float]) -> str:
    if not times:
        return "- | - | 0"
    ts = sorted(times)
    return f"{statistics.median(ts):.1f} | {ts[int(0.95 * (len(ts) - 1))]:.1f} | {len(ts)}"


def accuracy_table(title: str, rows: list[tuple[int, object, object, object]]) -> list[str]:
    """rows: (true angle, combined, OSD alone, model alone) answers."""
    out = [f"### {title}", "", "| true angle | combined | OSD answered | OSD right when "
           "answering | model alone | n |", "|---|---|---|---|---|---|"]
    for angle in (*ANGLES, None):
        sel = [r for r in rows if angle is None or r[0] == angle]
        if not sel:
            continue
        n = len(sel)
        both = sum(r[1] is not None and r[1].angle == r[0] for r in sel)
        osd = [r for r in sel if r[2] is not None]
        osd_ok = sum(r[2].angle == r[0] for r in osd)
        model = sum(r[3] is not None and r[3].angle == r[0] for r in sel)
        name = "**all**" if angle is None else str(angle)
        out.append(f"| {name} | {both / n:.1%} | {len(osd) / n:.1%} | "
                   f"{osd_ok / max(len(osd), 1):.1%} | {model / n:.1%} | {n} |")
    return [*out, ""]


def photo_files() -> list[str]:
    """The corpus photos, then the installed photo packages (one size per wallpaper;
    never the lomiri/ukui wallpapers, kept for the model's independent evaluation, nor
    opencv's pictures of text)."""
    corpus = os.environ.get("IMGRESS_CORPUS")
    files = [str(Path(corpus) / p) for p in CORPUS_PHOTOS] if corpus else []
    for d in sorted(glob.glob("/usr/share/wallpapers/*/contents/images")):
        files += sorted(glob.glob(d + "/*"), key=os.path.getsize)[-1:]
    files += sorted(f for g in PHOTO_GLOBS for f in glob.glob(g))
    return [f for f in files if not re.search(r"lomiri|ukui|text", f, re.IGNORECASE)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=28, help="generated pages (x4 turns)")
    args = ap.parse_args()
    version = docs.tesseract_version()
    if version is None:
        sys.exit("tesseract with its osd data is not installed "
                 "(apt-get install tesseract-ocr tesseract-ocr-osd)")
    both = docs.DocumentFirst(orientation.detect)
    osd_only = docs.DocumentFirst(lambda _: None)  # gate + OSD; None where the model would
    orientation.model()  # load the weights outside the timing
    t_doc, t_model_doc, gen, real, files, t_file = [], [], [], [], [], []
    kinds: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.pages):
            kind, page = document(seed)
            for turn, want in TURNS:
                image = base(page.rot(turn) if turn else page)
                osd, t = timed(lambda image=image: osd_only(image))
                model, tm = timed(lambda image=image: orientation.detect(image))
                row = (want, osd or model, osd, model)  # what `both` answers
                gen.append(row)
                kinds.setdefault(kind, []).append(row)
                if osd is not None:
                    t_doc.append(t)
                t_model_doc.append(tm)
            path = Path(tmp) / f"{seed}.png"
            page.rot("d90").pngsave(str(path))
            osd, t = timed(lambda path=path: osd_only.detect_file(path))
            model = orientation.detect_file(path)
            files.append((270, osd or model, osd, model))
            if osd is not None:
                t_file.append(t)
        for f in REAL_DOCS:
            upright = pyvips.Image.new_from_file(f).copy_memory()
            for turn, want in TURNS:
                image = base(upright.rot(turn) if turn else upright)
                osd, model = osd_only(image), orientation.detect(image)
                real.append((want, osd or model, osd, model))
    t_gate, t_rejected, t_model, t_passed, passed, margins = [], [], [], [], [], []
    photos = photo_files()
    for f in photos:
        image = base(pyvips.Image.new_from_file(f))
        gate, tg = timed(lambda image=image: docs.looks_like_text(image))
        found, t = timed(lambda image=image: both(image))
        model, tm = timed(lambda image=image: orientation.detect(image))
        t_gate.append(tg)
        t_model.append(tm)
        (t_passed if gate else t_rejected).append(t)
        if gate:
            passed.append(Path(f).name)
        assert gate or found == model, f  # a photo turned away gets the model's answer
        raw = docs.run_osd(image)  # OSD itself, gate or not
        margins.append(raw[1] if raw else None)
    lines = [f"Tesseract {version}; OSD_SIDE {docs.OSD_SIDE}, MIN_MARGIN {docs.MIN_MARGIN}; "
             "one core", ""]
    lines += accuracy_table(f"Generated pages as the pipeline sees them ({args.pages} pages "
                            "x 4 turns)", gen)
    lines += ["| kind | combined | OSD answered | model alone | n |", "|---|---|---|---|---|"]
    for kind, rows in kinds.items():
        n = len(rows)
        right = sum(r[1] is not None and r[1].angle == r[0] for r in rows)
        model_right = sum(r[3] is not None and r[3].angle == r[0] for r in rows)
        lines.append(f"| {kind} | {right / n:.0%} | {sum(r[2] is not None for r in rows) / n:.0%}"
                     f" | {model_right / n:.0%} | {n} |")
    lines += [""]
    lines += accuracy_table(f"Generated pages from a PNG file, turned 90 (detect_file, "
                            f"{len(files)} files)", files)
    if real:
        lines += accuracy_table(f"Real screenshots and text images ({len(real) // 4} x 4 "
                                "turns, as the pipeline sees them)", real)
    known = [m for m in margins if m is not None]
    lines += [f"Photos: {len(photos)}; the gate let {len(passed)} through "
              f"({', '.join(passed) or 'none'}); OSD run on every photo answered "
              f"{len(known)} times, largest margin {max(known, default=0):.2f} "
              f"(accepted from {docs.MIN_MARGIN})", "",
              "| time per image (ms, one core) | median | p95 | n |", "|---|---|---|---|",
              f"| (a) document answered by Tesseract (gate + OSD) | {ms(t_doc)} |",
              f"| (a') the same from a PNG file (detect_file: decode + gate + OSD) | "
              f"{ms(t_file)} |",
              f"| (b) photo the gate turns away (gate + model) | {ms(t_rejected)} |",
              f"| (b') photo the gate lets through (gate + OSD + model) | {ms(t_passed)} |",
              f"| (c) model alone, photos | {ms(t_model)} |",
              f"| (c') model alone, documents | {ms(t_model_doc)} |",
              f"| the gate alone (looks_like_text), photos | {ms(t_gate)} |", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
