"""Tiny test architectures covering what users deploy (plain torch, no torchvision).

Each factory takes no arguments and returns an ``nn.Module`` in eval mode with
seeded weights, so ``tests.models:<factory>`` (or ``tests/models/__init__.py:<factory>``)
is a valid MODEL string.  ``SPECS`` holds a matching ModelSpec dict per factory.
Inputs are 32x32..64x64 so the whole conversion area stays fast on 2 CPU cores.
"""
import dataclasses
from typing import Any, Dict

import torch
from torch import nn
import torch.nn.functional as F


def _init(model: "nn.Module", seed: int) -> "nn.Module":
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("weight"):  # norm-layer scale
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 0.5 + 0.75)
    return model.eval()


# ---- residual CNN (ResNet basic blocks) -----------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        idt = x if self.down is None else self.down(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + idt)


class ResidualCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.layer3 = BasicBlock(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def residual_cnn() -> "nn.Module":
    return _init(ResidualCNN(), 1)


# ---- depthwise / inverted residual (MobileNetV2 blocks) -------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetTiny(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4),
            nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.Hardswish(),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(x)


def mobilenet_tiny() -> "nn.Module":
    return _init(MobileNetTiny(), 2)


# ---- UNet-like segmenter with upsampling ---------------------------------------------
def _double(cin: int, cout: int) -> "nn.Sequential":
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class TinyUNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.enc1 = _double(3, 8)
        self.enc2 = _double(8, 16)
        self.bott = _double(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = _double(32, 16)
        self.dec1 = _double(16 + 8, 8)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bott(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        up1 = F.interpolate(d2, scale_factor=2.0, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up1, e1], dim=1))
        return self.head(d1)


def tiny_unet() -> "nn.Module":
    m = _init(TinyUNet(), 3)
    with torch.no_grad():
        # no class wins everywhere (random features share a direction): masks have structure
        m.head.weight.sub_(m.head.weight.mean(dim=1, keepdim=True))
        m.head.bias.zero_()
    return m


# ---- detection head with multiple outputs (tuple) --------------------------------------
class TinyDetector(nn.Module):
    """A single-scale anchor-free head: (boxes [N, A, 4], scores [N, A, classes], objectness [N, A])."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(32, 32, 3, 2, 1), nn.SiLU(),
        )
        self.box = nn.Conv2d(32, 4, 1)
        self.cls = nn.Conv2d(32, classes, 1)
        self.obj = nn.Conv2d(32, 1, 1)
        self.stride = 8

    def forward(self, x: "torch.Tensor"):
        f = self.backbone(x)
        n, _, h, w = f.shape
        ys = torch.arange(h, dtype=f.dtype).view(1, h, 1).expand(1, h, w)
        xs = torch.arange(w, dtype=f.dtype).view(1, 1, w).expand(1, h, w)
        grid = torch.stack([xs, ys], dim=-1).reshape(1, h * w, 2)
        raw = self.box(f).flatten(2).transpose(1, 2)  # N, A, 4
        centers = (grid + torch.sigmoid(raw[..., :2])) * self.stride
        sizes = torch.exp(raw[..., 2:].clamp(max=4.0)) * self.stride
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=-1)
        scores = torch.sigmoid(self.cls(f).flatten(2).transpose(1, 2))
        obj = torch.sigmoid(self.obj(f).flatten(1))
        return boxes, scores, obj


def tiny_detector() -> "nn.Module":
    return _init(TinyDetector(), 4)


# ---- dict outputs and dataclass outputs ---------------------------------------------------
class DictOutputs(nn.Module):
    """Returns {"logits", "embedding", "aux": {"heatmap"}} like multi-task models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.heat = nn.Conv2d(16, 1, 1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x: "torch.Tensor") -> "Dict[str, Any]":
        f = self.body(x)
        emb = f.mean(dim=(2, 3))
        return {"logits": self.fc(emb), "embedding": F.normalize(emb, dim=1), "aux": {"heatmap": self.heat(f)}}


def dict_outputs() -> "nn.Module":
    return _init(DictOutputs(), 5)


@dataclasses.dataclass
class ClassifierOutput:
    logits: "torch.Tensor"
    features: "torch.Tensor"


class DataclassOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 3)

    def forward(self, x: "torch.Tensor") -> "ClassifierOutput":
        f = self.body(x)
        return ClassifierOutput(logits=self.fc(f), features=f)


