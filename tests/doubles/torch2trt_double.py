"""A test double of ``torch2trt`` (NVIDIA-AI-IOT/torch2trt) -- NOT torch2trt.

Mirrors the public entry point ``torch2trt(module, inputs, input_names=None,
output_names=None, log_level=..., fp16_mode=False, max_workspace_size=1<<25,
strict_type_constraints=False, keep_network=True, int8_mode=False,
int8_calib_dataset=None, int8_calib_algorithm=DEFAULT_CALIBRATION_ALGORITHM,
use_onnx=False, default_device_type=..., dla_core=0, gpu_fallback=True,
device_types={}, min_shapes=None, max_shapes=None, opt_shapes=None,
onnx_opset=None, max_batch_size=None, avg_timing_iterations=None, **kwargs)``
returning a ``TRTModule`` whose ``.engine`` is an ``ICudaEngine``.

Instead of torch2trt's per-op converters it exports the module to ONNX and builds
with whatever ``tensorrt`` is in ``sys.modules`` (the TensorRT double in tests), so
flags, calibration (through a ``DatasetCalibrator`` like torch2trt's: items are lists
of tensors without a batch axis, copied into batch buffers whose ``data_ptr()`` go
to TensorRT) and serialization are real.  ``module._double.calls`` records kwargs.
"""
import importlib.machinery
import io
import sys
import types
import warnings
from typing import Any, List


