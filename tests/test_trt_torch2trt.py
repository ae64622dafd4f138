"""The torch2trt converter path against the torch2trt and TensorRT doubles."""
import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime")
torch = optional_module("torch")

from doubles import pycuda_double, tensorrt_double as trtd, torch2trt_double as t2d  # noqa: E402

from jetson_deploy.convert.torch2trt_convert import convert_with_torch2trt  # noqa: E402
from jetson_deploy.errors import BadInput, MissingDependency  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class FakeCalibSet:
    def __init__(self, n=6):
        g = torch.Generator().manual_seed(1)
        self.samples = [torch.rand(3, 8, 8, generator=g).numpy() for _ in range(n)]

    def __len__(self):
        return len(self.samples)

    def iter_batches(self, batch_size):
        for i in range(0, len(self.samples), batch_size):
            yield np.stack(self.samples[i:i + batch_size])


def test_missing_torch2trt_says_how_to_install(monkeypatch):
    trtd.install(monkeypatch, "8.6")
    t2d.uninstall(monkeypatch)
    with pytest.raises(MissingDependency, match=r"git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && pip install \."):
        convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16")


@pytest.mark.parametrize("gen", ["8.6", "10.x"])
def test_fp16_engine_bytes_run_like_the_model(monkeypatch, gen):
    trt = trtd.install(monkeypatch, gen)
    t2 = t2d.install(monkeypatch)
    pycuda_double.install(monkeypatch)
    net, x = Net(), torch.rand(1, 3, 8, 8)
    plan = convert_with_torch2trt(net, x, "fp16", input_names=["input"], output_names=["logits"])
    spec = trtd.read_plan(plan)
    assert spec["trt_version"] == trt.__version__ and "FP16" in spec["flags"]
    call = t2._double.calls[-1]
    assert call["fp16_mode"] is True and call["int8_mode"] is False and call["max_batch_size"] is None  # not passed
    assert call["max_workspace_size"] == 1024 << 20
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine

    with TensorRTEngine(plan) as eng:
        out = eng.infer({"input": x.numpy()})["logits"]
    np.testing.assert_allclose(out, net(x).detach().numpy(), rtol=2e-3, atol=2e-3)


def test_int8_calibrates_from_a_calibration_set(monkeypatch):
    trtd.install(monkeypatch, "8.5")
    t2 = t2d.install(monkeypatch)
    cset = FakeCalibSet(6)
    plan = convert_with_torch2trt(Net(), torch.rand(1, 3, 8, 8), "int8", int8_calib_dataset=cset, calib_algorithm="minmax")
    spec = trtd.read_plan(plan)
    assert spec["int8"]["mode"] == "calibrator" and spec["int8"]["batches"] == 6
    assert spec["int8"]["header"] == "TRT-8502-MinMaxCalibration"
    # the dataset's numbers reached TensorRT through torch buffers' data_ptr()
    expect = max(float(np.abs(s).max()) for s in cset.samples) / 127.0
    input_name = spec["inputs"][0]["name"]
    assert spec["int8"]["scales"][input_name] == pytest.approx(expect, rel=1e-6)
    assert type(t2._double.calls[-1]["int8_calib_dataset"]).__name__ == "Torch2trtCalibDataset"


def test_option_errors(monkeypatch):
    trtd.install(monkeypatch, "8.6", fast_int8=False)
    t2d.install(monkeypatch)
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(BadInput, match="needs calibration data"):
        convert_with_torch2trt(Net(), x, "int8")
    with pytest.raises(BadInput, match="no fast INT8"):
        convert_with_torch2trt(Net(), x, "int8", int8_calib_dataset=FakeCalibSet())
    with pytest.raises(BadInput, match="only applies to --precision int8"):
        convert_with_torch2trt(Net(), x, "fp16", int8_calib_dataset=FakeCalibSet())
    with pytest.raises(BadInput, match="precision"):
        convert_with_torch2trt(Net(), x, "bf16")


