"""Content-based rotation detection: how far an upright-by-EXIF picture must still turn.

The model (tools/train_orientation.py; orientation_model.onnx next to this file, run by
onnxruntime on one thread) scores how "upright" a 128x128 view looks: two frozen
ImageNet backbones side by side (EfficientNet-Lite0, and MobileNetV2 cut after block
13), each pooled over the view and its quadrants, then a small MLP trained on turned
crops of photos; the graph is quantized to int8 (half the time of float32). The picture
is squashed to that square and its four clockwise turns and their mirror images (upright
when the picture is) are scored in one batch; softmax over the four turns gives the
answer. The scores are temperature-scaled at training time, so `confidence` is
calibrated: of answers at 0.9, about 9 in 10 are right (on photos like the training
set).

Accuracy is still short of the goal (bench/orientation_results.md): act only on
confident answers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyvips

WEIGHTS = Path(__file__).with_name("orientation_model.onnx")
MIN_SIDE = 32  # below this there is too little to judge
PREVIEW = 256  # detect_file decodes at most this many pixels on the long side
ANGLES = (0, 90, 180, 270)


@dataclass(frozen=True, slots=True)
class Detection:
    """angle: degrees to turn the picture clockwise to make it upright."""

    angle: int
    confidence: float


class Model:
    """One onnxruntime session on one thread (the service already runs one image per
    core).  The shipped graph takes a square RGB view's four clockwise turns and their
    mirror images, (8, 3, S, S) in [0, 1], and returns the 4 turn logits; earlier
    weights (`--against` in bench/orientation.py) scored each view, (N,) out, and the
    mirror's score is added to its turn's here."""

    def __init__(self, path: str | os.PathLike[str] = WEIGHTS) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            os.fspath(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.size = int(self.session.get_inputs()[0].shape[2])

    def turn_logits(self, square: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 → 4 logits, one per clockwise turn 0/90/180/270."""
        s = self.session.run(None, {self.input: views(square)})[0]
        return s[:4] + s[4:] if len(s) == 8 else s


def views(square: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 → the model's input (8, 3, S, S) float32 in [0, 1]: the four
    clockwise turns, then each turn's mirror image (a mirrored upright view is upright).
    Training builds its views here too, so it sees exactly what the service feeds."""
    turns = [np.rot90(square, -k) for k in range(4)]
    stacked = np.stack(turns + [t[:, ::-1] for t in turns]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(stacked, dtype=np.float32) / 255.0


_model: Model | None = None
_lock = threading.Lock()


def model() -> Model:
    """The shipped weights, loaded once on first use (thread-safe)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = Model()
    return _model


def _to_rgb8(image: pyvips.Image) -> pyvips.Image:
    """Any decodable pyvips image → 3-band sRGB uchar (first frame of an animation)."""
    # An animation loaded with n=-1 is a tall strip of frames: judge the first one.
    page_height = image.get("page-height") if image.get_typeof("page-height") else 0
    if 0 < page_height < image.height:
        image = image.crop(0, 0, image.width, page_height)
    if image.interpretation not in ("srgb", "b-w"):  # CMYK, 16-bit RGB/grey, Lab...
        with contextlib.suppress(pyvips.Error):
            image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    if image.format != "uchar":
        if image.format in ("ushort", "short"):
            image = image >> 8 if image.format == "ushort" else (image / 256)
        elif image.format in ("float", "double") and image.max() <= 1.0:
            image = image * 255
        image = image.cast("uchar")
    if image.bands == 1:
        image = image.bandjoin([image, image])
    elif image.bands == 2:
        image = image.extract_band(0).bandjoin([image.extract_band(0)] * 2)
    elif image.bands > 3:
        image = image.extract_band(0, n=3)
    # Say so: three bands still labelled b-w are resized as grey + alpha (5 bands out).
    return image.copy(interpretation="srgb")


def _square(image: pyvips.Image, size: int) -> np.ndarray:
    """Squash to size x size: a turn of the square is the square of the turned picture,
    and the model never sees the aspect ratio (a prior, not evidence)."""
    if image.width > 4 * size or image.height > 4 * size:
        image = image.thumbnail_image(4 * size, height=4 * size, size="force")
    image = image.resize(size / image.width, vscale=size / image.height, kernel="linear")
    if image.width != size or image.height != size:
        image = image.gravity("centre", size, size, extend="copy")
    arr = np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8,
                     shape=(image.height, image.width, image.bands))
    return arr


def detect(image: pyvips.Image, using: Model | None = None) -> Detection | None:
    """Judge an EXIF-upright 8-bit sRGB/grey image; None when it is too small or flat
    to judge.  Other formats (16-bit, CMYK, alpha) are converted first, never raised."""
    if image.width < MIN_SIDE or image.height < MIN_SIDE:
        return None
    try:
        m = using or model()  # `using`: another model, for benches
        square = _square(_to_rgb8(image), m.size)
    except pyvips.Error:
        return None
    if float(square.std()) < 2.0:  # a single colour has no up
        return None
    logits = m.turn_logits(square).astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    k = int(p.argmax())
    return Detection(ANGLES[k], round(float(p[k]), 4))


def preview(path: str | os.PathLike[str]) -> pyvips.Image | None:
    """The small picture a file is judged on: shrink-on-load to PREVIEW, EXIF autorot,
    first frame, decoded into memory (it may be read more than once); None for a file
    libvips cannot decode."""
    try:
        return pyvips.Image.thumbnail(os.fspath(path), PREVIEW, height=PREVIEW,
                                      size="down", no_rotate=False).copy_memory()
    except pyvips.Error:
        return None


def detect_file(path: str | os.PathLike[str], using: Model | None = None
                ) -> Detection | None:
    """Judge a file on its preview; None when it cannot be decoded or judged."""
    image = preview(path)
    return None if image is None else detect(image, using)