def dataclass_outputs() -> "nn.Module":
    return _init(DataclassOutputs(), 6)


def not_a_module() -> Any:
    return {"oops": 1}


def _spec(task: str, size: int, outputs: Any, labels: Any = None, color: str = "rgb") -> "Dict[str, Any]":
    return {
        "task": task,
        "input": {"name": "input", "shape": [1, 3, size, size], "dtype": "float32", "color": color},
        "preprocess": {"scale": 1.0 / 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": list(outputs),
        "labels": list(labels or []),
    }


SPECS: "Dict[str, Dict[str, Any]]" = {
    "residual_cnn": _spec("classify", 32, ["logits"], ["c{}".format(i) for i in range(10)]),
    "mobilenet_tiny": _spec("classify", 64, ["logits"], ["a", "b", "c", "d", "e"]),
    "tiny_unet": _spec("segment", 32, ["logits"], ["bg", "road", "car"]),
    "tiny_detector": _spec("detect", 64, ["boxes", "scores", "objectness"], ["p", "q", "r", "s"], color="bgr"),
    "dict_outputs": _spec("classify", 32, ["logits", "heatmap"]),
    "dataclass_outputs": _spec("classify", 32, ["logits"], ["x", "y", "z"]),
}


class DriftingModel(nn.Module):
    """Eager forward depends on how often it was called: tracing freezes one value,
    so ONNX and PyTorch disagree (a real parity failure, as with Python-side state)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.calls = 0

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        self.calls += 1
        return self.fc(x.mean(dim=(2, 3))) + float(self.calls)


def drifting() -> "nn.Module":
    return _init(DriftingModel(), 7)


SPECS["drifting"] = _spec("classify", 32, ["logits"])


class WithUnique(nn.Module):
    """Uses torch.unique (ONNX Unique), which TensorRT's ONNX parser does not import."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        pooled = x.mean(dim=(2, 3))
        u = torch.unique(torch.round(pooled * 4.0))
        return self.fc(pooled) + 0.0 * u.sum()


def with_unique() -> "nn.Module":
    return _init(WithUnique(), 8)


SPECS["with_unique"] = _spec("classify", 32, ["logits"])


class FragileNet(nn.Module):
    """Features ride on a large constant, and the class weights are zero-sum: the
    decision lives in small variations that INT8 steps (sized by the constant) wipe
    out, so INT8 top-1 disagrees with FP32 (a real accuracy-gate failure)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        f = F.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(f * 0.02 + 5.0)


def fragile() -> "nn.Module":
    m = _init(FragileNet(), 9)
    with torch.no_grad():
        m.fc.weight.sub_(m.fc.weight.mean(dim=1, keepdim=True))
        m.fc.bias.zero_()
    return m


SPECS["fragile"] = _spec("classify", 32, ["logits"])


class RawPixels(nn.Module):
    """Takes uint8 NCHW pixels and normalises inside forward (a model already 'folded' by its author)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, 2, 1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        y = F.relu(self.conv(x.float() / 255.0 - 0.5))
        return self.fc(y.mean(dim=(2, 3)))


def raw_pixels() -> "nn.Module":
    return _init(RawPixels(), 10)


SPECS["raw_pixels"] = dict(_spec("classify", 32, ["logits"]), input={"name": "input", "shape": [1, 3, 32, 32], "dtype": "uint8", "color": "rgb"})


class Branchy(nn.Module):
    """Data-dependent Python control flow: tracing freezes one branch (TracerWarning)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        y = self.fc(x.mean(dim=(2, 3)))
        if x.mean() > 100.0:
            return y * 2.0
        return y


def branchy() -> "nn.Module":
    return _init(Branchy(), 11)


SPECS["branchy"] = _spec("classify", 32, ["logits"])


class HalfOverflow(nn.Module):
    """An intermediate activation beyond float16's 65504 (then scaled back): fine in FP32, inf in FP16."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        big = self.fc(x.mean(dim=(2, 3))) * 1.0e5 + 2.0e5
        return big * 1.0e-5


def half_overflow() -> "nn.Module":
    return _init(HalfOverflow(), 12)


SPECS["half_overflow"] = _spec("classify", 32, ["logits"])
