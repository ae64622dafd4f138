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

Per release (NVIDIA-AI-IOT/torch2trt, ``torch2trt/torch2trt.py``), every signature ends in
``**kwargs`` -- an unknown keyword is swallowed, never refused:

* ``v0.2.0`` (L482-497) / ``v0.3.0`` (L493-508): ``max_batch_size=1`` 6th, ``int8_calib_batch_size=1``,
  no ``dla_core``/``gpu_fallback``/``default_device_type``: passed, they are ignored (a GPU engine).
  (The real ones build with the pre-TRT-8 ``builder.fp16_mode``/``build_cuda_engine`` API and fail on
  TensorRT 8; the double builds anyway so the option handling can be tested.)
* ``v0.4.0`` (L580-599): adds ``default_device_type, dla_core, gpu_fallback, device_types`` (used L657-660).
* ``v0.5.0`` (L654-677) / ``master`` 4e820ae (L518-541): ``max_batch_size=None`` at the end, no
  ``int8_calib_batch_size`` (swallowed); ``max_batch_size`` N becomes a profile batch min 1 / opt
  example / max N (master L579-582), and with DLA a dynamic axis raises ValueError (L586-589);
  ``strict_type_constraints`` sets ``BuilderFlag.STRICT_TYPES`` unguarded (L665-666: AttributeError on
  TensorRT 10); ``DatasetCalibrator`` (``dataset_calibrator.py``) hands TensorRT each item's own
  ``data_ptr()`` -- no batch buffer, no dtype conversion, nothing kept alive.
