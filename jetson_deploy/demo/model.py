"""DemoNet: a small plain-torch CNN, 3x64x64 RGB -> 4 logits (circle, square, triangle, none).

Only Conv/BatchNorm/ReLU/MaxPool/global average pool/Linear, so it exports to ONNX
cleanly, folds BatchNorm into the convolutions, and quantizes to INT8 without
trouble (ReLU activations, no large outliers).  torch is imported lazily: the
class is defined inside :func:`build_model`, so importing this module never
touches torch.
"""
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from .._lazy import require
from ..errors import BadInput

NUM_CLASSES = 4
# (out_channels, maxpool after) per 3x3 conv stage: 64 -> 32 -> 16 -> 8 -> 4, then global average pool.
STAGES: "Tuple[Tuple[int, bool], ...]" = ((16, True), (32, True), (48, True), (64, True), (96, False))


def build_model(num_classes: int = NUM_CLASSES) -> Any:
    """A fresh, untrained DemoNet (``torch.nn.Module``) in train mode."""
    torch = require("torch", "the demo model")
    nn = torch.nn

    class DemoNet(nn.Module):
        """conv-bn-relu stages with max pooling, global average pool, linear head."""

        def __init__(self, num_classes: int = NUM_CLASSES):
            super().__init__()
            layers = []
            c_in = 3
            for c_out, pool in STAGES:
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
                if pool:
                    layers.append(nn.MaxPool2d(2))
                c_in = c_out
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(c_in, num_classes)

        def forward(self, x):  # (N, 3, 64, 64) float32 -> (N, num_classes) logits
            x = self.pool(self.features(x))
            return self.head(torch.flatten(x, 1))

    return DemoNet(num_classes)


def load_state(path: "Union[str, Path]") -> "Dict[str, Any]":
    """Read a state dict saved by ``scripts/train_demo_model.py`` (tensors only)."""
    torch = require("torch", "the demo model")
    path = Path(path)
    if not path.is_file():
        raise BadInput(
            "demo weights {} are missing: reinstall jetson-deploy or run scripts/train_demo_model.py".format(path)
        )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(str(path), map_location="cpu")


def load_model(path: "Union[str, Path]") -> Any:
    """DemoNet with the weights at ``path``, in eval mode."""
    model = build_model()
    try:
        model.load_state_dict(load_state(path))
    except RuntimeError as exc:
        raise BadInput("demo weights {} do not fit DemoNet ({}): rerun scripts/train_demo_model.py".format(
            path, str(exc).splitlines()[0]))
    return model.eval()
