"""Train the rotation classifier and write src/imgress/imaging/orientation_model.npz.

    apt-get install -y --no-install-recommends $(python tools/orientation_data.py --apt)
    pip install -e '.[train]'
    OMP_NUM_THREADS=2 python tools/train_orientation.py   # ~25 min on 2 busy cores

The model is an "uprightness" scorer g: a small CNN that maps a 48x48 RGB view to
one number.  For an input picture X the four candidates are X turned clockwise by
0/90/180/270 degrees, and softmax(g(candidate)) over the four is the answer: so the
four classes share every weight, and the mirror image of a candidate (upright too)
is a free second opinion.  Trained on random crops (random aspect) of photos from
tools/orientation_data.py, held out by source photo (see `split`).

`--gbm` instead trains the hand-made-feature baseline (colour/edge statistics of a
4x4 grid, LightGBM), to compare on the same held-out split.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orientation_data as od

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "src" / "imgress" / "imaging" / "orientation_model.npz"
SIZE = 48
WIDTHS = (12, 24, 48, 64)  # conv channels; 4 poolings: 48 → 3
HIDDEN = 32
# Sources whose file → photo grouping is clean enough to hold photos out by group;
# opencv's tutorial images re-use the same photos under many names, so train only.
EVAL_SOURCES = ("mate", "plasma", "palapeli", "skimage", "sklearn", "stellarium",
                "tuxpaint", "wesnoth", "imagemagick", "kphotoalbum", "lxqt", "sddm")


def split(photos: list[od.Photo]) -> tuple[list[int], list[int]]:
    """About 1 in 4 photo groups of EVAL_SOURCES held out, chosen by a hash of the group."""
    train, held = [], []
    for i, p in enumerate(photos):
        h = int(hashlib.sha1(p.group.encode()).hexdigest(), 16) % 4
        (held if p.source in EVAL_SOURCES and h == 0 else train).append(i)
    return train, held


def resize(arr: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Squash to size x size, antialiased (close to libvips' shrink + linear reduce)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(arr).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False)
    return t[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()


def random_crops(arr: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n crops covering 55-100% of each side (so aspect varies), squashed to SIZE."""
    h, w = arr.shape[:2]
    out = []
    for j in range(n):
        if j == 0:
            out.append(resize(arr))
            continue
        ch = int(h * rng.uniform(0.55, 1.0))
        cw = int(w * rng.uniform(0.55, 1.0))
        y = rng.integers(0, h - ch + 1)
        x = rng.integers(0, w - cw + 1)
        out.append(resize(arr[y:y + ch, x:x + cw]))
    return out


def make_set(arrays: list[np.ndarray], idx: list[int], per_photo: int, seed: int
             ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    for i in idx:
        crops.extend(random_crops(arrays[i], per_photo, rng))
    return np.stack(crops)


def rot_cw(x: np.ndarray, k: int) -> np.ndarray:
    """Turn (..., H, W, C) arrays clockwise by 90*k degrees."""
    return np.rot90(x, -k, axes=(-3, -2))


# --------------------------------------------------------------------------- CNN

def build_net():
    import torch.nn as nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(), nn.MaxPool2d(2)]

    w = (3, *WIDTHS)
    side = SIZE // 16
    layers = [m for i in range(4) for m in block(w[i], w[i + 1])]
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(WIDTHS[-1] * side * side, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, 1))


def candidates_torch(x):
    """(N, 3, H, W) pictures → (N, 4, 3, H, W): each turned clockwise by 0/90/180/270."""
    import torch

    return torch.stack([torch.rot90(x, -k, dims=(2, 3)) for k in range(4)], dim=1)


