"""Where the orientation model's training photos come from, and how they are cached.

Everything is offline: Debian packages installed with apt-get, plus images that ship
inside PyPI wheels and npm packages (scikit-image, scikit-learn, orientation_packages).
`python tools/orientation_data.py` prints the apt-get line for what is missing and how
many photos each source gives; `--apt` prints just the package names.

Lomiri and UKUI wallpapers are reserved for an independent evaluation: any path that
contains "lomiri" or "ukui" is refused here, whatever the globs say.

Abstract art, gradients, logos, patterns and diagrams have no "up".  Two filters keep
them out: a hand-made exclude list of names (EXCLUDE_NAMES, from looking at contact
sheets) and a flatness heuristic (`is_flat`: a graphic has most of its pixels in a few
colours or little texture), applied to every source.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orientation_packages

RESERVED = re.compile(r"lomiri|ukui", re.IGNORECASE)

# Debian packages the training set needs (desktop-base, gnome-backgrounds and
# sway-backgrounds were looked at and are all abstract art, so they are not used).
APT_PACKAGES = (
    "plasma-workspace-wallpapers",
    "mate-backgrounds",
    "opencv-doc",
    "palapeli-data",
    "stellarium-data",
    "tuxpaint-data",
    "imagemagick-6-doc",
    "wesnoth-1.16-data",
    "tuxpaint-stamps-default",
    "kphotoalbum",
    "lxqt-themes",
    "sddm-theme-maldives",
    "gcompris-qt-data",
)

# (source name, glob, how a file maps to its source photo: "dir" = parent wallpaper
# folder, "stem" = file stem with size suffixes cut, "base" = stem up to the first _
# (variants like landscape-bridge_sun), "prefix" = stem up to the first _, - or digit)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("plasma", "/usr/share/wallpapers/*/contents/images/*.*", "dir"),
    ("mate", "/usr/share/backgrounds/mate/nature/*.jpg", "stem"),
    ("mate", "/usr/share/backgrounds/mate/abstract/Elephants*.jpg", "stem"),
    ("opencv", "/usr/share/doc/opencv-doc/examples/data/*.jpg", "prefix"),
    ("opencv", "/usr/share/doc/opencv-doc/examples/data/*.png", "prefix"),
    ("opencv", "/usr/share/doc/opencv-doc/opencv4/html/*.jpg", "prefix"),
    ("palapeli", "/usr/share/palapeli/collection/*.jpg", "stem"),
    ("stellarium", "/usr/share/stellarium/landscapes/*/*.png", "dir"),
    ("stellarium", "/usr/share/stellarium/landscapes/*/*.jpg", "dir"),
    ("tuxpaint", "/usr/share/tuxpaint/starters/*.jpg", "stem"),
    ("tuxpaint", "/usr/share/tuxpaint/templates/*.jpg", "stem"),
    ("imagemagick", "/usr/share/doc/imagemagick-6-common/html/images/*.jpg", "base"),
    ("wesnoth", "/usr/share/games/wesnoth/1.16/data/core/images/story/*.jpg", "base"),
    ("kphotoalbum", "/usr/share/kphotoalbum/demo/*.jpg", "base"),
    ("lxqt", "/usr/share/lxqt/wallpapers/*.*", "stem"),
    ("sddm", "/usr/share/sddm/themes/maldives/background.jpg", "dir"),
)

# Cut-out objects and painted portraits (transparent background): animals, people,
# vehicles and buildings stand upright.  Flattened onto a plain colour; used for
# training only (never in the held-out evaluation, which is photos).
OBJECT_SOURCES: tuple[tuple[str, str], ...] = (
    *(("stamps", f"/usr/share/tuxpaint/stamps/{d}/**/*.png")
      for d in ("animals", "cartoon", "clothes", "food", "hobbies", "household", "medical",
                "military", "people", "plants", "seasonal", "sports", "town", "vehicles")),
    ("portraits", "/usr/share/games/wesnoth/1.16/data/core/images/portraits/**/*.png"),
)

# PyPI: scikit-image's bundled photos (the rest of skimage.data is texture or science)
SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg",
                  "motorcycle_left.png")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")

# Hand-made: looked at, no natural "up" (abstract, patterns, logos, text, diagrams,
# star fields, calibration boards, or a duplicate of another source).
EXCLUDE_NAMES = frozenset({
    # plasma
    "Cluster", "Elarun", "Flow", "FlyingKonqui", "Honeywave", "Kay", "Opal", "Patak",
    "Volna", "Shell", "Grey", "IceCold", "ColdRipple", "MilkyWay", "Canopee", "Kokkini",
    "DarkestHour", "summer_1am", "OneStandsOut",
    # mate
    "Wood", "RainDrops", "Blinds", "Aqua",
    # opencv examples/data
    "LinuxLogo", "WindowsLogo", "chessboard", "board", "digits", "detect", "gradient",
    "ellipses", "ml", "notes", "opencv", "pic1", "pic2", "pic3", "pic4", "pic5", "pic6",
    "left", "right", "graf1", "graf3", "imageTextN", "imageTextR", "mask", "pca",
    "blox", "box", "cards", "text", "aloeGT", "stuff", "smarties", "sudoku", "j", "HappyFish",
    "Blender", "aruco", "alphabet", "npr", "templ", "ela", "licenseplate",
    # opencv html: processed/rotated results, diagrams, screenshots of tools, markers
    "Remap", "Warp", "deskew", "histogram", "fft", "pattern", "random", "calib",
    "asymetricalPattern", "dualCircles", "Hough", "Template", "Back", "Histogram",
    "nlm", "pointCloud", "pose", "CMakeSelectBin", "GCC", "VisualStudioCommandLineArguments",
    "SuccessVisualStudioWindows", "visualstudiocommandprompt", "help", "fileListImage",
    "fileListImageUnDist", "screen", "viewer", "period", "Moments", "Point", "Bounding",
    "Drawing", "Morphology", "chaxis", "chcorners", "chocclusion", "choriginal",
    "diamondsaxis", "gbaxis", "gbmarkersaxis", "singlemarkersaxes", "singlemarkersaxes2",
    "singlemarkersdetection", "singlemarkersoriginal", "singlemarkersrejected",
    "homography", "reconstructed", "disparity", "gdal", "orb", "Corner", "My",
    # plasma / desktop-base svg themes
    "FuturePrototypeWithLogo", "JoyInksplat", "LinesLockScreen", "SoftWaves",
    "SoftWavesLockScreen", "SpaceFun",
    # lxqt (logos, origami, patterns) and kphotoalbum's Qt logo
    "kde-plasma", "lxqt-origami-green", "origami-bright-logo", "origami-dark",
    "origami-light", "plasma-logo-bright", "plasma-logo-dark", "plasma_arch",
    "simple_blue_widescreen", "triangles-logo", "triangles", "waves-logo",
    "waves-purple-logo", "beam", "License", "qt-logo",
    # stellarium fog layers; tuxpaint textures and straight-up views of trees
    "fog", "fogridge", "burnt_bark", "mossy_bark", "mossy_log", "mudstone", "rocks",
    "redwoods_above", "trees_above", "spiders_web", "ocean_waves",
})


# GCompris keeps its pictures as WebP files inside Qt resource (.rcc) bundles; they are
# read straight out of the bundle (RIFF size header).  These activities hold photos of
# monuments, animals, tools and landscapes; "lang" holds upright drawings of objects.
RCC = "/usr/share/gcompris-qt/rcc/{}.rcc"
RCC_PHOTOS = ("categorization", "details", "erase", "explore_farm_animals",
              "explore_monuments", "explore_world_animals")
RCC_DRAWINGS = ("lang",)

OBJECTS = frozenset({*(s for s, _ in OBJECT_SOURCES), "gcompris-drawings"})


@dataclass(frozen=True, slots=True)
class Photo:
    source: str
    group: str  # one source photo: the train/held-out split is made on this
    path: str


# Train only, in the held-out split and in cross-validation alike: opencv's tutorial
# pictures (the same photos under many names) and the npm/PyPI demo photos.
TRAIN_ONLY = ("opencv", "npm", "pypi")
# Sources whose file → photo grouping is clean enough to hold photos out by group.
EVAL_SOURCES = ("mate", "plasma", "palapeli", "skimage", "sklearn", "stellarium",
                "tuxpaint", "wesnoth", "imagemagick", "kphotoalbum", "lxqt", "sddm")


def bucket(group: str, n: int) -> int:
    """A stable bucket in 0..n-1 for a photo group: splits and folds never mix a photo."""
    return int(hashlib.sha1(group.encode()).hexdigest(), 16) % n


def split(photos: list[Photo]) -> tuple[list[int], list[int]]:
    """Train and held-out indices: about 1 in 4 photo groups of EVAL_SOURCES held out,
    chosen by a hash of the group (bench/orientation.py judges the held-out ones)."""
    train, held = [], []
    for i, p in enumerate(photos):
        (held if p.source in EVAL_SOURCES and bucket(p.group, 4) == 0 else train).append(i)
    return train, held


def _group(kind: str, path: str) -> str:
    p = Path(path)
    if kind == "dir":
        return p.parent.name if p.parent.name != "images" else p.parent.parent.parent.name
    stem = p.stem
    if kind == "base":
        stem = stem.split("_")[0]
    if kind == "prefix":
        stem = re.split(r"[_\-\d]", stem, maxsplit=1)[0] or stem
    return re.sub(r"[_-]?\d+x\d+$", "", stem)


def _excluded(group: str, path: str) -> bool:
    name = Path(path).stem
    return group in EXCLUDE_NAMES or name in EXCLUDE_NAMES or any(
        name.startswith(e) and len(e) > 3 for e in EXCLUDE_NAMES)


def collect() -> list[Photo]:
    """All candidate photos, one entry per file; never a reserved (lomiri/ukui) path."""
    photos: list[Photo] = []
    for source, pattern, kind in SOURCES:
        for path in sorted(glob.glob(pattern)):
            if RESERVED.search(path):
                continue
            group = _group(kind, path)
            if not _excluded(group, path):
                photos.append(Photo(source, f"{source}:{group}", path))
    for source, names in (("gcompris", RCC_PHOTOS), ("gcompris-drawings", RCC_DRAWINGS)):
        for name in names:
            path = RCC.format(name)
            if not os.path.exists(path):
                continue
            for k, offset in enumerate(webp_offsets(path)):
                photos.append(Photo(source, f"{source}:{name}:{k}", f"{path}#{offset}"))
    for source, pattern in OBJECT_SOURCES:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if not RESERVED.search(path) and "-mirror" not in path:
                photos.append(Photo(source, f"{source}:{Path(path).stem}", path))
    try:
        import skimage
        import sklearn
    except ImportError:  # the train extra is not installed: Debian photos only
        return photos
    for base, names, source in (
            (Path(skimage.__file__).parent / "data", SKIMAGE_PHOTOS, "skimage"),
            (Path(sklearn.__file__).parent / "datasets" / "images", SKLEARN_PHOTOS, "sklearn")):
        for n in names:
            if (base / n).exists():
                photos.append(Photo(source, f"{source}:{Path(n).stem}", str(base / n)))
    assert not any(RESERVED.search(p.path) for p in photos)
    return photos


def webp_offsets(path: str) -> list[int]:
    """Where each WebP file starts inside a Qt resource bundle."""
    data = Path(path).read_bytes()
    offsets, i = [], 0
    while (i := data.find(b"RIFF", i)) >= 0:
        if data[i + 8:i + 12] == b"WEBP":
            offsets.append(i)
            i += 8 + int.from_bytes(data[i + 4:i + 8], "little")
        else:
            i += 4
    return offsets


def read_embedded(path: str) -> bytes:
    """The WebP file at 'bundle.rcc#offset', or a photo inside an npm or PyPI archive."""
    bundle, offset = path.rsplit("#", 1)
    if not bundle.endswith(".rcc"):
        return orientation_packages.read_member(path)
    with open(bundle, "rb") as f:
        f.seek(int(offset))
        head = f.read(8)
        return head + f.read(int.from_bytes(head[4:8], "little"))


def one_per_group(photos: list[Photo]) -> list[Photo]:
    """Wallpapers ship in many sizes: keep the largest file of each wallpaper folder,
    but every distinct file elsewhere (stellarium panoramas have several sides)."""
    keep: dict[str, Photo] = {}
    for p in photos:
        key = p.group if p.source in ("plasma", "mate") else p.path
        old = keep.get(key)
        if old is None or (key == p.group
                           and os.path.getsize(p.path) > os.path.getsize(old.path)):
            keep[key] = p
    return list(keep.values())


def is_flat(rgb: np.ndarray) -> bool:
    """Graphics, not photos: most pixels in few colours, or almost no texture."""
    q = (rgb[..., :3] // 16).astype(np.int32)
    codes = (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]
    counts = np.bincount(codes.ravel(), minlength=4096)
    top = np.sort(counts)[::-1]
    total = codes.size
    grey = rgb[..., :3].mean(axis=2)
    texture = np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean()
    return bool(top[0] > 0.35 * total or top[:8].sum() > 0.8 * total or texture < 1.5)


def load_preview(path: str, size: int, background: list[float] | None = None
                 ) -> np.ndarray | None:
    """Decode with libvips to at most `size` px on the long side, sRGB uint8 (H, W, 3).
    Transparent areas are flattened onto `background` (default: stellarium's sky blue)."""
    import pyvips

    try:
        if "#" in path:
            img = pyvips.Image.thumbnail_buffer(read_embedded(path), size,
                                                size=pyvips.enums.Size.DOWN)
        else:
            img = pyvips.Image.thumbnail(path, size, size=pyvips.enums.Size.DOWN,
                                         no_rotate=False)
        if img.interpretation not in ("srgb", "b-w"):
            img = img.colourspace("srgb")
        if img.hasalpha():
            img = img.flatten(background=background or [150, 180, 215])
        if img.format != "uchar":
            img = img.cast("uchar")
        if img.bands == 1:
            img = img.bandjoin([img, img])
        elif img.bands > 3:
            img = img.extract_band(0, n=3)
        arr = np.ndarray(buffer=img.write_to_memory(), dtype=np.uint8,
                         shape=(img.height, img.width, 3))
    except Exception as exc:  # pyvips.Error and friends: skip, say why
        print(f"skip {path}: {exc}", file=sys.stderr)
        return None
    return arr.copy()


def cache_key(photos: list[Photo], size: int) -> str:
    h = hashlib.sha1(str(size).encode())
    for p in photos:
        h.update(p.path.encode())
    return h.hexdigest()[:12]


def build_cache(size: int = 320, cache_dir: str = "/tmp/orientation-cache"
                ) -> tuple[list[Photo], list[np.ndarray]]:
    """Decode every usable photo once (a few minutes) and keep them in an .npz."""
    photos = one_per_group(collect()) + [
        Photo(*row) for row in orientation_packages.collect(Path(cache_dir))
        if not RESERVED.search(row[2])]
    os.makedirs(cache_dir, exist_ok=True)
    cache = os.path.join(cache_dir, f"photos-{cache_key(photos, size)}.npz")
    if os.path.exists(cache):
        data = np.load(cache, allow_pickle=False)
        kept = [Photo(*row) for row in data["meta"].tolist()]
        return kept, [data[f"img{i}"] for i in range(len(kept))]
    kept, arrays = [], []
    rng = np.random.default_rng(0)
    for p in photos:
        is_object = p.source in OBJECTS
        background = rng.integers(0, 256, 3).tolist() if is_object else None
        arr = load_preview(p.path, size, background)
        if arr is None or min(arr.shape[:2]) < 48 or (not is_object and is_flat(arr)):
            continue
        kept.append(p)
        arrays.append(arr)
    meta = np.array([[p.source, p.group, p.path] for p in kept])
    np.savez(cache, meta=meta, **{f"img{i}": a for i, a in enumerate(arrays)})
    return kept, arrays


def missing_packages() -> list[str]:
    """apt packages not installed (dpkg knows), so the script can say what to install."""
    if shutil.which("dpkg-query") is None:
        return list(APT_PACKAGES)
    import subprocess

    missing = []
    for pkg in APT_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                           capture_output=True, text=True, check=False)
        if "install ok installed" not in r.stdout:
            missing.append(pkg)
    return missing


if __name__ == "__main__":
    if "--apt" in sys.argv:  # the package names, for apt-get install
        print(" ".join(APT_PACKAGES))
        sys.exit(0)
    miss = missing_packages()
    if miss:
        print("missing: apt-get install -y --no-install-recommends " + " ".join(miss))
    photos, _ = build_cache()
    by: dict[str, set[str]] = {}
    for p in photos:
        by.setdefault(p.source, set()).add(p.group)
    for s, g in sorted(by.items()):
        print(f"{s:12s} {len(g):4d} photos")
    print(f"{'total':12s} {len({p.group for p in photos}):4d} photos, {len(photos)} files")