def make_torch2trt(legacy_signature: bool = False) -> "types.ModuleType":
    """``legacy_signature=True`` mirrors old torch2trt (max_batch_size=1, no DLA/ONNX kwargs, no **kwargs)."""
    import tensorrt as trt  # the double installed by the test
    import torch

    mod = types.ModuleType("torch2trt")
    mod.__spec__ = importlib.machinery.ModuleSpec("torch2trt", None)
    mod.__version__ = "0.5.0 (double)"
    state = types.SimpleNamespace(calls=[])
    mod._double = state
    mod.DEFAULT_CALIBRATION_ALGORITHM = trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2

    class DatasetCalibrator(trt.IInt8Calibrator):
        def __init__(self, dataset: Any, batch_size: int = 1, algorithm: Any = mod.DEFAULT_CALIBRATION_ALGORITHM) -> None:
            trt.IInt8Calibrator.__init__(self)
            self.dataset = dataset
            self.batch_size = batch_size
            self.algorithm = algorithm
            inputs = dataset[0]  # no batch dimension
            self.buffers = [torch.zeros((batch_size,) + tuple(t.shape), dtype=t.dtype, device=t.device).contiguous() for t in inputs]
            self.count = 0

        def get_batch(self, *args: Any, **kwargs: Any) -> "List[int]":
            if self.count < len(self.dataset):
                for i in range(self.batch_size):
                    inputs = self.dataset[self.count % len(self.dataset)]
                    for j, tensor in enumerate(inputs):
                        self.buffers[j][i].copy_(tensor)
                    self.count += 1
                return [int(buf.data_ptr()) for buf in self.buffers]
            return []

        def get_algorithm(self) -> Any:
            return self.algorithm

        def get_batch_size(self) -> int:
            return self.batch_size

        def read_calibration_cache(self) -> Any:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            pass

    class TRTModule(torch.nn.Module):
        def __init__(self, engine: Any = None, input_names: Any = None, output_names: Any = None) -> None:
            super().__init__()
            self.engine = engine
            self.context = engine.create_execution_context() if engine is not None else None
            self.input_names = input_names
            self.output_names = output_names

    def _build(module: Any, inputs: "List[Any]", input_names: "List[str]", output_names: "List[str]", fp16_mode: bool,
               int8_mode: bool, int8_calib_dataset: Any, int8_calib_algorithm: Any, max_workspace_size: int,
               strict_type_constraints: bool, max_batch_size: Any, dla: Any, int8_calib_batch_size: int = 1) -> Any:
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is what opset 13 needs
            torch.onnx.export(module, tuple(inputs), buf, input_names=input_names, output_names=output_names,
                              opset_version=13, dynamo=False)
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(buf.getvalue()):
            raise RuntimeError("torch2trt double: ONNX parse failed: {}".format(parser.get_error(0).desc()))
        config = builder.create_builder_config()
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, max_workspace_size)
        else:
            config.max_workspace_size = max_workspace_size
        if fp16_mode:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8_mode:
            config.set_flag(trt.BuilderFlag.INT8)
            dataset = int8_calib_dataset
            if dataset is None:
                dataset = [[t[0]] for t in inputs]  # torch2trt: TensorBatchDataset of the example inputs
            config.int8_calibrator = DatasetCalibrator(dataset, batch_size=int8_calib_batch_size, algorithm=int8_calib_algorithm)
        if strict_type_constraints:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        if dla is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = dla[0]
            if dla[1]:
                config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            return None
        return trt.Runtime(logger).deserialize_cuda_engine(plan)

    def _names(given: Any, prefix: str, n: int) -> "List[str]":
        return list(given) if given is not None else ["{}_{}".format(prefix, i) for i in range(n)]

    def _outputs_of(module: Any, inputs: "List[Any]") -> int:
        with torch.no_grad():
            out = module(*inputs)
        return len(out) if isinstance(out, (tuple, list)) else 1

    if legacy_signature:
        def torch2trt(module, inputs, input_names=None, output_names=None, max_batch_size=1, fp16_mode=False,
                      max_workspace_size=1 << 25, strict_type_constraints=False, keep_network=True, int8_mode=False,
                      int8_calib_dataset=None, int8_calib_algorithm=mod.DEFAULT_CALIBRATION_ALGORITHM,
                      int8_calib_batch_size=1, log_level=None):
            state.calls.append(dict(locals(), module=None, inputs=None))
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            ins = _names(input_names, "input", len(inputs))
            outs = _names(output_names, "output", _outputs_of(module, inputs))
            engine = _build(module, inputs, ins, outs, fp16_mode, int8_mode, int8_calib_dataset, int8_calib_algorithm,
                            max_workspace_size, strict_type_constraints, max_batch_size, None, int8_calib_batch_size)
            return TRTModule(engine, ins, outs)
    else:
        def torch2trt(module, inputs, input_names=None, output_names=None, log_level=None, fp16_mode=False,
                      max_workspace_size=1 << 25, strict_type_constraints=False, keep_network=True, int8_mode=False,
                      int8_calib_dataset=None, int8_calib_algorithm=mod.DEFAULT_CALIBRATION_ALGORITHM, use_onnx=False,
                      default_device_type=trt.DeviceType.GPU, dla_core=0, gpu_fallback=True, device_types={},
                      min_shapes=None, max_shapes=None, opt_shapes=None, onnx_opset=None, max_batch_size=None,
                      avg_timing_iterations=None, **kwargs):
            state.calls.append(dict(locals(), module=None, inputs=None))
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            ins = _names(input_names, "input", len(inputs))
            outs = _names(output_names, "output", _outputs_of(module, inputs))
            dla = (dla_core, gpu_fallback) if default_device_type == trt.DeviceType.DLA else None
            engine = _build(module, inputs, ins, outs, fp16_mode, int8_mode, int8_calib_dataset, int8_calib_algorithm,
                            max_workspace_size, strict_type_constraints, max_batch_size, dla,
                            kwargs.get("int8_calib_batch_size", 1))
            return TRTModule(engine, ins, outs)

    mod.torch2trt = torch2trt
    mod.TRTModule = TRTModule
    mod.DatasetCalibrator = DatasetCalibrator
    return mod


def install(monkeypatch: Any, **kwargs: Any) -> "types.ModuleType":
    """Put a torch2trt double in ``sys.modules`` (install the TensorRT double first)."""
    mod = make_torch2trt(**kwargs)
    monkeypatch.setitem(sys.modules, "torch2trt", mod)
    return mod


def uninstall(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "torch2trt", None)
