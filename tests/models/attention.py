"""Current architectures nobody here wrote, rebuilt tiny in plain torch (no downloads).

ViT (patch embedding, class token, scaled-dot-product attention, LayerNorm, GELU),
Swin (windowed attention with shifted windows and a relative position bias),
SegFormer (overlapping patch embedding, efficient self-attention with spatial
reduction, Mix-FFN with a depthwise conv, all-MLP decoder), a depthwise/pointwise
convnet with squeeze-excitation and hard-swish, and an anchor-free detector whose
``(4+C, N)`` output the runtime's ``detect`` task decodes.  Attention goes through
``F.scaled_dot_product_attention`` as in ``transformers``/``timm``, which is what the
TorchScript exporter refuses at opset 13.  ``SPECS`` holds a spec per factory.
"""
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn


def _seeded(model: "nn.Module", seed: int) -> "nn.Module":
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


class Attention(nn.Module):
    """Multi-head self-attention; ``sr`` > 1 is SegFormer's spatial reduction of keys/values."""

    def __init__(self, dim: int, heads: int, sr: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr, stride=sr) if sr > 1 else None
        self.norm = nn.LayerNorm(dim) if sr > 1 else None

    def forward(self, x: "torch.Tensor", hw: Any = None, bias: Any = None) -> "torch.Tensor":
        b, n, c = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        src = x
        if self.sr is not None:
            grid = x.transpose(1, 2).reshape(b, c, hw[0], hw[1])
            src = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        kv = self.kv(src).reshape(b, src.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, size: int = 32, patch: int = 8, dim: int = 32, depth: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + (size // patch) ** 2, dim))
        self.blocks = nn.Sequential(*[Block(dim, 4) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        t = self.norm(self.blocks(t))
        return self.head(t[:, 0])


def tiny_vit() -> "nn.Module":
    return _seeded(TinyViT(), 11)


class SwinBlock(nn.Module):
    """Window attention (optionally shifted by half a window) with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.bias = nn.Parameter(torch.zeros(heads, window * window, window * window))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        b, c, hh, ww = x.shape
        w = self.window
        t = x.permute(0, 2, 3, 1)
        if self.shift:
            t = torch.roll(t, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = t.reshape(b, hh // w, w, ww // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
        win = win + self.attn(self.norm1(win), bias=self.bias)
        win = win + self.mlp(self.norm2(win))
        t = win.reshape(b, hh // w, ww // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hh, ww, c)
        if self.shift:
            t = torch.roll(t, shifts=(self.shift, self.shift), dims=(1, 2))
        return t.permute(0, 3, 1, 2)


class TinySwin(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 32, 4, stride=4)
        self.stage = nn.Sequential(SwinBlock(32, 4, 4, 0), SwinBlock(32, 4, 4, 2))
        self.merge = nn.Conv2d(32, 64, 2, stride=2)  # patch merging as a strided conv
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, classes)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        t = self.merge(self.stage(self.embed(x)))
        return self.head(self.norm(t.mean(dim=(2, 3))))


def tiny_swin() -> "nn.Module":
    return _seeded(TinySwin(), 12)


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: "torch.Tensor", hw: Any) -> "torch.Tensor":
        t = self.fc1(x)
        b, n, c = t.shape
        t = self.dw(t.transpose(1, 2).reshape(b, c, hw[0], hw[1])).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(t))


class SegBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, 4 * dim)

    def forward(self, x: "torch.Tensor", hw: Any) -> "torch.Tensor":
        x = x + self.attention(self.norm1(x), hw)
        return x + self.ffn(self.norm2(x), hw)


class SegStage(nn.Module):
    def __init__(self, cin: int, dim: int, patch: int, stride: int, heads: int, sr: int) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(cin, dim, patch, stride=stride, padding=patch // 2)
        self.embed_norm = nn.LayerNorm(dim)
        self.block = nn.ModuleList([SegBlock(dim, heads, sr)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        g = self.patch_embed(x)
        b, c, h, w = g.shape
        t = self.embed_norm(g.flatten(2).transpose(1, 2))
        for blk in self.block:
            t = blk(t, (h, w))
        return self.norm(t).transpose(1, 2).reshape(b, c, h, w)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList([SegStage(3, 16, 7, 4, 1, 4), SegStage(16, 32, 3, 2, 2, 2)])

    def forward(self, x: "torch.Tensor") -> "List[torch.Tensor]":
        feats = []
        for stage in self.block:
            x = stage(x)
            feats.append(x)
        return feats


class TinySegFormer(nn.Module):
    """``m.encoder.block.N`` are stages, so module paths read like ``transformers``' SegFormer."""

    def __init__(self, classes: int = 4, dim: int = 32) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.proj = nn.ModuleList([nn.Linear(16, dim), nn.Linear(32, dim)])
        self.fuse = nn.Sequential(nn.Conv2d(2 * dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
        self.classifier = nn.Conv2d(dim, classes, 1)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        feats = self.encoder(x)
        size = feats[0].shape[2:]
        ups = []
        for f, p in zip(feats, self.proj):
            b, c, h, w = f.shape
            t = p(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
            ups.append(F.interpolate(t, size=size, mode="bilinear", align_corners=False))
        return self.classifier(self.fuse(torch.cat(ups[::-1], dim=1)))


def tiny_segformer() -> "nn.Module":
    return _seeded(TinySegFormer(), 13)


class DWSeparable(nn.Module):
    """Depthwise 3x3 + squeeze-excitation + pointwise 1x1, hard-swish (MobileNetV3/EfficientNet)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, max(4, cin // 4), 1), nn.SiLU(),
                                nn.Conv2d(max(4, cin // 4), cin, 1), nn.Hardsigmoid())
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        t = F.hardswish(self.bn1(self.dw(x)))
        t = t * self.se(t)
        return F.hardswish(self.bn2(self.pw(t)))


class DWNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6())
        self.features = nn.Sequential(DWSeparable(16, 24, 2), DWSeparable(24, 32, 1), DWSeparable(32, 48, 2))
        self.head = nn.Linear(48, classes)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.head(self.features(self.stem(x)).mean(dim=(2, 3)))


def dw_net() -> "nn.Module":
    return _seeded(DWNet(), 14)


class TinyYolo(nn.Module):
    """Anchor-free detector with an attention neck (as YOLO11's C2PSA): ``(1, 4+C, N)`` boxes in pixels."""

    def __init__(self, classes: int = 3, size: int = 64) -> None:
        super().__init__()
        self.size = size
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.SiLU(),
                                      DWSeparable(16, 32, 2), DWSeparable(32, 32, 2))  # stride 8
        self.psa = Block(32, 2)
        self.box = nn.Conv2d(32, 4, 1)
        self.cls = nn.Conv2d(32, classes, 1)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        f = self.backbone(x)
        b, c, h, w = f.shape
        f = self.psa(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        stride = float(self.size // h)
        ys = (torch.arange(h, dtype=x.dtype) + 0.5) * stride
        xs = (torch.arange(w, dtype=x.dtype) + 0.5) * stride
        cy = ys.view(1, h, 1).expand(1, h, w).reshape(1, 1, -1)
        cx = xs.view(1, 1, w).expand(1, h, w).reshape(1, 1, -1)
        d = self.box(f).flatten(2)
        wh = torch.sigmoid(d[:, 2:4]) * self.size
        xy = torch.cat([cx, cy], dim=1) + torch.tanh(d[:, 0:2]) * stride
        return torch.cat([xy, wh, torch.sigmoid(self.cls(f).flatten(2))], dim=1)


def tiny_yolo() -> "nn.Module":
    return _seeded(TinyYolo(), 15)


def _spec(task: str, size: int, outputs: "List[str]", labels: "List[str]") -> "Dict[str, Any]":
    return {
        "task": task,
        "input": {"name": "pixel_values", "shape": [1, 3, size, size], "dtype": "float32", "color": "rgb"},
        "preprocess": {"resize": [size, size], "scale": 1.0 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": outputs,
        "labels": labels,
    }


_FIVE = ["a", "b", "c", "d", "e"]
SPECS: "Dict[str, Dict[str, Any]]" = {
    "tiny_vit": _spec("classify", 32, ["logits"], _FIVE),
    "tiny_swin": _spec("classify", 32, ["logits"], _FIVE),
    "tiny_segformer": _spec("segment", 64, ["logits"], ["sky", "road", "car", "tree"]),
    "dw_net": _spec("classify", 32, ["logits"], _FIVE),
    "tiny_yolo": _spec("detect", 64, ["output0"], ["p", "q", "r"]),
}
