"""The embedded demo model: shipped weights, MODEL-string import, accuracy gates."""
import importlib

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "cv2")
torch = optional_module("torch")
cv2 = optional_module("cv2")

from jetson_deploy.demo import LABELS, ShapeGenerator, load_spec, weights_path, write_clip  # noqa: E402
from jetson_deploy.demo.shapes import MIXED_SIZES  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402

# Never used by scripts/train_demo_model.py (training: seed*1000+epoch; its held-out check: 900001).
TEST_SEED = 20261121


def _model_from_string(model_str: str):
    module, factory = model_str.split(":")
    return getattr(importlib.import_module(module), factory)()


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return _model_from_string("jetson_deploy.demo:load_model")


def _predict(model, inputs: "np.ndarray") -> "np.ndarray":
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(inputs[i : i + 250])).argmax(1).numpy() for i in range(0, len(inputs), 250)]
        )


def test_weights_shipped_and_small():
    path = weights_path()
    assert path.is_file()
    assert path.stat().st_size < 2 * 1024 * 1024


def test_load_model_via_model_string(model):
    assert isinstance(model, torch.nn.Module)
    assert not model.training
    spec = load_spec()
    x = torch.zeros(tuple([2] + spec.shape[1:]))
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) == (2, len(LABELS))
    # Shipped weights, not a fresh init: two loads agree exactly.
    again = _model_from_string("jetson_deploy.demo:load_model")
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_accuracy_on_1000_fresh_frames_of_mixed_sizes(model):
    spec = load_spec()
    gen = ShapeGenerator(TEST_SEED)
    sizes = np.random.RandomState(TEST_SEED).randint(len(MIXED_SIZES), size=1000)
    inputs = np.empty((1000,) + tuple(spec.shape[1:]), dtype=np.float32)
    labels = np.empty(1000, dtype=np.int64)
    for i, k in enumerate(sizes):
        frame, labels[i] = gen.frame(*MIXED_SIZES[k])
        preprocess(frame, spec, out=inputs[i])
    assert len(set(labels.tolist())) == len(LABELS)
    acc = float((_predict(model, inputs) == labels).mean())
    assert acc >= 0.97, "top-1 accuracy {:.3f} < 0.97".format(acc)


def test_accuracy_on_hd_frames(model):
    # Benchmarks feed 1280x720 frames: a plain resize to 64x64 stretches and aliases them.
    spec = load_spec()
    frames = list(ShapeGenerator(TEST_SEED + 1).frames(120, 1280, 720))
    inputs = np.stack([preprocess(f, spec) for f, _ in frames])
    labels = np.array([label for _, label in frames])
    acc = float((_predict(model, inputs) == labels).mean())
    assert acc >= 0.95, "top-1 accuracy {:.3f} on 1280x720 < 0.95".format(acc)


def test_accuracy_on_a_compressed_clip(model, tmp_path):
    # What `jetson-deploy demo` does: a codec-compressed clip read back frame by frame.
    spec = load_spec()
    path = tmp_path / "clip.avi"
    truth = write_clip(path, 120, width=320, height=240, seed=TEST_SEED + 2, hold=5)
    cap = cv2.VideoCapture(str(path))
    inputs = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        inputs.append(preprocess(frame, spec))
    cap.release()
    assert len(inputs) == len(truth)
    acc = float((_predict(model, np.stack(inputs)) == np.array(truth)).mean())
    assert acc >= 0.95, "top-1 accuracy {:.3f} on the clip < 0.95".format(acc)


def test_untrained_model_is_not_accurate():
    # The accuracy gate can fail: a fresh DemoNet is near chance on the same kind of data.
    from jetson_deploy.demo import build_model
    from jetson_deploy.demo.shapes import dataset

    torch.manual_seed(0)
    fresh = build_model().eval()
    x, y = dataset(200, TEST_SEED + 3)
    assert float((_predict(fresh, x) == y).mean()) < 0.6


@pytest.mark.needs("onnx", "onnxruntime")
def test_exports_to_plain_onnx(model, tmp_path):
    # Only ops every backend has (TensorRT 8.x included); ONNX Runtime matches PyTorch.
    import onnx
    import onnxruntime as ort
    from jetson_deploy.demo.shapes import dataset

    x, _ = dataset(8, TEST_SEED + 4)
    path = tmp_path / "demo.onnx"
    torch.onnx.export(
        model, torch.from_numpy(x[:1]), str(path), input_names=["input"], output_names=["logits"],
        opset_version=17, dynamo=False,
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm", "BatchNormalization"}, ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = np.concatenate([sess.run(["logits"], {"input": x[i : i + 1]})[0] for i in range(len(x))])
    assert np.abs(got - ref).max() < 1e-3
    assert (got.argmax(1) == ref.argmax(1)).all()
