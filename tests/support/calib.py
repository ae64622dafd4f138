"""Shared helpers for the calibration tests (tests/test_calib_*.py): small images,
clips, specs and tiny ONNX CNNs made on the spot."""
import json
from pathlib import Path
from typing import List

import numpy as np

SPEC = {
    "task": "classify",
    "input": {"name": "input", "shape": [1, 3, 32, 32], "dtype": "float32", "color": "rgb"},
    "preprocess": {"resize": [32, 32], "scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "outputs": ["logits"],
    "labels": ["circle", "square", "triangle"],
}


def write_spec(path: Path, **changes) -> Path:
    spec = json.loads(json.dumps(SPEC))
    spec.update(changes)
    path.write_text(json.dumps(spec))
    return path


def scene(rng: "np.random.Generator", w: int = 64, h: int = 48) -> "np.ndarray":
    """A BGR frame: noisy background and one filled shape, all random."""
    import cv2

    base = rng.integers(0, 150, 3).astype(np.int16)
    img = np.clip(rng.integers(0, 60, (h, w, 3)) + base, 0, 255).astype(np.uint8)
    color = tuple(int(x) for x in rng.integers(0, 256, 3))
    kind = int(rng.integers(3))
    cx, cy = int(rng.integers(12, w - 12)), int(rng.integers(12, h - 12))
    r = int(rng.integers(5, 11))
    if kind == 0:
        cv2.circle(img, (cx, cy), r, color, -1)
    elif kind == 1:
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
    else:
        cv2.fillPoly(img, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)], color)
    return img


def write_images(folder: Path, n: int, seed: int = 0, exts=("png", "jpg")) -> "List[Path]":
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = folder / "img{:04d}.{}".format(i, exts[i % len(exts)])
        cv2.imwrite(str(p), scene(rng))
        out.append(p)
    return out


def write_clip(path: Path, n: int, seed: int = 0, w: int = 64, h: int = 48) -> Path:
    """An MJPG .avi whose frame i shows scene i (all distinct), so the frame
    index of a sample can be told from its content."""
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert vw.isOpened()
    for i in range(n):
        vw.write(scene(np.random.default_rng(seed * 100000 + i), w, h))
    vw.release()
    return path


def make_cnn_onnx(path: Path, outlier: bool = False, seed: int = 0, task_out: int = 3) -> Path:
    """A small plain-torch CNN exported to ONNX (input 'input' 1x3x32x32 dynamic batch).

    With ``outlier`` an extra logit is a constant -4000 (never the argmax): per-tensor
    INT8 on that output layer crushes the real logits, so INT8 agreement collapses
    unless that layer stays in float.
    """
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 16, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.head = nn.Linear(16, task_out + (1 if outlier else 0))
            if outlier:
                with torch.no_grad():
                    self.head.weight[-1].zero_()
                    self.head.bias[-1] = -4000.0

        def forward(self, x):
            return self.head(self.features(x))

    net = Net().eval()
    with torch.no_grad():
        net.features[1].running_mean.uniform_(-0.2, 0.2)
        net.features[1].running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        net, (x,), str(path), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False,
    )
    return path


def make_hidden_outlier_onnx(path: Path, seed: int = 0) -> Path:
    """A CNN whose *intermediate* activation has one channel ~1000x larger than the
    rest (compensated in the next conv, so FP32 is unaffected): per-tensor INT8 on
    that tensor crushes the other channels."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
    with torch.no_grad():
        conv1.weight[0] *= 1000.0
        conv1.bias[0] *= 1000.0
        conv2.weight[:, 0] /= 1000.0
    net = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        net, (x,), str(path), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False,
    )
    return path
