"""The torch path on the CPU: GPU-style preprocessing parity with the host implementation,
and the torch engine's device-pointer-free API (forward/infer)."""
import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "cv2")
torch = optional_module("torch")

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402
from jetson_deploy.runtime.torch_preprocess import TorchPreprocess  # noqa: E402
from jetson_deploy.spec import ModelSpec  # noqa: E402


def _spec(w=64, h=64, keep_aspect=False, color="rgb", dtype="float32", layout="nchw"):
    c = 1 if color == "gray" else 3
    shape = [1, c, h, w] if layout == "nchw" else [1, h, w, c]
    return ModelSpec.from_dict({
        "task": "classify",
        "input": {"name": "input", "shape": shape, "dtype": dtype, "color": color, "layout": layout},
        "preprocess": {"resize": [w, h], "keep_aspect": keep_aspect, "scale": 1 / 255.0,
                       "mean": [0.5] * c, "std": [0.25] * c},
        "outputs": ["logits"], "labels": ["a", "b"],
    })


def _frame(h=720, w=1280, seed=0):
    import cv2

    rng = np.random.RandomState(seed)
    img = cv2.GaussianBlur(rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8), (0, 0), 3)
    cv2.circle(img, (w // 3, h // 2), h // 4, (30, 200, 90), -1)
    return img


@pytest.mark.parametrize("kw", [{}, {"keep_aspect": True}, {"color": "bgr"}, {"w": 96, "h": 48},
                                {"color": "gray"}, {"dtype": "uint8"}, {"layout": "nhwc"}])
def test_torch_preprocess_matches_host(kw):
    spec = _spec(**kw)
    img = _frame()
    ref = preprocess(img, spec)
    got = TorchPreprocess(spec, "cpu")(torch.from_numpy(img))[0].numpy()
    assert got.shape == ref.shape and got.dtype == ref.dtype
    diff = np.abs(got.astype(np.float32) - ref.astype(np.float32))
    level = 1.0 if spec.dtype == "uint8" else 1 / 255.0 / 0.25
    # same resize rule; only fixed-point rounding of single pixels differs (one uint8 level)
    assert diff.max() <= 2 * level + 1e-5
    assert diff.mean() <= 0.15 * level + 1e-6  # a few percent of pixels, one level apart


def test_torch_engine_infer_and_forward(tmp_path):
    from support.runtime import make_bundle

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import choose_backend, create_engine

    b = open_bundle(make_bundle(tmp_path / "b", pt2=True))
    eng = create_engine(b, RunOptions(backend="torch", device="cpu"))
    with eng:
        assert [t.name for t in eng.outputs] == ["logits"] and eng.outputs[0].shape == (1, 4)
        x = np.zeros((1, 3, 16, 16), np.float32)
        x[:, 2] = 1.0  # red channel (BGR order)
        out = eng.infer({"input": x})["logits"]
        assert out.argmax() == 2
        dev = eng.forward(torch.from_numpy(x))
        assert torch.allclose(dev["logits"], torch.from_numpy(out))
    assert choose_backend(b, "auto") in ("onnxruntime", "torch", "tensorrt")
    if not torch.cuda.is_available():
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            assert choose_backend(b, "auto") == "onnxruntime"


def test_torch_backend_needs_an_exported_program(tmp_path):
    from support.runtime import make_bundle

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.errors import BadInput
    from jetson_deploy.runtime.backends import create_engine

    b = open_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(BadInput, match="exported program"):
        create_engine(b, RunOptions(backend="torch"))
