"""Rotation detection: accuracy per angle, confusion matrix and time per image on one core.

    OMP_NUM_THREADS=1 VIPS_CONCURRENCY=1 .venv/bin/python bench/orientation.py \
        [--write] [--against OTHER.onnx ...]

Held-out set: the photos tools/train_orientation.py never trained on (split by source
photo, see `split` in tools/orientation_data.py), each written as four JPEG files
(1024 px on the long side, turned by 0/90/180/270) and judged by `detect_file`, which
includes decoding a small preview; then 3 random crops of each.  With IMGRESS_CORPUS
set, another table covers natural photos of the test corpus (never used in training);
where the Debian packages of OFF_DOMAIN are installed, one more covers photos unlike the
training set (animals, faces, avatars, everyday scenes; never trained on either).
--write saves the report to bench/orientation_results.md; --against runs other
models on the same files, taking turns, and adds a side-by-side table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/libvips start
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import argparse
import glob
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyvips

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "src"))

from imgress.imaging import orientation  # noqa: E402

ANGLES = orientation.ANGLES
# pyvips rot() turns clockwise; the label is the turn back to upright.
TURNS = ((None, 0), ("d90", 270), ("d180", 180), ("d270", 90))
# Natural photos in the test corpus (paths relative to IMGRESS_CORPUS); mandrill.tiff
# is left out because the same baboon is in opencv's samples, which the model saw.
CORPUS_PHOTOS = (
    "exif-orientation-examples/Landscape_1.jpg",
    "exif-orientation-examples/Portrait_1.jpg",
    "Pillow/Tests/images/sugarshack.mpo",
    "Pillow/Tests/images/app13-multiple.jpg",
    "Pillow/Tests/images/flower.webp",
    "image-rs/tests/images/jpg/progressive/cat.jpg",
    "image-rs/tests/images/tiff/testsuite/planar.tiff",
    "libvips/test/test-suite/images/sample.jpg",
    "libvips/test/test-suite/images/1.webp",
)

# Photos unlike the mostly scenic training set, in Debian packages never trained on
# (`apt-get install js-of-ocaml libdlib-dev gnome-control-center-data scratch`): the
# set that tells whether the confidence still means the same off its home ground.
OFF_DOMAIN = (
    "/usr/share/doc/js-of-ocaml/examples/hyperbolic/thumbnails/*.jpg",  # animals
    "/usr/share/doc/libdlib19.1/examples/faces/*.jpg",  # people in everyday scenes
    "/usr/share/doc/libdlib19.1/examples/johns/*/*.jpg",  # face close-ups
    "/usr/share/pixmaps/faces/*.jpg",  # GNOME's avatar pictures
    "/usr/share/scratch/Media/Backgrounds/*/*.jpg",  # indoor, outdoor, sports scenes
)
# No up (a snowflake), upside down on purpose (a bat), or drawings.
OFF_DOMAIN_SKIP = ("flake", "rhinolophus", "mural", "graffiti", "chalkboard")

CROPS = 3  # random crops per held-out photo in the second table
NOTES = "## Notes (hand-written"  # where --write stops replacing the results file


def turned_files(paths: list[str], out: Path, crops: int = 0) -> list[tuple[Path, int]]:
    """Each photo (or, with crops > 0, that many random crops of it, 50-100% of each
    side, as an independent check would cut them) as four JPEGs without EXIF; the label
    is how far to turn clockwise back to upright."""
    made = []
    rng = random.Random(7)
    for i, path in enumerate(paths):
        img = pyvips.Image.thumbnail(path, 1024, size="down")
        if img.hasalpha():
            img = img.flatten(background=[255, 255, 255])
        img = img.colourspace("srgb").copy_memory()  # rot() needs random access
        views = [img]
        if crops:
            views = []
            for _ in range(crops):
                w, h = int(img.width * rng.uniform(0.5, 1)), int(img.height * rng.uniform(0.5, 1))
                views.append(img.crop(rng.randrange(img.width - w + 1),
                                      rng.randrange(img.height - h + 1), w, h).copy_memory())
        for j, view in enumerate(views):
            for turn, label in TURNS:
                t = view.rot(turn) if turn else view
                f = out / f"{i:03d}-{j}-{label}.jpg"
                t.jpegsave(str(f), Q=85, keep="none")
                made.append((f, label))
    return made


# (confusion, times in ms, undecided, answers as (confidence, right, upright file))
Result = tuple[list[list[int]], list[float], int, list[tuple[float, bool, bool]]]


def judge(files: list[tuple[Path, int]], models: list[orientation.Model]) -> list[Result]:
    """Every file through every model, the models taking turns file by file so that
    a slower minute of the machine hits them alike."""
    results: list[Result] = [([[0] * 4 for _ in range(4)], [], 0, []) for _ in models]
    for f, label in files:
        for m, (confusion, times, _, answers) in zip(models, results, strict=True):
            t0 = time.perf_counter()
            found = orientation.detect_file(f, m)
            times.append((time.perf_counter() - t0) * 1000)
            if found is None:
                continue
            confusion[ANGLES.index(label)][ANGLES.index(found.angle)] += 1
            answers.append((found.confidence, found.angle == label, label == 0))
    return [(c, t, len(files) - len(a), a) for c, t, _, a in results]


def summary(result: Result) -> str:
    confusion, times, _, _ = result
    hit = sum(confusion[i][i] for i in range(4))
    return (f"{hit / max(sum(map(sum, confusion)), 1):.1%} | "
            f"{statistics.median(times):.1f} ms")


def report(title: str, n_photos: int, confusion: list[list[int]], times: list[float],
           undecided: int, answers: list[tuple[float, bool, bool]], unit: str = "photos"
           ) -> str:
    lines = [f"### {title}", "",
             f"{n_photos} {unit} x 4 turns = {4 * n_photos} files; {undecided} undecided", "",
             "| true angle | accuracy | n |", "|---|---|---|"]
    total_hit = total = 0
    for i, a in enumerate(ANGLES):
        n = sum(confusion[i])
        hit = confusion[i][i]
        total_hit, total = total_hit + hit, total + n
        lines.append(f"| {a} | {hit / n:.1%} | {n} |" if n else f"| {a} | - | 0 |")
    lines.append(f"| **all** | **{total_hit / max(total, 1):.1%}** | {total} |")
    lines += ["", "confusion (rows: true angle, columns: detected):", "",
              "| true \\ detected | " + " | ".join(map(str, ANGLES)) + " |",
              "|---|" + "---|" * 4]
    for i, a in enumerate(ANGLES):
        lines.append(f"| {a} | " + " | ".join(str(c) for c in confusion[i]) + " |")
    upright = sum(up for _, _, up in answers)
    lines += ["", "confidence as a gate (act only above it); wrongly turned: upright files "
              "that would be turned at that threshold:", "",
              "| confidence ≥ | share of files | accuracy | upright files wrongly turned |",
              "|---|---|---|---|"]
    for gate in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95):
        kept = [right for conf, right, _ in answers if conf >= gate]
        spoilt = sum(conf >= gate and not right and up for conf, right, up in answers)
        if kept:
            lines.append(f"| {gate} | {len(kept) / max(len(answers), 1):.0%} | "
                         f"{sum(kept) / len(kept):.1%} | {spoilt / max(upright, 1):.1%} |")
    ts = sorted(times)
    lines += ["", f"time per image (detect_file: preview decode + model), one core: "
              f"median {statistics.median(ts):.1f} ms, p95 {ts[int(0.95 * (len(ts) - 1))]:.1f} ms, "
              f"max {ts[-1]:.1f} ms", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="save bench/orientation_results.md")
    ap.add_argument("--against", type=Path, action="append", default=[],
                    help="another ONNX model to run side by side (repeatable)")
    args = ap.parse_args()

    import orientation_data as od
    photos, _ = od.build_cache()
    held = [photos[i] for i in od.split(photos)[1]]
    models = [orientation.Model(), *(orientation.Model(p) for p in args.against)]
    names = ["shipped", *(p.name for p in args.against)]
    sections, side = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cropped, cdir = Path(tmp) / "crops", Path(tmp) / "corpus"
        cropped.mkdir()
        cdir.mkdir()
        sets = [(f"Held-out photos ({', '.join(sorted({p.source for p in held}))})",
                 len(held), "photos", turned_files([p.path for p in held], Path(tmp))),
                (f"Held-out photos, {CROPS} random crops of each", len(held) * CROPS, "crops",
                 turned_files([p.path for p in held], cropped, crops=CROPS))]
        corpus = os.environ.get("IMGRESS_CORPUS")
        if corpus:
            paths = [str(Path(corpus) / p) for p in CORPUS_PHOTOS
                     if (Path(corpus) / p).exists()]
            sets.append(("Test-corpus photos (IMGRESS_CORPUS)", len(paths), "photos",
                         turned_files(paths, cdir)))
        off = [p for g in OFF_DOMAIN for p in sorted(glob.glob(g))
               if not any(k in Path(p).stem for k in OFF_DOMAIN_SKIP)]
        if off:
            odir = Path(tmp) / "off"
            odir.mkdir()
            sets.append(("Off-domain photos (animals, faces, avatars, scenes: OFF_DOMAIN)",
                         len(off), "photos", turned_files(off, odir)))
        for title, n, unit, files in sets:
            results = judge(files, models)
            sections.append(report(title, n, *results[0], unit=unit))
            side.append(f"| {title.split(' (')[0]} | "
                        + " | ".join(summary(r) for r in results)
                        + " |")
    if args.against:
        sections += ["### Side by side (accuracy | median time per image, same files, "
                     "models taking turns)", "",
                     "| set | " + " | ".join(f"{n}: accuracy | time" for n in names) + " |",
                     "|---|" + "---|---|" * len(names),
                     *side, ""]
    text = "\n".join(sections)
    print(text)
    if args.write:
        header = ("# Rotation detection: evaluation\n\n"
                  "Produced by `OMP_NUM_THREADS=1 VIPS_CONCURRENCY=1 "
                  "IMGRESS_CORPUS=../shared/corpus "
                  ".venv/bin/python bench/orientation.py --write`.\n\n")
        out = ROOT / "bench" / "orientation_results.md"
        # The hand-written notes below the tables are the file's history: kept.
        _, marker, notes = (out.read_text() if out.exists() else "").partition(NOTES)
        out.write_text(header + text + ("\n" + marker + notes if marker else ""))


if __name__ == "__main__":
    main()