def augment(batch: np.ndarray, rng: np.random.Generator):
    """Colour jitter, greyscale, mirror, then turn each picture by a random label."""
    import torch

    x = torch.from_numpy(batch).float().permute(0, 3, 1, 2) / 255.0
    n = x.shape[0]
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, (n, 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-0.1, 0.1, (n, 1, 1, 1))).float()
    tint = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 3, 1, 1))).float()
    x = x * gain * tint + bias
    grey = torch.from_numpy(rng.random(n) < 0.12)
    x[grey] = x[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = torch.flip(x[flip], dims=(3,))
    x = x.clamp(0, 1) - 0.5
    labels = rng.integers(0, 4, n)
    # label k: the picture was turned counter-clockwise by 90k, so turning it
    # clockwise by 90k makes it upright again.
    for k in range(1, 4):
        m = torch.from_numpy(labels == k)
        x[m] = torch.rot90(x[m], k, dims=(2, 3))
    return x, torch.from_numpy(labels)


def scores(net, x):
    n = x.shape[0]
    c = candidates_torch(x).reshape(n * 4, *x.shape[1:])
    return net(c).reshape(n, 4)


def train_cnn(train_x: np.ndarray, held_x: np.ndarray, epochs: int, seed: int):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    bs = 128
    steps = epochs * (len(train_x) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    step = 0
    for ep in range(epochs):
        net.train()
        order = rng.permutation(len(train_x))
        t0, tot, correct, seen = time.time(), 0.0, 0, 0
        for b in range(len(train_x) // bs):
            x, y = augment(train_x[order[b * bs:(b + 1) * bs]], rng)
            logits = scores(net, x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        acc = evaluate_cnn(net, held_x)
        print(f"epoch {ep + 1}/{epochs} loss {tot / seen:.3f} train {correct / seen:.3f} "
              f"held-out {acc:.3f} ({time.time() - t0:.0f}s)", flush=True)
    return net


def evaluate_cnn(net, held_x: np.ndarray) -> float:
    import torch

    net.eval()
    hits = total = 0
    with torch.no_grad():
        base = torch.from_numpy(held_x).float().permute(0, 3, 1, 2) / 255.0 - 0.5
        for k in range(4):
            x = torch.rot90(base, k, dims=(2, 3))
            # candidate k of the mirror image is the mirror of candidate -k
            s = scores(net, x) + scores(net, torch.flip(x, dims=(3,)))[:, [0, 3, 2, 1]]
            hits += int((s.argmax(1) == k).sum())
            total += len(x)
    return hits / total


def export(net, path: Path) -> None:
    """Fold batch-norm into the convolutions; lay weights out for NHWC im2col."""
    import torch

    net.eval()
    mods = list(net)
    out: dict[str, np.ndarray] = {}
    conv_i = 0
    for i, m in enumerate(mods):
        if isinstance(m, torch.nn.Conv2d):
            bn = mods[i + 1]
            scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
            w = m.weight.detach() * scale[:, None, None, None]
            b = (bn.bias - bn.running_mean * scale).detach()
            # (O, C, kh, kw) → (C*kh*kw, O): the order sliding_window_view gives
            out[f"conv{conv_i}_w"] = w.reshape(w.shape[0], -1).T.numpy().astype(np.float32)
            out[f"conv{conv_i}_b"] = b.numpy().astype(np.float32)
            conv_i += 1
    lin = [m for m in mods if isinstance(m, torch.nn.Linear)]
    w0 = lin[0].weight.detach().numpy()  # (HIDDEN, C*H*W) in torch's C,H,W order
    side = SIZE // 16
    w0 = w0.reshape(HIDDEN, WIDTHS[-1], side, side).transpose(0, 2, 3, 1)  # → H,W,C
    w0 = w0.reshape(HIDDEN, -1)
    out["fc0_w"] = w0.T.astype(np.float32)
    out["fc0_b"] = lin[0].bias.detach().numpy().astype(np.float32)
    out["fc1_w"] = lin[1].weight.detach().numpy().T.astype(np.float32)
    out["fc1_b"] = lin[1].bias.detach().numpy().astype(np.float32)
    out["input_size"] = np.array(SIZE)
    out["version"] = np.array(1)
    np.savez_compressed(path, **out)


def check_export(net, path: Path, sample: np.ndarray) -> None:
    """The numpy forward pass in imgress must give torch's numbers."""
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from imgress.imaging import orientation

    model = orientation.Model.load(path)
    x = sample[:8].astype(np.float32) / 255.0 - 0.5
    ours = model.score(x)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())[:, 0].numpy()
    err = float(np.abs(ours - theirs).max())
    print(f"numpy vs torch max abs diff {err:.2e}")
    assert err < 1e-3, err


# --------------------------------------------------------------------------- GBM

def features(x: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) → colour and edge statistics of a 4x4 grid of cells."""
    f = x.astype(np.float32) / 255.0
    grey = f.mean(axis=3)
    gx = np.abs(np.diff(grey, axis=2, append=grey[:, :, -1:]))
    gy = np.abs(np.diff(grey, axis=1, append=grey[:, -1:, :]))
    n, s = x.shape[0], x.shape[1]
    c = s // 4
    chans = np.concatenate([f, gx[..., None], gy[..., None]], axis=3)
    cells = chans.reshape(n, 4, c, 4, c, 5).mean(axis=(2, 4))
    stds = f.reshape(n, 4, c, 4, c, 3).std(axis=(2, 4))
    return np.concatenate([cells.reshape(n, -1), stds.reshape(n, -1)], axis=1)


def train_gbm(train_x: np.ndarray, held_x: np.ndarray, seed: int) -> float:
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    ks = rng.integers(0, 4, len(train_x))
    flip = rng.random(len(train_x)) < 0.5
    xs = np.stack([rot_cw(np.flip(a, 1) if f else a, -k)
                   for a, k, f in zip(train_x, ks, flip, strict=True)])
    clf = lgb.LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=31,
                             subsample=0.8, colsample_bytree=0.8, verbose=-1,
                             random_state=seed, n_jobs=2)
    clf.fit(features(xs), ks)
    hits = total = 0
    for k in range(4):
        pred = clf.predict(features(np.ascontiguousarray(rot_cw(held_x, -k))))
        hits += int((pred == k).sum())
        total += len(pred)
    return hits / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--per-photo", type=int, default=40, help="crops per training photo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gbm", action="store_true", help="train the feature+GBM baseline")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    missing = od.missing_packages()
    if missing:
        sys.exit("install first: apt-get install -y --no-install-recommends "
                 + " ".join(missing))
    t0 = time.time()
    photos, arrays = od.build_cache()
    train_idx, held_idx = split(photos)
    held_groups = sorted({photos[i].group for i in held_idx})
    print(f"{len(photos)} files; train {len(train_idx)}, held out {len(held_idx)} files "
          f"({len(held_groups)} photos)")
    # opencv examples and cut-out objects are many and alike: fewer crops each, so the
    # scenic photos are not drowned
    few = ("opencv", *od.OBJECTS)
    per = {i: args.per_photo // (3 if photos[i].source in few else 1) for i in train_idx}
    rng_seed = args.seed
    parts = [make_set(arrays, [i], per[i], rng_seed + i) for i in train_idx]
    train_x = np.concatenate(parts)
    held_x = make_set(arrays, held_idx, 5, rng_seed + 10_000)
    print(f"{len(train_x)} training crops, {len(held_x)} held-out crops "
          f"({time.time() - t0:.0f}s)", flush=True)
    if args.gbm:
        print(f"GBM held-out accuracy {train_gbm(train_x, held_x, args.seed):.3f} "
              f"({time.time() - t0:.0f}s)")
        return
    net = train_cnn(train_x, held_x, args.epochs, args.seed)
    export(net, args.out)
    check_export(net, args.out, held_x)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) "
          f"in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