* no ``__version__`` at any tag; setup.py says 0.5.0 on master too (``dist_version``).
"""
import importlib.machinery
import io
import weakref
import sys
import types
import warnings
from typing import Any, Dict, List


RELEASES = ("v0.2.0", "v0.3.0", "v0.4.0", "v0.5.0", "master")


def make_torch2trt(legacy_signature: bool = False, release: str = "master") -> "types.ModuleType":
    """``release``: one of RELEASES; ``legacy_signature=True`` is ``release="v0.3.0"``."""
    import tensorrt as trt  # the double installed by the test
    import torch

    if legacy_signature:
        release = "v0.3.0"
    if release not in RELEASES:
        raise ValueError("release must be one of {}".format(RELEASES))
    mod = types.ModuleType("torch2trt")
    mod.__spec__ = importlib.machinery.ModuleSpec("torch2trt", None)
    mod.dist_version = "0.5.0" if release == "master" else release[1:]  # what package metadata says
    state = types.SimpleNamespace(calls=[], release=release, ignored=[])
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

    class MasterDatasetCalibrator(trt.IInt8Calibrator):
        """master/v0.5.0 ``dataset_calibrator.py``: ``get_batch`` returns ``[int(t.data_ptr()) for t in
        flatten(dataset[count])]`` -- the item's own memory.  The double checks what the real one assumes:
        the item has the network's rank and dtype, is contiguous, and is still alive after get_batch returns."""

        def __init__(self, dataset: Any, algorithm: Any = mod.DEFAULT_CALIBRATION_ALGORITHM, cache_file: Any = None,
                     rank: int = 4) -> None:
            trt.IInt8Calibrator.__init__(self)
            self.dataset, self.algorithm, self.count, self.rank = dataset, algorithm, 0, rank

        def get_batch(self, *args: Any, **kwargs: Any) -> "List[int]":
            if self.count >= len(self.dataset):
                return []
            tensors = list(self.dataset[self.count])
            self.count += 1
            for t in tensors:
                if t.dim() != self.rank or t.dtype != torch.float32 or not t.is_contiguous():
                    raise ValueError("calibration item {} {} is not a contiguous float32 tensor of rank {}: TensorRT "
                                     "would read garbage through its data_ptr()".format(tuple(t.shape), t.dtype, self.rank))
            ptrs = [int(t.data_ptr()) for t in tensors]
            refs = [weakref.ref(t) for t in tensors]
            del tensors
            if any(r() is None for r in refs):
                raise RuntimeError("calibration item freed when get_batch returned: TensorRT reads freed memory")
            return ptrs

        def get_algorithm(self) -> Any:
            return self.algorithm

        def get_batch_size(self) -> int:
            return 1

        def read_calibration_cache(self) -> Any:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            return None

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
        new = release in ("v0.5.0", "master")
        profile_batch = new and max_batch_size is not None and int(max_batch_size) != int(inputs[0].shape[0])
        if profile_batch and dla is not None:
            raise ValueError("Dataset cannot have multiple shapes when using DLA")  # master L586-589
        dyn = {n: {0: "N"} for n in list(input_names) + list(output_names)} if profile_batch else None
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is what opset 13 needs
            torch.onnx.export(module, tuple(inputs), buf, input_names=input_names, output_names=output_names,
                              opset_version=13, dynamo=False, dynamic_axes=dyn)
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
        if profile_batch:  # master L579-582 + L674-685: min batch 1, opt = the example's, max N
            profile = builder.create_optimization_profile()
            for n, t in zip(input_names, inputs):
                rest = tuple(t.shape[1:])
                profile.set_shape(n, (1,) + rest, tuple(t.shape), (int(max_batch_size),) + rest)
            config.add_optimization_profile(profile)
            if int8_mode:
                config.set_calibration_profile(profile)
        if fp16_mode:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8_mode:
            config.set_flag(trt.BuilderFlag.INT8)
            dataset = int8_calib_dataset
            if new:
                if dataset is None:
                    dataset = [[t[0:1]] for t in inputs]
                config.int8_calibrator = MasterDatasetCalibrator(dataset, algorithm=int8_calib_algorithm, rank=inputs[0].dim())
            else:
                if dataset is None:
                    dataset = [[t[0]] for t in inputs]  # torch2trt: TensorBatchDataset of the example inputs
                config.int8_calibrator = DatasetCalibrator(dataset, batch_size=int8_calib_batch_size, algorithm=int8_calib_algorithm)
        if strict_type_constraints:
            if release == "master":
                config.set_flag(trt.BuilderFlag.STRICT_TYPES)  # unguarded (master L665-666): AttributeError on 10.x
            else:
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

    def _ignored(kwargs: "Dict[str, Any]", used: "List[str]") -> None:
        state.ignored.append(sorted(k for k in kwargs if k not in used))

    if release in ("v0.2.0", "v0.3.0"):
        def torch2trt(module, inputs, input_names=None, output_names=None, log_level=None, max_batch_size=1, fp16_mode=False,
                      max_workspace_size=1 << 25, strict_type_constraints=False, keep_network=True, int8_mode=False,
                      int8_calib_dataset=None, int8_calib_algorithm=mod.DEFAULT_CALIBRATION_ALGORITHM,
                      int8_calib_batch_size=1, use_onnx=False, **kwargs):
            state.calls.append(dict(locals(), module=None, inputs=None))
            _ignored(kwargs, [])  # kwargs.update(locals()) -> ConversionContext; nothing reads them
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            ins = _names(input_names, "input", len(inputs))
            outs = _names(output_names, "output", _outputs_of(module, inputs))
            engine = _build(module, inputs, ins, outs, fp16_mode, int8_mode, int8_calib_dataset, int8_calib_algorithm,
                            max_workspace_size, strict_type_constraints, max_batch_size, None, int8_calib_batch_size)
            return TRTModule(engine, ins, outs)
    elif release == "v0.4.0":
        def torch2trt(module, inputs, input_names=None, output_names=None, log_level=None, max_batch_size=1, fp16_mode=False,
                      max_workspace_size=1 << 25, strict_type_constraints=False, keep_network=True, int8_mode=False,
                      int8_calib_dataset=None, int8_calib_algorithm=mod.DEFAULT_CALIBRATION_ALGORITHM,
                      int8_calib_batch_size=1, use_onnx=False, default_device_type=trt.DeviceType.GPU, dla_core=0,
                      gpu_fallback=True, device_types={}, **kwargs):
            state.calls.append(dict(locals(), module=None, inputs=None))
            _ignored(kwargs, [])
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            ins = _names(input_names, "input", len(inputs))
            outs = _names(output_names, "output", _outputs_of(module, inputs))
            dla = (dla_core, gpu_fallback) if default_device_type == trt.DeviceType.DLA else None
            engine = _build(module, inputs, ins, outs, fp16_mode, int8_mode, int8_calib_dataset, int8_calib_algorithm,
                            max_workspace_size, strict_type_constraints, max_batch_size, dla, int8_calib_batch_size)
            return TRTModule(engine, ins, outs)
    else:
        def torch2trt(module, inputs, input_names=None, output_names=None, log_level=None, fp16_mode=False,
                      max_workspace_size=1 << 25, strict_type_constraints=False, keep_network=True, int8_mode=False,
                      int8_calib_dataset=None, int8_calib_algorithm=mod.DEFAULT_CALIBRATION_ALGORITHM, use_onnx=False,
                      default_device_type=trt.DeviceType.GPU, dla_core=0, gpu_fallback=True, device_types={},
                      min_shapes=None, max_shapes=None, opt_shapes=None, onnx_opset=None, max_batch_size=None,
                      avg_timing_iterations=None, **kwargs):
            state.calls.append(dict(locals(), module=None, inputs=None))
            _ignored(kwargs, [])  # e.g. a leftover batch-size keyword from v0.4: swallowed, no effect
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            ins = _names(input_names, "input", len(inputs))
            outs = _names(output_names, "output", _outputs_of(module, inputs))
            dla = (dla_core, gpu_fallback) if default_device_type == trt.DeviceType.DLA else None
            engine = _build(module, inputs, ins, outs, fp16_mode, int8_mode, int8_calib_dataset, int8_calib_algorithm,
                            max_workspace_size, strict_type_constraints, max_batch_size, dla)
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
