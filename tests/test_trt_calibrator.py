"""The INT8 calibrator adapter, driven by the TensorRT double's calibration loop.

The double calls ``read_calibration_cache``, ``get_batch_size`` and ``get_batch(names)``
until None, reads every batch through the returned pointers (pycuda double: host
memory), computes ranges with ONNX Runtime and hands ``write_calibration_cache`` a
TensorRT-format cache -- so these tests check the numbers that reached "TensorRT".
"""
import ctypes
import io
import subprocess
import sys
import types

import numpy as np
import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime")

from doubles import onnx_models, pycuda_double, tensorrt_double as trtd  # noqa: E402

from jetson_deploy.trt.calibrator import Torch2trtCalibDataset, make_calibrator  # noqa: E402
from jetson_deploy.trt import build as tb  # noqa: E402
from jetson_deploy.errors import BadInput, MissingDependency  # noqa: E402

NAMES, SHAPES, DTYPES = ["input"], [[2, 3, 8, 8]], [np.float32]


@pytest.fixture
def model(tmp_path):
    return onnx_models.classifier(tmp_path / "model.onnx", batch=2)


def _batches(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 3, 8, 8)).astype(np.float32) * (i + 1) for i in range(n)]


class FakeCalibSet:
    """What jetson_deploy.calibration.dataset.load_calibration_set returns, reduced to the contract."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def iter_batches(self, batch_size):
        for i in range(0, len(self.samples), batch_size):
            yield np.stack(self.samples[i:i + batch_size])


def _cache_scales(data: bytes):
    header, scales = trtd.parse_calibration_cache(data)
    return header, scales


@pytest.mark.parametrize("gen", ["8.2", "8.6", "10.x"])
def test_entropy2_calibration_feeds_real_batches_and_writes_cache(monkeypatch, model, tmp_path, gen):
    trt = trtd.install(monkeypatch, gen)
    pycuda_double.install(monkeypatch)
    batches = _batches()
    cache = tmp_path / "calib" / "cache"
    cal = make_calibrator([{"input": b} for b in batches], NAMES, SHAPES, DTYPES, cache_path=cache)
    assert isinstance(cal, trt.IInt8EntropyCalibrator2)
    spec = trtd.read_plan(tb.build_engine(model, "int8", calibrator=cal))
    assert spec["int8"]["mode"] == "calibrator" and spec["int8"]["source"] == "calibrated"
    assert spec["int8"]["batches"] == 4 and cal.batches_served == 4
    assert cal.get_batch_size() == 1 and cal.batch_size == 2  # explicit batch: the batch lives in the shape
    assert not [m for _, m in trt._double.events if "Explicit batch network detected" in m]
    header, scales = _cache_scales(cache.read_bytes())
    assert header == "TRT-{}-EntropyCalibration2".format(trtd._version_int(trt.__version__))
    expect = np.percentile(np.abs(np.concatenate([b.ravel() for b in batches])), 99.99) / 127.0
    assert scales["input"] == pytest.approx(expect, rel=1e-5)  # the bytes TensorRT read are ours
    assert set(scales) >= {"input", "conv_out", "relu_out", "logits"}
    # the calibration helper's parser reads the same cache back
    from jetson_deploy.calibration.cache import parse_cache

    info, amax = parse_cache(cache.read_text())
    assert info["algorithm"] == "EntropyCalibration2"
    assert amax["input"] == pytest.approx(expect * 127.0, rel=1e-5)


def test_second_build_uses_the_cache_without_batches(monkeypatch, model, tmp_path):
    trtd.install(monkeypatch, "8.5")
    pycuda_double.install(monkeypatch)
    cache = tmp_path / "cache"
    tb.build_engine(model, "int8", calibrator=make_calibrator(_batches(), NAMES, SHAPES, DTYPES, cache_path=cache))
    before = cache.read_bytes()
    cal2 = make_calibrator(_batches(seed=1), NAMES, SHAPES, DTYPES, cache_path=cache)
    spec = trtd.read_plan(tb.build_engine(model, "int8", calibrator=cal2))
    assert spec["int8"]["source"] == "cache" and cal2.batches_served == 0 and cal2.cache_read
    assert cache.read_bytes() == before


def test_cache_from_other_version_is_recalibrated(monkeypatch, model, tmp_path):
    trtd.install(monkeypatch, "10.x")
    pycuda_double.install(monkeypatch)
    cache = tmp_path / "cache"
    cache.write_text("TRT-8502-EntropyCalibration2\ninput: 3c010a14\n")
    cal = make_calibrator(_batches(2), NAMES, SHAPES, DTYPES, cache_path=cache)
    spec = trtd.read_plan(tb.build_engine(model, "int8", calibrator=cal))
    assert spec["int8"]["source"] == "calibrated" and cal.batches_served == 2
    assert cache.read_text().startswith("TRT-100300-EntropyCalibration2\n")


def test_minmax_kind(monkeypatch, model, tmp_path):
    trt = trtd.install(monkeypatch, "8.6")
    pycuda_double.install(monkeypatch)
    batches = _batches(3)
    buf = io.BytesIO()
    cal = make_calibrator(batches, NAMES, SHAPES, DTYPES, cache_path=buf, kind="minmax")
    assert isinstance(cal, trt.IInt8MinMaxCalibrator)
    tb.build_engine(model, "int8", calibrator=cal)
    header, scales = _cache_scales(buf.getvalue())
    assert header == "TRT-8602-MinMaxCalibration"
    assert scales["input"] == pytest.approx(max(float(np.abs(b).max()) for b in batches) / 127.0, rel=1e-6)
    with pytest.raises(BadInput, match="kind"):
        make_calibrator(batches, kind="percentile")


def test_batches_are_conformed_to_the_engine_input(monkeypatch, model):
    """Bare arrays, float64, NHWC and a missing batch axis all reach TensorRT as NCHW float32."""
    trtd.install(monkeypatch, "8.6")
    pycuda_double.install(monkeypatch)
    canon = _batches(2)
    ref = make_calibrator(canon, NAMES, SHAPES, DTYPES)
    tb.build_engine(model, "int8", calibrator=ref)
    variants = [b.astype(np.float64).transpose(0, 2, 3, 1) for b in canon]  # float64 NHWC
    cal = make_calibrator(variants, NAMES, SHAPES, DTYPES)
    tb.build_engine(model, "int8", calibrator=cal)
    assert _cache_scales(cal.cache_bytes)[1] == _cache_scales(ref.cache_bytes)[1]
    one = onnx_models.classifier(model.with_name("b1.onnx"), batch=1)
    singles = [canon[0][0], canon[0][1]]  # (3, 8, 8): batch axis added
    cal1 = make_calibrator(singles, NAMES, [[1, 3, 8, 8]], DTYPES)
    tb.build_engine(one, "int8", calibrator=cal1)
    assert cal1.batches_served == 2
    assert _cache_scales(cal1.cache_bytes)[1]["input"] > 0


def test_bad_batches_fail_the_build_with_the_reason(monkeypatch, model):
    trtd.install(monkeypatch, "8.2")
    pycuda_double.install(monkeypatch)
    wrong = make_calibrator([np.zeros((2, 3, 16, 16), np.float32)], NAMES, SHAPES, DTYPES)
    with pytest.raises(BadInput, match=r"input 'input' has shape \(2, 3, 16, 16\), the engine takes \(2, 3, 8, 8\)"):
        tb.build_engine(model, "int8", calibrator=wrong)
    missing = make_calibrator([{"image": np.zeros((2, 3, 8, 8), np.float32)}], NAMES, SHAPES, DTYPES)
    with pytest.raises(BadInput, match=r"missing engine input\(s\) \['input'\]"):
        tb.build_engine(model, "int8", calibrator=missing)
    empty = make_calibrator([], NAMES, SHAPES, DTYPES)
    with pytest.raises(Exception, match="Calibration failure occurred with no scaling factors"):
        tb.build_engine(model, "int8", calibrator=empty)


def test_calibration_set_object_streams_full_batches(monkeypatch, model):
    trtd.install(monkeypatch, "10.x")
    pycuda_double.install(monkeypatch)
    rng = np.random.default_rng(3)
    cset = FakeCalibSet([rng.random((3, 8, 8), dtype=np.float32) for _ in range(5)])
    cal = make_calibrator(cset, NAMES, SHAPES, DTYPES)
    spec = trtd.read_plan(tb.build_engine(model, "int8", calibrator=cal))
    assert cal.batches_served == 2 and cal.skipped_partial == 1  # 5 samples, batch 2: last one short
    assert spec["int8"]["batches"] == 2


@pytest.mark.needs("torch")
def test_custom_allocator_and_missing_cuda(monkeypatch, model):
    trtd.install(monkeypatch, "8.5")

    class HostAllocator:
        def __init__(self):
            self.keep, self.copies = [], 0

        def alloc(self, nbytes):
            a = np.zeros(nbytes, np.uint8)
            self.keep.append(a)

            return types.SimpleNamespace(ptr=a.ctypes.data, nbytes=nbytes, free=lambda: None)

        def htod(self, buf, arr):
            self.copies += 1
            ctypes.memmove(buf.ptr, arr.ctypes.data, arr.nbytes)

    alloc = HostAllocator()
    cal = make_calibrator(_batches(3), NAMES, SHAPES, DTYPES, allocator=alloc)
    tb.build_engine(model, "int8", calibrator=cal)
    assert alloc.copies == 3 and len(alloc.keep) == 1  # one buffer, reused
    # no pycuda and no CUDA torch: the calibrator's failure surfaces as MissingDependency
    pycuda_double.uninstall(monkeypatch)
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(MissingDependency, match="pycuda"):
        tb.build_engine(model, "int8", calibrator=make_calibrator(_batches(1), NAMES, SHAPES, DTYPES))


def test_double_enforces_base_init_like_pybind11(monkeypatch, model):
    """Sanity of the double: a trampoline subclass that skips the base __init__ is refused, as by pybind11."""
    trt = trtd.install(monkeypatch, "8.6")

    class Forgot(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            pass

    with pytest.raises(TypeError, match=r"IInt8Calibrator.__init__\(\) must be called"):
        tb.build_engine(model, "int8", calibrator=Forgot())

    class BadLogger(trt.ILogger):
        def __init__(self):
            pass

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match=r"ILogger.__init__\(\) must be called"):
        trt.Builder(BadLogger())


def test_module_import_does_not_touch_tensorrt():
    code = ("import sys; import jetson_deploy.trt.calibrator, jetson_deploy.trt.build, "
            "jetson_deploy.trt; assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.needs("torch")
def test_torch2trt_dataset_adapter():
    import torch
    rng = np.random.default_rng(5)
    samples = [rng.random((3, 8, 8), dtype=np.float32) for _ in range(5)]
    ds = Torch2trtCalibDataset(FakeCalibSet(samples), device="cpu")
    assert len(ds) == 5
    for i in (0, 1, 2, 4, 1, -1):  # sequential, skip ahead, rewind, negative
        item = ds[i]
        assert isinstance(item, list) and len(item) == 1
        assert tuple(item[0].shape) == (3, 8, 8) and item[0].dtype == torch.float32
        np.testing.assert_array_equal(item[0].numpy(), samples[i])
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(BadInput):
        Torch2trtCalibDataset([1, 2, 3])


@pytest.mark.parametrize("gen", ["8.5", "10.x"])
def test_dynamic_batch_model_calibrates_at_the_profile_opt_shape(monkeypatch, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    pycuda_double.install(monkeypatch)
    dyn = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None)
    batches = _batches(3)  # (2, 3, 8, 8) each: the profile's opt batch
    cal = make_calibrator(batches, NAMES, [[2, 3, 8, 8]], DTYPES)
    spec = trtd.read_plan(tb.build_engine(dyn, "int8", calibrator=cal,
                                          profiles={"input": ([1, 3, 8, 8], [2, 3, 8, 8], [4, 3, 8, 8])}))
    assert spec["int8"]["batches"] == 3
    expect = np.percentile(np.abs(np.concatenate([b.ravel() for b in batches])), 99.99) / 127.0
    assert spec["int8"]["scales"]["input"] == pytest.approx(expect, rel=1e-5)


@pytest.mark.needs("cv2")
def test_real_calibration_set_feeds_the_calibrator(monkeypatch, tmp_path):
    """End to end with the calibration helper's set: images -> preprocess -> shards -> TensorRT batches."""
    import cv2
    from jetson_deploy.calibration.dataset import build_calibration_set, load_calibration_set

    rng = np.random.default_rng(11)
    (tmp_path / "imgs").mkdir()
    for i in range(12):
        img = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "imgs" / "im{:02d}.png".format(i)), img)
    spec = {"task": "classify", "input": {"name": "input", "shape": [2, 3, 8, 8], "dtype": "float32", "color": "rgb"},
            "preprocess": {"resize": [8, 8], "scale": 1 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "outputs": ["logits"]}
    build_calibration_set([tmp_path / "imgs"], spec, tmp_path / "set", num=12, seed=0, holdout=0.0, progress=False, dedupe_bits=-1)
    cset = load_calibration_set(tmp_path / "set")
    n = len(cset)
    trtd.install(monkeypatch, "8.6")
    pycuda_double.install(monkeypatch)
    model = onnx_models.classifier(tmp_path / "model.onnx", batch=2)
    cal = make_calibrator(cset, NAMES, SHAPES, DTYPES, cache_path=tmp_path / "calib.cache")
    spec_plan = trtd.read_plan(tb.build_engine(model, "int8", calibrator=cal))
    assert cal.batches_served == n // 2 and spec_plan["int8"]["batches"] == n // 2
    seen = np.concatenate([b.ravel() for b in cset.iter_batches(2, drop_last=True)])
    assert spec_plan["int8"]["scales"]["input"] == pytest.approx(np.percentile(np.abs(seen), 99.99) / 127.0, rel=1e-5)


_CALLBACK_SCRIPT = r"""
import sys
from pathlib import Path
import numpy as np
from doubles import onnx_models, pycuda_double, tensorrt_double as trtd
sys.modules["tensorrt"] = trtd.make_tensorrt(sys.argv[1])
pkg = pycuda_double.make_pycuda()
sys.modules["pycuda"], sys.modules["pycuda.driver"] = pkg, pkg.driver
from jetson_deploy.trt.calibrator import make_calibrator
from jetson_deploy.runtime.memory import make_context
from jetson_deploy.trt import build as tb
from jetson_deploy.errors import JetsonDeployError
tmp = Path(sys.argv[2])
model = onnx_models.classifier(tmp / "model.onnx", batch=2)
ctx = make_context(cuda=pkg.driver)
batches = [np.ones((2, 3, 8, 8), np.float32) * (i + 1) for i in range(2)]
cache_dir = tmp / "a-directory"  # writing the cache there raises (the output policy refuses a directory)
cache_dir.mkdir()
cal = make_calibrator(batches, ["input"], [[2, 3, 8, 8]], [np.float32], cache_path=cache_dir)
try:
    tb.build_engine(model, "int8", calibrator=cal)
    print("BUILT")
except JetsonDeployError as exc:
    print("REFUSED", exc)
"""


@pytest.mark.parametrize("gen", ["8.2", "8.5"])
def test_cache_callback_exception_never_reaches_tensorrt(tmp_path, gen):
    """Issue #12 item 6: on 8.2 the calibrator trampolines are noexcept without try/catch
    (pyInt8.cpp L28-106): an exception in write_calibration_cache aborts the process.  The
    double os.abort()s there; our calibrator keeps the error and the build reports it."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.path.join(root, "tests")]))
    p = subprocess.Popen([sys.executable, "-c", _CALLBACK_SCRIPT, gen, str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, "calibration process died ({}): {}".format(p.returncode, err[-800:])
    # the callback's exception is kept and the build reports it, naming the cache path
    assert "REFUSED" in out and "a-directory" in out, out