def test_old_torch2trt_signature(monkeypatch):
    trtd.install(monkeypatch, "8.2", num_dla_cores=2)
    t2 = t2d.install(monkeypatch, legacy_signature=True)
    x = torch.zeros(2, 3, 8, 8)
    plan = convert_with_torch2trt(Net(), x, "fp16", max_batch_size=2)
    assert t2._double.calls[-1]["max_batch_size"] == 2
    assert trtd.read_plan(plan)["inputs"][0]["shape"] == [2, 3, 8, 8]
    with pytest.raises(BadInput, match=r"does not take \['default_device_type', 'dla_core', 'gpu_fallback'\]"):
        convert_with_torch2trt(Net(), x, "fp16", dla_core=0)


def test_dla_with_new_torch2trt(monkeypatch):
    trtd.install(monkeypatch, "8.5", num_dla_cores=2)
    t2d.install(monkeypatch)
    spec = trtd.read_plan(convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", dla_core=1))
    assert spec["device"] == "DLA" and spec["dla_core"] == 1 and "GPU_FALLBACK" in spec["flags"]


# ---- issue #12 items 2 and 3: what each torch2trt release really does with an option --------------
@pytest.mark.parametrize("release", ["v0.2.0", "v0.3.0"])
def test_dla_refused_where_torch2trt_would_silently_ignore_it(monkeypatch, release):
    """Every torch2trt signature has **kwargs: v0.2/v0.3 swallow dla_core and build a GPU engine."""
    trtd.install(monkeypatch, "8.5", num_dla_cores=2)
    t2 = t2d.install(monkeypatch, release=release)
    with pytest.raises(BadInput, match=r"does not take \['default_device_type', 'dla_core', 'gpu_fallback'\].*GPU engine"):
        convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", dla_core=1)
    assert t2._double.calls == []


def test_calib_batch_size_refused_on_master(monkeypatch):
    trtd.install(monkeypatch, "8.5")
    t2 = t2d.install(monkeypatch, release="master")
    with pytest.raises(BadInput, match="no int8_calib_batch_size"):
        convert_with_torch2trt(Net(), torch.rand(1, 3, 8, 8), "int8", int8_calib_dataset=FakeCalibSet(4), calib_batch_size=2)
    assert t2._double.calls == []


def test_master_max_batch_size_only_when_asked_and_dla(monkeypatch):
    """master turns any max_batch_size into a profile (min 1, max N); with DLA it raises."""
    trtd.install(monkeypatch, "8.5", num_dla_cores=2)
    t2 = t2d.install(monkeypatch, release="master")
    spec = trtd.read_plan(convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", dla_core=0))
    assert spec["device"] == "DLA" and spec["profiles"] == [] and t2._double.calls[-1]["max_batch_size"] is None
    spec = trtd.read_plan(convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", max_batch_size=4))
    assert spec["inputs"][0]["shape"][0] == -1 and spec["profiles"][0][spec["inputs"][0]["name"]][2][0] == 4
    with pytest.raises(BadInput, match="DLA cannot run"):
        convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", dla_core=0, max_batch_size=4)


def test_strict_types_refused_on_tensorrt_10(monkeypatch):
    trtd.install(monkeypatch, "10.x")
    t2d.install(monkeypatch, release="master")
    with pytest.raises(BadInput, match="STRICT_TYPES.*removed in 10.0"):
        convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", strict_types=True)
    trtd.install(monkeypatch, "8.6")
    t2 = t2d.install(monkeypatch, release="master")
    assert "FP16" in trtd.read_plan(convert_with_torch2trt(Net(), torch.zeros(1, 3, 8, 8), "fp16", strict_types=True))["flags"]
    assert t2._double.calls[-1]["strict_type_constraints"] is True


def test_master_calibrator_gets_items_it_can_hand_to_tensorrt(monkeypatch):
    """master's DatasetCalibrator returns each item's own data_ptr(): batch axis, float32, kept alive."""
    trtd.install(monkeypatch, "8.5")
    t2d.install(monkeypatch, release="master")
    cset = FakeCalibSet(5)
    spec = trtd.read_plan(convert_with_torch2trt(Net(), torch.rand(1, 3, 8, 8), "int8", int8_calib_dataset=cset,
                                                 calib_algorithm="minmax"))
    assert spec["int8"]["mode"] == "calibrator" and spec["int8"]["batches"] == 5
    expect = max(float(np.abs(s).max()) for s in cset.samples) / 127.0
    assert spec["int8"]["scales"][spec["inputs"][0]["name"]] == pytest.approx(expect, rel=1e-6)
