"""The embedded default: a small CNN that classifies synthetic shapes.

``jetson_deploy.demo:load_model`` is a MODEL string every command accepts.  The
frame generator (:mod:`jetson_deploy.media.shapes`, re-exported by
:mod:`jetson_deploy.demo.shapes`) makes labelled frames, clips and image folders of
any size.  Nothing heavy is imported until used: torch only in
:func:`build_model` / :func:`load_model`, cv2 only when frames are drawn.
"""
from pathlib import Path
from typing import TYPE_CHECKING, Any

LABELS = ["circle", "square", "triangle", "none"]
HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights.pt"

if TYPE_CHECKING:  # pragma: no cover
    from ..spec import ModelSpec

__all__ = [
    "LABELS",
    "ShapeGenerator",
    "write_clip",
    "write_images",
    "spec_path",
    "load_spec",
    "build_model",
    "load_model",
    "weights_path",
    "dataset",
    "MIXED_SIZES",
    "label_of",
]

_FROM_SHAPES = ("ShapeGenerator", "write_clip", "write_images", "label_of", "dataset", "MIXED_SIZES")


def __getattr__(name: str) -> Any:  # PEP 562: shapes (numpy) only on first use
    if name in _FROM_SHAPES:
        from . import shapes

        return getattr(shapes, name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


def spec_path() -> Path:
    """Path of the shipped ModelSpec (``spec.json``)."""
    return HERE / "spec.json"


def weights_path() -> Path:
    """Path of the shipped trained weights (a torch state dict)."""
    return WEIGHTS


def load_spec() -> "ModelSpec":
    """The demo model's ModelSpec."""
    from ..spec import load_spec as _load

    return _load(spec_path())


def build_model() -> Any:
    """A fresh, untrained DemoNet (needs torch)."""
    from .model import build_model as _build

    return _build()


def load_model() -> Any:
    """The trained demo model in eval mode (the MODEL ``jetson_deploy.demo:load_model``)."""
    from .model import load_model as _load

    return _load(WEIGHTS)


from .._lazy import pep562 as _pep562  # noqa: E402

_pep562(__name__)
