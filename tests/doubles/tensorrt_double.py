"""A test double of the ``tensorrt`` Python module -- NOT TensorRT.

It mirrors NVIDIA's documented Python API for four generations so code that uses
TensorRT by feature detection can be tested on a CPU-only machine:

=========  ==========  ==================================================================
generation  version     what differs (as documented by NVIDIA)
=========  ==========  ==================================================================
"8.2"       8.2.1.8     JetPack 4.6.  ``Builder.build_engine`` + ``build_serialized_network``;
                        ``IBuilderConfig.max_workspace_size`` only (no memory pools);
                        binding API only (``num_bindings``, ``get_binding_*``,
                        ``binding_is_input``); ``execute_async_v2``; ``set_binding_shape``.
"8.5"       8.5.2.2     JetPack 5.1.  Adds ``set_memory_pool_limit``/``MemoryPoolType`` (8.4),
                        the tensor-name API (``num_io_tensors``, ``get_tensor_*``),
                        ``set_tensor_address`` + ``execute_async_v3``, ``set_input_shape``.
                        Bindings, ``execute_async_v2``, ``build_engine`` still present.
"8.6"       8.6.2.3     JetPack 6.0 DP.  As 8.5 (+ FP8 data type).
"10.x"      10.3.0.30   JetPack 6.1/6.2.  ``build_engine``, ``max_workspace_size``,
                        ``Builder.max_batch_size``, the binding API, ``execute_async_v2``,
                        ``set_binding_shape`` and ``BuilderFlag.STRICT_TYPES`` REMOVED;
                        ``EXPLICIT_BATCH`` deprecated and ignored (always explicit);
                        ``ParserError.node_name()/node_operator()`` added.
=========  ==========  ==================================================================

Return conventions follow the real bindings: ``build_serialized_network``,
``build_engine`` and ``deserialize_cuda_engine`` return ``None`` on failure (after
logging ERRORs to the logger); ``OnnxParser.parse`` returns False and records
``ParserError`` objects (``code()``, ``desc()``, ``node()``, ...); Python subclasses of
``ILogger``/``IInt8*Calibrator`` must call the base ``__init__`` (pybind11 raises
``TypeError`` otherwise); pure-virtual methods left unimplemented raise RuntimeError.

What the double does for real, so tests check numbers rather than call logs:

* the ONNX model is parsed with ``onnx`` into a network of layers (one per node);
* the "plan" it serializes holds the ONNX bytes plus the build configuration
  (precision flags, profiles, calibration scales, dynamic ranges, workspace, DLA);
* an execution context runs the ONNX model with ONNX Runtime over memory
  addressed by integer pointers (host memory: numpy arrays' ``ctypes.data`` or the
  pycuda double's allocations), writing the outputs to the output pointers;
  FP16/INT8 engines round their float outputs through float16;
* an INT8 build with a calibrator calls ``read_calibration_cache``, then
  ``get_batch_size``/``get_batch(names)`` until it returns None (or an empty list),
  computes per-tensor ranges over every network tensor with ONNX Runtime, and hands
  ``write_calibration_cache`` a ``memoryview`` of a cache in TensorRT's text format
  (``TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2`` header, then
  ``tensor: <hex of the big-endian float32 scale>`` lines, scale = amax / 127).
  A cache whose header matches is used without calling ``get_batch``.

Introspection for tests lives under ``module._double`` (``builds``, ``events``);
nothing in the real API is named like that.
"""
import ctypes
import enum
import hashlib
import importlib.machinery
import json
import struct
import sys
import types
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

GENERATIONS = ("8.2", "8.5", "8.6", "10.x")
DEFAULT_VERSIONS = {"8.2": "8.2.1.8", "8.5": "8.5.2.2", "8.6": "8.6.2.3", "10.x": "10.3.0.30"}
PLAN_MAGIC = b"JDTRTDBL"  # the double's plan files; a real plan never starts like this
CACHE_MAGIC = b"JDTCACHE"

CALIB_NAMES = {
    "LEGACY_CALIBRATION": "LegacyCalibration",
    "ENTROPY_CALIBRATION": "EntropyCalibration",
    "ENTROPY_CALIBRATION_2": "EntropyCalibration2",
    "MINMAX_CALIBRATION": "MinMaxCalibration",
}

# ONNX ops the double's parser has no importer for, per generation (documented
# operator support: NonMaxSuppression came with INMSLayer in 8.5, RoiAlign in 8.6).
_UNSUPPORTED = {
    "8.2": {"NonMaxSuppression", "RoiAlign", "Unique", "StringNormalizer", "TfIdfVectorizer", "Col2Im", "Multinomial"},
    "8.5": {"RoiAlign", "Unique", "StringNormalizer", "TfIdfVectorizer", "Col2Im", "Multinomial"},
    "8.6": {"Unique", "StringNormalizer", "TfIdfVectorizer", "Col2Im", "Multinomial"},
    "10.x": {"Unique", "StringNormalizer", "TfIdfVectorizer", "Multinomial"},
}
# Layers DLA runs (roughly NVIDIA's DLA supported-layers list); others need GPU fallback.
_DLA_OPS = {
    "Conv", "ConvTranspose", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "MaxPool", "AveragePool",
    "GlobalAveragePool", "BatchNormalization", "Add", "Sub", "Mul", "Max", "Min", "Concat", "Gemm",
    "MatMul", "Flatten", "Reshape", "Softmax", "Resize", "Upsample", "Identity", "QuantizeLinear",
    "DequantizeLinear", "Constant", "PRelu",
}
_LAYER_OF_OP = {
    "Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION", "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION",
    "Tanh": "ACTIVATION", "LeakyRelu": "ACTIVATION", "Clip": "ACTIVATION", "HardSigmoid": "ACTIVATION",
    "MaxPool": "POOLING", "AveragePool": "POOLING", "GlobalAveragePool": "REDUCE", "ReduceMean": "REDUCE",
    "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE",
    "Max": "ELEMENTWISE", "Min": "ELEMENTWISE", "Pow": "ELEMENTWISE", "Concat": "CONCATENATION",
    "Gemm": "MATRIX_MULTIPLY", "MatMul": "MATRIX_MULTIPLY", "Flatten": "SHUFFLE", "Reshape": "SHUFFLE",
    "Transpose": "SHUFFLE", "Squeeze": "SHUFFLE", "Unsqueeze": "SHUFFLE", "Softmax": "SOFTMAX",
    "Resize": "RESIZE", "Upsample": "RESIZE", "Slice": "SLICE", "Gather": "GATHER", "TopK": "TOPK",
    "ArgMax": "TOPK", "Constant": "CONSTANT", "Identity": "IDENTITY", "Cast": "IDENTITY",
    "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "BatchNormalization": "SCALE",
    "NonMaxSuppression": "NMS", "Shape": "SHAPE", "Exp": "UNARY", "Log": "UNARY", "Sqrt": "UNARY",
    "Abs": "UNARY", "Neg": "UNARY", "Erf": "UNARY",
}
_LAYER_TYPES = sorted(set(_LAYER_OF_OP.values()) | {"PLUGIN_V2", "UNARY"})


# ---------------------------------------------------------------------------------------------
# host-memory helpers: the double's "device" pointers are host addresses
# ---------------------------------------------------------------------------------------------
try:  # bounds checks, stream queues and capture rules of the pycuda double (tests/doubles/pycuda_double.py)
    from . import pycuda_double as _pd
except ImportError:  # pragma: no cover -- loaded outside the doubles package
    import pycuda_double as _pd  # type: ignore[no-redef]
check_access, enqueue_on = _pd.check_access, _pd.enqueue_on


def read_pointer(ptr: int, shape: "Sequence[int]", dtype: Any) -> "np.ndarray":
    """Copy an array out of the memory at integer address ``ptr`` (bounds-checked against pycuda-double
    allocations: a real GPU would read garbage or fault with CUDA_ERROR_ILLEGAL_ADDRESS)."""
    dt = np.dtype(dtype)
    n = int(np.prod([int(s) for s in shape], dtype=np.int64)) * dt.itemsize
    check_access(int(ptr), n, "TensorRT read")
    if n == 0:
        return np.zeros(tuple(shape), dt)
    buf = (ctypes.c_char * n).from_address(int(ptr))
    return np.frombuffer(buf, dtype=dt).reshape(tuple(int(s) for s in shape)).copy()


def write_pointer(ptr: int, arr: "np.ndarray") -> None:
    a = np.ascontiguousarray(arr)
    check_access(int(ptr), a.nbytes, "TensorRT write")
    if a.nbytes:
        ctypes.memmove(int(ptr), a.ctypes.data, a.nbytes)


def _version_int(version: str) -> int:
    """NV_TENSORRT_VERSION: major*1000+minor*100+patch before 10, major*10000+... from 10."""
    parts = [int(p) for p in version.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    major, minor, patch = parts
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def parse_calibration_cache(data: bytes) -> "Tuple[str, Dict[str, float]]":
    """(header, {tensor: scale}) from TensorRT's calibration cache text."""
    text = bytes(data).decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "", {}
    scales: "Dict[str, float]" = {}
    for ln in lines[1:]:
        name, _, hexval = ln.rpartition(":")
        hexval = hexval.strip()
        try:
            scales[name.strip()] = struct.unpack(">f", bytes.fromhex(hexval))[0]
        except (ValueError, struct.error):
            continue
    return lines[0].strip(), scales


class _Model:
    """The ONNX model behind a network/engine, run with ONNX Runtime."""

    def __init__(self, data: bytes, onnx_mod: Any, proto: Any, gen: str) -> None:
        self.data = bytes(data)
        self.proto = proto
        self.onnx = onnx_mod
        init_names = {i.name for i in proto.graph.initializer}
        self.inputs = [self._info(v, gen) for v in proto.graph.input if v.name not in init_names]
        self.outputs = [self._info(v, gen) for v in proto.graph.output]
        self._sess = None
        self._sess_all = None
        self._all_names: "List[str]" = []

    @staticmethod
    def _info(v: Any, gen: str) -> "Dict[str, Any]":
        t = v.type.tensor_type
        dims = []
        for d in t.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1)
        return {"name": v.name, "elem": int(t.elem_type), "shape": dims}

    def session(self) -> Any:
        if self._sess is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            self._sess = ort.InferenceSession(self.data, so, providers=["CPUExecutionProvider"])
        return self._sess

    def run(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        sess = self.session()
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))

    def run_all(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        """Every float tensor of the graph (inputs, node outputs) for calibration."""
        if self._sess_all is None:
            import onnxruntime as ort

            onnx = self.onnx
            m = onnx.ModelProto()
            m.CopyFrom(self.proto)
            try:
                inferred = onnx.shape_inference.infer_shapes(m)
            except Exception:
                inferred = m
            known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
            have = {o.name for o in m.graph.output}
            for node in m.graph.node:
                for out in node.output:
                    if out and out not in have and out in known:
                        elem = known[out].type.tensor_type.elem_type
                        if elem in (1, 10):
                            m.graph.output.append(known[out])
                            have.add(out)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.log_severity_level = 3
            self._sess_all = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            self._all_names = [o.name for o in self._sess_all.get_outputs()]
        outs = dict(zip(self._all_names, self._sess_all.run(self._all_names, feeds)))
        for k, v in feeds.items():
            outs.setdefault(k, v)
        return outs


def make_tensorrt(
    generation: str = "8.6",
    *,
    version: "Optional[str]" = None,
    fast_int8: bool = True,
    fast_fp16: bool = True,
    num_dla_cores: int = 0,
    sm: int = 87,
) -> "types.ModuleType":
    """Build a fresh module object that mirrors ``tensorrt`` of one generation.

    ``fast_int8=False`` models Jetson Nano/TX1 (SM 5.3), whose builder reports
    ``platform_has_fast_int8 == False``; ``num_dla_cores=2`` models Xavier/Orin.  ``sm`` is the
    GPU the "engine" is built for and run on: plans record it and another SM refuses them.
    """
    if generation not in GENERATIONS:
        raise ValueError("generation must be one of {}".format(GENERATIONS))
    gen = generation
    ver = version or DEFAULT_VERSIONS[gen]
    v8 = gen.startswith("8.")
    v85 = gen != "8.2"
    mod = types.ModuleType("tensorrt")
    mod.__doc__ = "Test double of TensorRT {} (tests/doubles/tensorrt_double.py) -- not TensorRT.".format(ver)
    mod.__version__ = ver
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    state = types.SimpleNamespace(
        generation=gen, version=ver, fast_int8=fast_int8, fast_fp16=fast_fp16, num_dla_cores=num_dla_cores, sm=int(sm),
        builds=[], events=[], engines=[],
        fail_profile_async=False,  # tests: make set_optimization_profile_async fail (e.g. profile held elsewhere)
        # tests: an engine with layers CUDA graph capture does not permit (enqueue returns False while capturing)
        uncapturable=False,
        # tests: how many more execution contexts fit in device memory (None: no limit)
        context_budget=None,
    )
    mod._double = state

    # ---- enums ---------------------------------------------------------------------------
    def _enum(name: str, members: "Sequence[str]", start: int = 0) -> Any:
        e = enum.IntEnum(name, [(m, i + start) for i, m in enumerate(members)])
        e.__module__ = "tensorrt"
        setattr(mod, name, e)
        return e

    dtypes = ["FLOAT", "HALF", "INT8", "INT32", "BOOL"]
    if v85:
        dtypes.append("UINT8")
    if gen in ("8.6", "10.x"):
        dtypes.append("FP8")
    if gen == "10.x":
        dtypes += ["BF16", "INT64", "INT4"]
    DataType = _enum("DataType", dtypes)
    for alias, member in (("float32", "FLOAT"), ("float16", "HALF"), ("int8", "INT8"), ("int32", "INT32"),
                          ("bool", "BOOL"), ("uint8", "UINT8"), ("bfloat16", "BF16"), ("int64", "INT64"),
                          ("fp8", "FP8")):
        if hasattr(DataType, member):
            setattr(mod, alias, getattr(DataType, member))
    _np_of = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
              "UINT8": np.uint8, "INT64": np.int64}

    def nptype(trt_type: Any) -> Any:
        name = DataType(int(trt_type)).name
        if name not in _np_of:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return _np_of[name]

    def volume(iterable: "Sequence[int]") -> int:
        v = 1
        for x in iterable:
            v *= int(x)
        return v

    mod.nptype = nptype
    mod.volume = volume

    TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    TensorLocation = _enum("TensorLocation", ["DEVICE", "HOST"])
    # trt.ErrorCode is the ONNX *parser* enum (python/src/parsers/pyOnnx.cpp: 8.2 L93, 8.5 L94, 8.6 L124 --
    # 9 members; 10.3 L153 adds UNSUPPORTED_NODE_ATTR/INPUT/DATATYPE/DYNAMIC/SHAPE and REFIT_FAILED).
    # The core nvinfer1::ErrorCode is trt.ErrorCodeTRT (pyCore.cpp 8.2 L521, 10.3 L813), the same 11 members.
    _enum("ErrorCode", ["SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED",
                        "INVALID_VALUE", "INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH", "UNSUPPORTED_NODE"]
          + (["UNSUPPORTED_NODE_ATTR", "UNSUPPORTED_NODE_INPUT", "UNSUPPORTED_NODE_DATATYPE", "UNSUPPORTED_NODE_DYNAMIC",
              "UNSUPPORTED_NODE_SHAPE", "REFIT_FAILED"] if gen == "10.x" else []))
    _enum("ErrorCodeTRT", ["SUCCESS", "UNSPECIFIED_ERROR", "INTERNAL_ERROR", "INVALID_ARGUMENT", "INVALID_CONFIG",
                           "FAILED_ALLOCATION", "FAILED_INITIALIZATION", "FAILED_EXECUTION", "FAILED_COMPUTATION",
                           "INVALID_STATE", "UNSUPPORTED_STATE"])
    ErrorCode = mod.ErrorCode
    CalibrationAlgoType = _enum("CalibrationAlgoType", list(CALIB_NAMES))
    DeviceType = _enum("DeviceType", ["GPU", "DLA"])
    LayerType = _enum("LayerType", _LAYER_TYPES)
    if gen != "8.2":
        _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM"]
              + (["TACTIC_DRAM"] if gen != "8.5" else []))
    flags = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK"]
    if v8:
        flags.append("STRICT_TYPES")
    flags += ["REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE",
              "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS"]
    if gen in ("8.6", "10.x"):
        flags += ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8"]
    if gen == "10.x":
        flags += ["ERROR_ON_TIMING_CACHE_MISS", "BF16", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN",
                  "WEIGHT_STREAMING", "INT4"]
    BuilderFlag = _enum("BuilderFlag", flags)
    NetworkDefinitionCreationFlag = _enum(
        "NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"] if v8 else ["EXPLICIT_BATCH", "STRONGLY_TYPED"]
    )

    def _onnx_dtype(elem: int) -> Any:
        table = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL", 2: "UINT8", 7: "INT64" if gen == "10.x" else "INT32"}
        name = table.get(elem)
        if name is None or not hasattr(DataType, name):
            return None
        return getattr(DataType, name)

    # ---- common objects ---------------------------------------------------------------------
    class Dims(tuple):
        """Stand-in for trt.Dims: a sequence of ints (-1 for dynamic)."""

        def __new__(cls, shape: "Sequence[int]" = ()) -> "Dims":
            return tuple.__new__(cls, [int(s) for s in shape])

    mod.Dims = Dims

    class IHostMemory(bytes):
        """Serialized data.  Real IHostMemory supports the buffer protocol (bytes(), memoryview())."""

        @property
        def nbytes(self) -> int:
            return len(self)

        @property
        def dtype(self) -> Any:
            return DataType.UINT8 if hasattr(DataType, "UINT8") else DataType.INT8

    mod.IHostMemory = IHostMemory

    def _require_init(obj: Any, base: str) -> None:
        if not getattr(obj, "_jd_initialized", False):
            raise TypeError("tensorrt.tensorrt.{}.__init__() must be called when overriding __init__".format(base))

    class ILogger:
        Severity = enum.IntEnum("Severity", [("INTERNAL_ERROR", 0), ("ERROR", 1), ("WARNING", 2), ("INFO", 3), ("VERBOSE", 4)])

        def __init__(self) -> None:
            self._jd_initialized = True

        def log(self, severity: Any, msg: str) -> None:
            raise RuntimeError('Tried to call pure virtual function "ILogger::log"')

    Severity = ILogger.Severity

    class Logger(ILogger):
        INTERNAL_ERROR = Severity.INTERNAL_ERROR
        ERROR = Severity.ERROR
        WARNING = Severity.WARNING
        INFO = Severity.INFO
        VERBOSE = Severity.VERBOSE

        def __init__(self, min_severity: Any = Severity.WARNING) -> None:
            ILogger.__init__(self)
            self.min_severity = min_severity
            self.messages: "List[Tuple[Any, str]]" = []

        def log(self, severity: Any, msg: str) -> None:
            self.messages.append((severity, msg))
            if int(severity) <= int(self.min_severity):
                sys.stderr.write("[TRT double] [{}] {}\n".format(Severity(int(severity)).name[0], msg))

    mod.ILogger = ILogger
    mod.Logger = Logger

    def _log(logger: Any, sev: Any, msg: str) -> None:
        state.events.append((Severity(int(sev)).name, msg))
        logger.log(sev, msg)

    # One logger per process before 8.4.1: while any Builder/Runtime is alive, one created with a
    # different logger gets this warning and the existing logger is used instead
    # (NVIDIA/TensorRT#1475, TensorRT 8.0.1; #1539: "should have been fixed in the latest TRT
    # (8.4.1)", nvpohanh 2022-06-15).  The 8.2 CHANGELOG claims otherwise; the double follows the
    # maintainer's statement (the stricter one).  state.live counts live Builder/Runtime objects.
    single_logger = tuple(int(p) for p in ver.split(".")[:3]) < (8, 4, 1)
    state.live = 0
    state.active_logger = None
    _LOGGER_WARNING = ("The logger passed into createInferRuntime differs from one already provided for an existing "
                       "builder, runtime, or refitter. TensorRT maintains only a single logger pointer at any given "
                       "time, so the existing value, which can be retrieved with getLogger(), will be used instead. "
                       "In order to use a new logger, first destroy all existing builder, runner or refitter objects.")

    def _take_logger(obj: Any, logger: Any) -> Any:
        """The logger ``obj`` (a Builder/Runtime) will really use; registers it as live."""
        import weakref

        if not single_logger:
            return logger
        if state.live and state.active_logger is not None and state.active_logger is not logger:
            _log(state.active_logger, Severity.WARNING, _LOGGER_WARNING)
            logger = state.active_logger
        state.active_logger = logger
        state.live += 1

        def _gone() -> None:
            state.live -= 1
            if state.live == 0:
                state.active_logger = None

        weakref.finalize(obj, _gone)
        return logger

    def _init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        _require_init(logger, "ILogger")
        return True

    mod.init_libnvinfer_plugins = _init_libnvinfer_plugins

    # ---- network ----------------------------------------------------------------------------
    class ITensor:
        def __init__(self, name: str, shape: "Sequence[int]", dtype: Any, is_input: bool = False) -> None:
            self.name = name
            self.shape = Dims(shape)
            self.dtype = dtype
            self.is_network_input = is_input
            self.is_network_output = False
            self.location = TensorLocation.DEVICE
            self._range: "Optional[Tuple[float, float]]" = None

        def set_dynamic_range(self, min: float, max: float) -> bool:  # noqa: A002 (TensorRT's names)
            if not (float(min) <= float(max)):
                return False
            self._range = (float(min), float(max))
            return True

        @property
        def dynamic_range(self) -> "Optional[Tuple[float, float]]":
            return self._range

        def reset_dynamic_range(self) -> None:
            self._range = None

    class ILayer:
        def __init__(self, name: str, op: str, inputs: "List[ITensor]", outputs: "List[ITensor]") -> None:
            self.name = name
            self.type = getattr(LayerType, _LAYER_OF_OP.get(op, "UNARY"))
            self._op = op
            self._inputs = inputs
            self._outputs = outputs
            self.precision = DataType.FLOAT

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        def get_input(self, index: int) -> "Optional[ITensor]":
            return self._inputs[index] if 0 <= index < len(self._inputs) else None

        def get_output(self, index: int) -> "Optional[ITensor]":
            return self._outputs[index] if 0 <= index < len(self._outputs) else None

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            explicit_bit = 1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
            self._explicit = (not v8) or bool(int(flags) & explicit_bit)
            self._flags = int(flags)
            self._inputs: "List[ITensor]" = []
            self._outputs: "List[ITensor]" = []
            self._layers: "List[ILayer]" = []
            self._model: "Optional[_Model]" = None
            self.name = "network"

        @property
        def has_implicit_batch_dimension(self) -> bool:
            return not self._explicit

        @property
        def flags(self) -> int:
            return self._flags

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        @property
        def num_layers(self) -> int:
            return len(self._layers)

        def get_input(self, index: int) -> "Optional[ITensor]":
            return self._inputs[index] if 0 <= index < len(self._inputs) else None

        def get_output(self, index: int) -> "Optional[ITensor]":
            return self._outputs[index] if 0 <= index < len(self._outputs) else None

        def get_layer(self, index: int) -> "Optional[ILayer]":
            return self._layers[index] if 0 <= index < len(self._layers) else None

        def mark_output(self, tensor: "ITensor") -> None:
            tensor.is_network_output = True
            if tensor not in self._outputs:
                self._outputs.append(tensor)

    mod.ITensor = ITensor
    mod.ILayer = ILayer
    mod.INetworkDefinition = INetworkDefinition

    # ---- ONNX parser --------------------------------------------------------------------------
    class ParserError:
        def __init__(self, code: Any, desc: str, node: int = -1, node_name: str = "", node_op: str = "",
                     file: str = "ModelImporter.cpp", func: str = "parseGraph", line: int = 0) -> None:
            self._code, self._desc, self._node = code, desc, node
            self._node_name, self._node_op = node_name, node_op
            self._file, self._func, self._line = file, func, line

        def code(self) -> Any:
            return self._code

        def desc(self) -> str:
            return self._desc

        def file(self) -> str:
            return self._file

        def func(self) -> str:
            return self._func

        def line(self) -> int:
            return self._line

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:
            return self._node_name

        def node_operator(self) -> str:
            return self._node_op

        def local_function_stack(self) -> "List[str]":
            return []

        def local_function_stack_size(self) -> int:
            return 0

        def __str__(self) -> str:
            return "In node {} ({}): {}: {}".format(self._node, self._func, self._code.name, self._desc)

    if gen != "10.x":
        for name in ("node_name", "node_operator", "local_function_stack", "local_function_stack_size"):
            delattr(ParserError, name)
    mod.ParserError = ParserError

    class OnnxParser:
        def __init__(self, network: "INetworkDefinition", logger: Any) -> None:
            _require_init(logger, "ILogger")
            self._network = network
            self._logger = logger
            self._errors: "List[ParserError]" = []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> "Optional[ParserError]":
            return self._errors[index] if 0 <= index < len(self._errors) else None

        def clear_errors(self) -> None:
            self._errors = []

        def supports_operator(self, op_name: str) -> bool:
            return op_name not in _UNSUPPORTED[gen]

        def parse_from_file(self, model: str) -> bool:
            try:
                with open(model, "rb") as f:
                    data = f.read()
            except OSError:
                self._errors.append(ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED,
                                                "Failed to open file: {}".format(model), func="parseFromFile"))
                _log(self._logger, Severity.ERROR, "Failed to open file: {}".format(model))
                return False
            return self.parse(data, model)

        def parse(self, model: Any, path: "Optional[str]" = None) -> bool:
            import onnx

            net = self._network
            if net.has_implicit_batch_dimension:
                self._errors.append(ParserError(
                    ErrorCode.INVALID_VALUE,
                    'Assertion failed: !mImporterCtx.network()->hasImplicitBatchDimension() && "This version of the ONNX '
                    'parser only supports TensorRT INetworkDefinitions with an explicit batch dimension. Please ensure '
                    'the network was initialized with the EXPLICIT_BATCH flag."', func="parse"))
                _log(self._logger, Severity.ERROR, self._errors[-1].desc())
                return False
            data = bytes(model)
            try:
                proto = onnx.load_from_string(data)
                if not proto.graph.node and not proto.graph.output:
                    raise ValueError("empty graph")
            except Exception:
                self._errors.append(ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED,
                                                "Failed to parse ONNX model from file: {}".format(path or "<buffer>"),
                                                func="parse"))
                _log(self._logger, Severity.ERROR, "ModelImporter.cpp: Failed to parse ONNX model from file: {}".format(path or ""))
                return False
            ok = True
            for i, node in enumerate(proto.graph.node):
                custom = node.domain not in ("", "ai.onnx")
                if custom or node.op_type in _UNSUPPORTED[gen]:
                    _log(self._logger, Severity.INFO,
                         "No importer registered for op: {}. Attempting to import as plugin.".format(node.op_type))
                    self._errors.append(ParserError(
                        ErrorCode.UNSUPPORTED_NODE,
                        'Assertion failed: creator && "Plugin not found, are the plugin name, version, and namespace correct?"',
                        node=i, node_name=node.name, node_op=node.op_type, func="importFallbackPluginImporter"))
                    _log(self._logger, Severity.ERROR, "ModelImporter.cpp: While parsing node number {} [{} -> \"{}\"]: {}".format(
                        i, node.op_type, node.output[0] if node.output else "", self._errors[-1].desc()))
                    ok = False
                    if v8:  # 8.x parsers stop at the first failing node; 10.x reports them all
                        return False
            if not ok:
                return False
            m = _Model(data, onnx, proto, gen)
            tensors: "Dict[str, ITensor]" = {}
            for info in m.inputs:
                dt = _onnx_dtype(info["elem"])
                if dt is None:
                    self._errors.append(ParserError(ErrorCode.UNSUPPORTED_GRAPH,
                                                    "Unsupported ONNX data type: {}".format(info["elem"]), func="importInput"))
                    return False
                t = ITensor(info["name"], info["shape"], dt, is_input=True)
                net._inputs.append(t)
                tensors[t.name] = t
            for i, node in enumerate(proto.graph.node):
                outs = [ITensor(o, [], DataType.FLOAT) for o in node.output if o]
                for t in outs:
                    tensors[t.name] = t
                ins = [tensors[n] for n in node.input if n in tensors]
                net._layers.append(ILayer(node.name or "{}_{}".format(node.op_type, i), node.op_type, ins, outs))
            for info in m.outputs:
                t = tensors.get(info["name"]) or ITensor(info["name"], info["shape"], DataType.FLOAT)
                t.shape = Dims(info["shape"])
                t.dtype = _onnx_dtype(info["elem"]) or DataType.FLOAT
                net.mark_output(t)
            net._model = m
            return True

    mod.OnnxParser = OnnxParser

    # ---- calibrators ----------------------------------------------------------------------------
    class IInt8Calibrator:
        def __init__(self) -> None:
            self._jd_initialized = True

        def get_batch_size(self) -> int:
            raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::getBatchSize"')

        def get_batch(self, names: "List[str]") -> Any:
            raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::getBatch"')

        def get_algorithm(self) -> Any:
            raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::getAlgorithm"')

        def read_calibration_cache(self) -> Any:
            raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::readCalibrationCache"')

        def write_calibration_cache(self, cache: Any) -> None:
            raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::writeCalibrationCache"')

    def _calib_class(name: str, algo: str) -> type:
        def get_algorithm(self: Any) -> Any:
            return getattr(CalibrationAlgoType, algo)

        cls = type(name, (IInt8Calibrator,), {"get_algorithm": get_algorithm})
        cls.__module__ = "tensorrt"
        setattr(mod, name, cls)
        return cls

    mod.IInt8Calibrator = IInt8Calibrator
    _calib_class("IInt8LegacyCalibrator", "LEGACY_CALIBRATION")
    _calib_class("IInt8EntropyCalibrator", "ENTROPY_CALIBRATION")
    _calib_class("IInt8EntropyCalibrator2", "ENTROPY_CALIBRATION_2")
    _calib_class("IInt8MinMaxCalibrator", "MINMAX_CALIBRATION")

    # ---- builder config, profiles, timing cache ----------------------------------------------------
    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: "Dict[str, List[Dims]]" = {}
            self._valid = True

        def set_shape(self, input: str, min: "Sequence[int]", opt: "Sequence[int]", max: "Sequence[int]") -> None:  # noqa: A002
            lo, mid, hi = Dims(min), Dims(opt), Dims(max)
            if not (len(lo) == len(mid) == len(hi)) or any(not (a <= b <= c) or a < 0 for a, b, c in zip(lo, mid, hi)):
                self._valid = False
                state.events.append(("ERROR", "setDimensions: min <= opt <= max violated for input {}".format(input)))
                return
            self._shapes[input] = [lo, mid, hi]

        def get_shape(self, input: str) -> "List[Dims]":  # noqa: A002
            return list(self._shapes.get(input, []))

        def __bool__(self) -> bool:
            return self._valid

    mod.IOptimizationProfile = IOptimizationProfile

    class ITimingCache:
        def __init__(self, entries: "Optional[Dict[str, int]]" = None, sm: "Optional[int]" = None) -> None:
            self._entries: "Dict[str, int]" = dict(entries or {})
            self._sm = state.sm if sm is None else int(sm)  # the verification header's device

        def serialize(self) -> "IHostMemory":
            body = json.dumps({"trt": ver, "sm": self._sm, "entries": self._entries}, sort_keys=True).encode()
            return IHostMemory(CACHE_MAGIC + body)

        def combine(self, input_cache: "ITimingCache", ignore_mismatch: bool) -> bool:
            self._entries.update(input_cache._entries)
            return True

        def reset(self) -> bool:
            self._entries = {}
            return True

    mod.ITimingCache = ITimingCache

    class IBuilderConfig:
        def __init__(self, builder: "Builder") -> None:
            self._builder = builder
            self._flags = 0
            self._pools: "Dict[int, int]" = {}
            self._workspace = 0
            self.int8_calibrator = None
            self._profiles: "List[IOptimizationProfile]" = []
            self._calib_profile: "Optional[IOptimizationProfile]" = None
            self._timing_cache: "Optional[ITimingCache]" = None
            self.default_device_type = DeviceType.GPU
            self.DLA_core = -1
            self._layer_devices: "Dict[str, Any]" = {}
            self.profile_stream = 0
            self.avg_timing_iterations = 1

        # flags
        def set_flag(self, flag: Any) -> None:
            if not isinstance(flag, BuilderFlag):
                raise TypeError("set_flag(): incompatible function arguments (expected tensorrt.BuilderFlag)")
            self._flags |= 1 << int(flag)

        def clear_flag(self, flag: Any) -> None:
            self._flags &= ~(1 << int(flag))

        def get_flag(self, flag: Any) -> bool:
            return bool(self._flags & (1 << int(flag)))

        @property
        def flags(self) -> int:
            return self._flags

        @flags.setter
        def flags(self, value: int) -> None:
            self._flags = int(value)

        # memory
        @property
        def max_workspace_size(self) -> int:
            return self._workspace

        @max_workspace_size.setter
        def max_workspace_size(self, value: int) -> None:
            self._workspace = int(value)
            self._pools[0] = int(value)

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self._pools[int(pool)] = int(pool_size)
            if int(pool) == 0:
                self._workspace = int(pool_size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(int(pool), 0)

        # profiles
        def add_optimization_profile(self, profile: "IOptimizationProfile") -> int:
            if not profile:
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def num_optimization_profiles(self) -> int:
            return len(self._profiles)

        def set_calibration_profile(self, profile: "IOptimizationProfile") -> bool:
            self._calib_profile = profile
            return True

        def get_calibration_profile(self) -> "Optional[IOptimizationProfile]":
            return self._calib_profile

        # timing cache
        def create_timing_cache(self, serialized_timing_cache: Any) -> "ITimingCache":
            data = bytes(serialized_timing_cache)
            if not data:
                return ITimingCache()
            if not data.startswith(CACHE_MAGIC):
                _log(self._builder._logger, Severity.WARNING, "The timing cache is corrupted or not a timing cache: starting an empty one.")
                return ITimingCache()
            try:
                body = json.loads(data[len(CACHE_MAGIC):].decode())
            except ValueError:
                _log(self._builder._logger, Severity.WARNING, "The timing cache is corrupted: starting an empty one.")
                return ITimingCache()
            if body.get("trt") != ver:
                _log(self._builder._logger, Severity.WARNING, "The timing cache was created by TensorRT {}: starting an empty one.".format(body.get("trt")))
                return ITimingCache()
            return ITimingCache(body.get("entries", {}), body.get("sm", state.sm))

        def set_timing_cache(self, cache: "ITimingCache", ignore_mismatch: bool) -> bool:
            # Bound straight to IBuilderConfig::setTimingCache (pyCore.cpp 8.2 L805, 10.3 L1482): returns the
            # C++ bool, no exception; false when the cache's verification header (CUDA device properties)
            # differs and ignore_mismatch is false (include/NvInfer.h 8.2 L8401-8419, 10.3 L9268-9286).
            if cache._sm != state.sm and not ignore_mismatch:
                _log(self._builder._logger, Severity.ERROR, "The timing cache was created on a different device "
                     "(compute {}.{}); it cannot be used here.".format(cache._sm // 10, cache._sm % 10))
                return False
            self._timing_cache = cache
            return True

        def get_timing_cache(self) -> "Optional[ITimingCache]":
            return self._timing_cache

        # devices
        def can_run_on_DLA(self, layer: "ILayer") -> bool:
            return layer._op in _DLA_OPS

        def set_device_type(self, layer: "ILayer", device_type: Any) -> None:
            self._layer_devices[layer.name] = device_type

        def get_device_type(self, layer: "ILayer") -> Any:
            return self._layer_devices.get(layer.name, self.default_device_type)

    if gen == "8.2":
        for name in ("set_memory_pool_limit", "get_memory_pool_limit"):
            delattr(IBuilderConfig, name)
    if gen == "10.x":
        delattr(IBuilderConfig, "max_workspace_size")
    mod.IBuilderConfig = IBuilderConfig

    # ---- the build ---------------------------------------------------------------------------------
    def _flag_names(cfg: "IBuilderConfig") -> "List[str]":
        return [f.name for f in BuilderFlag if cfg.get_flag(f)]

    def _profile_shapes(net: "INetworkDefinition", prof: "IOptimizationProfile") -> "Dict[str, List[List[int]]]":
        return {t.name: [list(s) for s in prof.get_shape(t.name)] for t in net._inputs if prof.get_shape(t.name)}

    def _trampoline(what: str, fn: Any, fallback: Any) -> Any:
        """Call a Python calibrator override the way pyInt8.cpp's trampoline does.

        8.2: the trampoline methods are ``noexcept`` with no try/catch (release/8.2
        python/src/infer/pyInt8.cpp L28-106), so a Python exception reaching C++ calls
        std::terminate: the process aborts -- os.abort() here.  8.4+: each body is wrapped in
        try/catch that prints "[ERROR] Exception caught in <name>(): ..." and returns a fallback
        (release/8.5 pyInt8.cpp L34-154; 8.6 and 10.3 the same; first in b030b9e6 "rel-8.4")."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if gen == "8.2":
                sys.stderr.write("terminate called after throwing an instance of 'pybind11::error_already_set'\n"
                                 "  what():  {}: {}\n".format(type(exc).__name__, exc))
                sys.stderr.flush()
                import os

                os.abort()
            sys.stderr.write("[ERROR] Exception caught in {}(): {}\n".format(what, exc))
            return fallback

    def _calibrate(builder: "Builder", net: "INetworkDefinition", cfg: "IBuilderConfig") -> "Optional[Dict[str, Any]]":
        cal = cfg.int8_calibrator
        logger = builder._logger
        _require_init(cal, "IInt8Calibrator")
        algo = CalibrationAlgoType(int(_trampoline("get_algorithm", cal.get_algorithm, 0)))
        header = "TRT-{}-{}".format(_version_int(ver), CALIB_NAMES[algo.name])
        cached = _trampoline("read_calibration_cache", cal.read_calibration_cache, None)
        if cached is not None and len(bytes(cached)) > 0:
            hdr, scales = parse_calibration_cache(bytes(cached))
            if hdr == header:
                state.events.append(("INFO", "calibration cache used"))
                return {"source": "cache", "header": header, "scales": scales, "batches": 0}
            _log(logger, Severity.WARNING,
                 "Calibration table header '{}' does not match this calibrator ('{}'); ignoring it and calibrating.".format(hdr, header))
        batch_size = int(_trampoline("get_batch_size", cal.get_batch_size, -1))
        if batch_size != 1 and not net.has_implicit_batch_dimension:
            _log(logger, Severity.WARNING, "Explicit batch network detected and batch size specified, use execute without batch size instead.")
        names = [t.name for t in net._inputs]
        prof = cfg._calib_profile or (cfg._profiles[0] if cfg._profiles else None)
        shapes = {}
        for t in net._inputs:
            if all(d >= 0 for d in t.shape):
                shapes[t.name] = tuple(t.shape)
            elif prof is not None and prof.get_shape(t.name):
                shapes[t.name] = tuple(prof.get_shape(t.name)[1])
            else:
                _log(logger, Severity.ERROR, "Calibration profile not set for dynamic input {}".format(t.name))
                return None
        m = net._model
        stats: "Dict[str, List[np.ndarray]]" = {}
        batches = 0
        while True:
            ptrs = _trampoline("get_batch", lambda: cal.get_batch(names), False)
            if ptrs is False:
                break
            if ptrs is None or len(ptrs) == 0:
                break
            if len(ptrs) != len(names):
                _log(logger, Severity.ERROR, "getBatch returned {} pointers for {} inputs".format(len(ptrs), len(names)))
                return None
            feeds = {}
            for t, p in zip(net._inputs, ptrs):
                if not p:
                    _log(logger, Severity.ERROR, "getBatch returned a null pointer for input {}".format(t.name))
                    return None
                feeds[t.name] = read_pointer(int(p), shapes[t.name], nptype(t.dtype))
            for name, arr in m.run_all(feeds).items():
                if arr.dtype.kind == "f":
                    stats.setdefault(name, []).append(np.abs(arr.astype(np.float32)).ravel())
            batches += 1
        if batches == 0:
            _log(logger, Severity.ERROR,
                 "Calibration failure occurred with no scaling factors detected. This could be due to no int8 "
                 "calibrator or insufficient custom scales for network layers.")
            return None
        scales: "Dict[str, float]" = {}
        for name, parts in stats.items():
            vals = np.concatenate(parts)
            amax = float(vals.max()) if algo.name == "MINMAX_CALIBRATION" else float(np.percentile(vals, 99.99))
            scales[name] = max(amax, 1e-8) / 127.0
        lines = [header] + ["{}: {}".format(n, struct.pack(">f", s).hex()) for n, s in sorted(scales.items())]
        blob = memoryview(("\n".join(lines) + "\n").encode())  # a memoryview, not bytes (pyInt8.cpp)
        _trampoline("write_calibration_cache", lambda: cal.write_calibration_cache(blob), None)
        return {"source": "calibrated", "header": header, "scales": scales, "batches": batches, "batch_size": batch_size}

    def _build(builder: "Builder", net: "INetworkDefinition", cfg: "IBuilderConfig") -> "Optional[Dict[str, Any]]":
        logger = builder._logger
        err = lambda msg: (_log(logger, Severity.ERROR, msg), None)[1]  # noqa: E731
        if net._model is None or not net._outputs:
            return err("Network must have at least one output")
        if net.has_implicit_batch_dimension:
            return err("Network built with implicit batch: not supported by this double")
        dynamic = [t for t in net._inputs if any(d < 0 for d in t.shape)]
        if dynamic and not cfg._profiles:
            return err("Network has dynamic or shape inputs, but no optimization profile has been defined.")
        for k, prof in enumerate(cfg._profiles):
            for t in dynamic:
                if not prof.get_shape(t.name):
                    return err("Optimization profile {} has not been fully specified for input {}".format(k, t.name))
            for t in net._inputs:
                for s in prof.get_shape(t.name):
                    if len(s) != len(t.shape) or any(d >= 0 and d != x for d, x in zip(t.shape, s)):
                        return err("Profile {} dimensions {} for input {} do not match the network {}".format(k, list(s), t.name, list(t.shape)))
        names = _flag_names(cfg)
        dla = cfg.default_device_type == DeviceType.DLA
        fallback_layers: "List[str]" = []
        if dla:
            if cfg.DLA_core < 0 or cfg.DLA_core >= state.num_dla_cores:
                return err("Cannot create DLA engine, {} not available".format(cfg.DLA_core))
            if not (cfg.get_flag(BuilderFlag.FP16) or cfg.get_flag(BuilderFlag.INT8)):
                return err("DLA requires FP16 or INT8 precision: set BuilderFlag.FP16 or BuilderFlag.INT8")
            for layer in net._layers:
                if not cfg.can_run_on_DLA(layer):
                    if not cfg.get_flag(BuilderFlag.GPU_FALLBACK):
                        return err("{}: {} layer is not supported on DLA and GPU fallback is not enabled".format(layer.name, layer._op))
                    _log(logger, Severity.WARNING, "Layer {} is not supported on DLA, falling back to GPU.".format(layer.name))
                    fallback_layers.append(layer.name)
        if cfg._workspace and cfg._workspace < (16 << 20):
            _log(logger, Severity.WARNING, "Some tactics do not have sufficient workspace memory to run. Increasing workspace size will enable more tactics.")
        qdq = any(l.type in (LayerType.QUANTIZE, LayerType.DEQUANTIZE) for l in net._layers)
        int8: "Dict[str, Any]" = {"mode": None}
        if cfg.get_flag(BuilderFlag.INT8):
            all_tensors = list(net._inputs) + [o for l in net._layers for o in l._outputs]
            ranges = {t.name: list(t.dynamic_range) for t in all_tensors if t.dynamic_range is not None}
            if qdq:
                if cfg.int8_calibrator is not None:
                    _log(logger, Severity.WARNING, "Calibrator won't be used in explicit precision mode. Use quantization aware training to generate network with Quantize/Dequantize nodes.")
                int8 = {"mode": "explicit"}
            elif cfg.int8_calibrator is not None:
                res = _calibrate(builder, net, cfg)
                if res is None:
                    return None
                int8 = {"mode": "calibrator", **res}
                if ranges:
                    int8["user_ranges"] = ranges
            elif ranges:
                missing = [t.name for t in all_tensors if t.dynamic_range is None]
                for name in missing:
                    _log(logger, Severity.WARNING, "Missing scale and zero-point for tensor {}, expect fall back to non-int8 implementation for any layer consuming or producing given tensor".format(name))
                int8 = {"mode": "dynamic_ranges", "ranges": ranges, "missing": missing}
            else:
                for t in all_tensors:
                    _log(logger, Severity.WARNING, "Missing scale and zero-point for tensor {}, expect fall back to non-int8 implementation for any layer consuming or producing given tensor".format(t.name))
                int8 = {"mode": "none"}
        elif qdq and v8:
            return err("Network contains Q/DQ layers (explicit quantization): set BuilderFlag.INT8 to build it")
        timing: "Dict[str, int]" = {"hits": 0, "misses": 0}
        tc = cfg._timing_cache
        for layer in net._layers:
            key = hashlib.sha256("{}|{}|{}|{}".format(layer._op, [list(t.shape) for t in net._inputs], names,
                                                       layer.name).encode()).hexdigest()[:16]
            if tc is not None and not cfg.get_flag(BuilderFlag.DISABLE_TIMING_CACHE):
                if key in tc._entries:
                    timing["hits"] += 1
                else:
                    timing["misses"] += 1
                    tc._entries[key] = 1
        m = net._model
        spec = {
            "double": "tensorrt",
            "trt_version": ver,
            "sm": state.sm,
            "flags": names,
            "workspace": cfg._workspace,
            "memory_pools": {str(k): v for k, v in cfg._pools.items()},
            "profiles": [_profile_shapes(net, p) for p in cfg._profiles],
            "int8": int8,
            "device": "DLA" if dla else "GPU",
            "dla_core": cfg.DLA_core if dla else None,
            "gpu_fallback_layers": fallback_layers,
            "timing_cache": timing if tc is not None else None,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": DataType(int(t.dtype)).name} for t in net._inputs],
            "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": DataType(int(t.dtype)).name} for t in net._outputs],
            "onnx_sha256": hashlib.sha256(m.data).hexdigest(),
        }
        state.builds.append(spec)
        return spec

    def _plan_bytes(spec: "Dict[str, Any]", onnx_bytes: bytes) -> bytes:
        head = json.dumps(spec, sort_keys=True).encode()
        return PLAN_MAGIC + struct.pack("<Q", len(head)) + head + onnx_bytes

    class Builder:
        def __init__(self, logger: Any) -> None:
            _require_init(logger, "ILogger")
            self._logger = _take_logger(self, logger)
            self._max_batch_size = 1

        @property
        def logger(self) -> Any:
            return self._logger

        @property
        def platform_has_fast_fp16(self) -> bool:
            return state.fast_fp16

        @property
        def platform_has_fast_int8(self) -> bool:
            return state.fast_int8

        @property
        def platform_has_tf32(self) -> bool:
            return False

        @property
        def num_DLA_cores(self) -> int:
            return state.num_dla_cores

        @property
        def max_DLA_batch_size(self) -> int:
            return 32 if state.num_dla_cores else 1

        @property
        def max_batch_size(self) -> int:
            return self._max_batch_size

        @max_batch_size.setter
        def max_batch_size(self, value: int) -> None:
            self._max_batch_size = int(value)

        def create_network(self, flags: int = 0) -> "INetworkDefinition":
            return INetworkDefinition(flags)

        def create_builder_config(self) -> "IBuilderConfig":
            return IBuilderConfig(self)

        def create_optimization_profile(self) -> "IOptimizationProfile":
            return IOptimizationProfile()

        def is_network_supported(self, network: "INetworkDefinition", config: "IBuilderConfig") -> bool:
            return network._model is not None

        def build_serialized_network(self, network: "INetworkDefinition", config: "IBuilderConfig") -> "Optional[IHostMemory]":
            spec = _build(self, network, config)
            if spec is None:
                return None
            return IHostMemory(_plan_bytes(spec, network._model.data))

        def build_engine(self, network: "INetworkDefinition", config: "IBuilderConfig") -> "Optional['ICudaEngine']":
            spec = _build(self, network, config)
            if spec is None:
                return None
            return ICudaEngine(spec, network._model.data, self._logger)

    if not v8:
        delattr(Builder, "build_engine")
        delattr(Builder, "max_batch_size")
    mod.Builder = Builder

    # ---- engine and execution ----------------------------------------------------------------------
    class ICudaEngine:
        def __init__(self, spec: "Dict[str, Any]", onnx_bytes: bytes, logger: Any) -> None:
            import onnx

            self._spec = spec
            self._logger = logger
            self._model = _Model(onnx_bytes, onnx, onnx.load_from_string(onnx_bytes), gen)
            self._io = [(d["name"], True, Dims(d["shape"]), getattr(DataType, d["dtype"])) for d in spec["inputs"]]
            self._io += [(d["name"], False, Dims(d["shape"]), getattr(DataType, d["dtype"])) for d in spec["outputs"]]
            self._nprof = max(1, len(spec["profiles"]))
            self._dla_core: "Optional[int]" = None  # the DLA core a DLA plan runs on (set by Runtime)
            state.engines.append(self)

        # common
        @property
        def num_optimization_profiles(self) -> int:
            return self._nprof

        @property
        def name(self) -> str:
            return "double-engine"

        @property
        def num_layers(self) -> int:
            return len(self._model.proto.graph.node)

        @property
        def device_memory_size(self) -> int:
            return 1 << 20

        @property
        def has_implicit_batch_dimension(self) -> bool:
            return False

        @property
        def max_batch_size(self) -> int:
            return 1

        def serialize(self) -> "IHostMemory":
            return IHostMemory(_plan_bytes(self._spec, self._model.data))

        def create_execution_context(self) -> "Optional[IExecutionContext]":
            # bound straight to ICudaEngine::createExecutionContext (pyCore.cpp 10.3 L1165, 8.5 L886),
            # which returns nullptr -- None here -- when the context's device memory cannot be had
            if state.context_budget is not None:
                if state.context_budget <= 0:
                    _log(self._logger, Severity.ERROR, "1: [executionContext.cpp::ExecutionContext] Error Code 1: "
                         "Cuda Runtime (out of memory)")
                    return None
                state.context_budget -= 1
            return IExecutionContext(self)

        def _find(self, name: str) -> int:
            for i, io in enumerate(self._io):
                if io[0] == name:
                    return i
            return -1

        # binding API (8.x)
        @property
        def num_bindings(self) -> int:
            return len(self._io) * self._nprof

        def _bidx(self, binding: Any) -> int:
            if isinstance(binding, str):
                return self.get_binding_index(binding)
            return int(binding)

        def get_binding_index(self, name: str) -> int:
            for k in range(self._nprof):
                for i, io in enumerate(self._io):
                    if self.get_binding_name(k * len(self._io) + i) == name:
                        return k * len(self._io) + i
            return -1

        def get_binding_name(self, index: int) -> "Optional[str]":
            if not 0 <= index < self.num_bindings:
                return None
            k, i = divmod(index, len(self._io))
            return self._io[i][0] if k == 0 else "{} [profile {}]".format(self._io[i][0], k)

        def binding_is_input(self, index: Any) -> bool:
            return self._io[self._bidx(index) % len(self._io)][1]

        def get_binding_shape(self, index: Any) -> "Dims":
            return self._io[self._bidx(index) % len(self._io)][2]

        def get_binding_dtype(self, index: Any) -> Any:
            return self._io[self._bidx(index) % len(self._io)][3]

        def get_profile_shape(self, profile_index: int, binding: Any) -> "List[Dims]":
            name = self._io[self._bidx(binding) % len(self._io)][0]
            return self._profile_shape(name, profile_index)

        # tensor-name API (8.5+)
        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0]

        def get_tensor_mode(self, name: str) -> Any:
            i = self._find(name)
            if i < 0:
                return TensorIOMode.NONE
            return TensorIOMode.INPUT if self._io[i][1] else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> "Dims":
            i = self._find(name)
            return self._io[i][2] if i >= 0 else Dims([])

        def get_tensor_dtype(self, name: str) -> Any:
            i = self._find(name)
            return self._io[i][3] if i >= 0 else DataType.FLOAT

        def get_tensor_location(self, name: str) -> Any:
            return TensorLocation.DEVICE

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> "List[Dims]":
            return self._profile_shape(name, profile_index)

        def _profile_shape(self, name: str, profile_index: int) -> "List[Dims]":
            profs = self._spec["profiles"]
            if 0 <= profile_index < len(profs) and name in profs[profile_index]:
                return [Dims(s) for s in profs[profile_index][name]]
            i = self._find(name)
            return [self._io[i][2]] * 3 if i >= 0 else []

    if gen == "8.2":
        for name in ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
                     "get_tensor_location", "get_tensor_profile_shape"):
            delattr(ICudaEngine, name)
    if not v8:
        for name in ("num_bindings", "get_binding_index", "get_binding_name", "binding_is_input", "get_binding_shape",
                     "get_binding_dtype", "get_profile_shape", "max_batch_size"):
            delattr(ICudaEngine, name)
    mod.ICudaEngine = ICudaEngine

    class IExecutionContext:
        def __init__(self, engine: "ICudaEngine") -> None:
            self._engine = engine
            self._shapes: "Dict[str, Dims]" = {n: s for n, is_in, s, _ in engine._io if is_in}
            self._addr: "Dict[str, int]" = {}
            self._profile = 0
            self._shape_cache: "Dict[Any, Dict[str, Dims]]" = {}
            self.executions = 0
            #: TensorRT allocates scratch memory on a context's first enqueue: trtexec runs one enqueue
            #: before capturing "to avoid capturing initialization calls" (samples/common/sampleInference.cpp
            #: release/10.3 L961-968); inside a capture that cudaMalloc is an unsafe call and fails
            self.initialised = False
            self.last_stream: "Optional[int]" = None
            self.debug_sync = False
            self.profiler = None

        @property
        def engine(self) -> "ICudaEngine":
            return self._engine

        # profiles
        @property
        def active_optimization_profile(self) -> int:
            return self._profile

        @active_optimization_profile.setter
        def active_optimization_profile(self, value: int) -> None:
            self._profile = int(value)

        def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
            # The binding raises instead of returning False: NVIDIA/TensorRT release/8.2
            # python/src/infer/pyCore.cpp L292-299 (throw std::runtime_error), release/8.5 L322-327,
            # release/8.6 L353-358, release/10.3 L326-332 (PY_ASSERT_RUNTIME_ERROR).  Never returns False.
            if not 0 <= int(profile_index) < self._engine._nprof or state.fail_profile_async:
                _log(self._engine._logger, Severity.ERROR, "setOptimizationProfileAsync: profile {} cannot be "
                     "selected (engine has {}; another context in use holds it?)".format(profile_index, self._engine._nprof))
                raise RuntimeError("Error in set optimization profile async.")
            self._profile = int(profile_index)
            return True

        def _in_profile(self, name: str, shape: "Dims") -> bool:
            lo, _, hi = self._engine._profile_shape(name, self._profile)
            return len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi))

        # shapes
        def set_input_shape(self, name: str, shape: "Sequence[int]") -> bool:
            return self._set_shape(name, shape)

        def _set_shape(self, name: str, shape: "Sequence[int]") -> bool:
            i = self._engine._find(name)
            if i < 0 or not self._engine._io[i][1]:
                _log(self._engine._logger, Severity.ERROR, "setInputShape: {} is not an input tensor".format(name))
                return False
            s = Dims(shape)
            if not self._in_profile(name, s):
                _log(self._engine._logger, Severity.ERROR,
                     "setInputShape: shape {} of {} is outside optimization profile {}".format(list(s), name, self._profile))
                return False
            self._shapes[name] = s
            return True

        def set_binding_shape(self, binding: int, shape: "Sequence[int]") -> bool:
            k, i = divmod(int(binding), len(self._engine._io))
            if k != self._profile:
                _log(self._engine._logger, Severity.ERROR, "setBindingDimensions: binding {} belongs to profile {}, "
                     "the active profile is {}".format(binding, k, self._profile))
                return False
            return self._set_shape(self._engine._io[i][0], shape)

        def _output_shapes(self) -> "Optional[Dict[str, Dims]]":
            if any(d < 0 for s in self._shapes.values() for d in s):
                return None
            key = tuple(sorted((k, tuple(v)) for k, v in self._shapes.items()))
            if key not in self._shape_cache:
                feeds = {n: np.zeros(self._shapes[n], nptype(dt)) for n, is_in, _, dt in self._engine._io if is_in}
                outs = self._engine._model.run(feeds)
                self._shape_cache[key] = {k: Dims(v.shape) for k, v in outs.items()}
            return self._shape_cache[key]

        def get_tensor_shape(self, name: str) -> "Dims":
            return self._get_shape(name)

        def _get_shape(self, name: str) -> "Dims":
            if name in self._shapes:
                return self._shapes[name]
            outs = self._output_shapes()
            if outs is None:
                return self._engine._io[self._engine._find(name)][2]
            return outs.get(name, Dims([]))

        def get_binding_shape(self, binding: int) -> "Dims":
            return self._get_shape(self._engine._io[int(binding) % len(self._engine._io)][0])

        @property
        def all_binding_shapes_specified(self) -> bool:
            return self._all_specified()

        def _all_specified(self) -> bool:
            return all(d >= 0 for s in self._shapes.values() for d in s)

        @property
        def all_shape_inputs_specified(self) -> bool:
            return True

        def infer_shapes(self) -> "List[str]":
            return [n for n, s in self._shapes.items() if any(d < 0 for d in s)]

        # addresses
        def set_tensor_address(self, name: str, memory: int) -> bool:
            logger = self._engine._logger
            if self._engine._find(name) < 0:
                _log(logger, Severity.ERROR, "setTensorAddress: {} is not the name of an I/O tensor".format(name))
                return False
            p = int(memory)
            # include/NvInferRuntime.h release/8.5 L2946-2952, release/10.3 L3992-4003: a kDEVICE tensor's
            # pointer "must point to a device buffer of sufficient size and alignment" and "must have at least
            # 256-byte alignment" (nullptr resets).  Refused here, at the call; a GPU would fault later.
            if p and p % 256:
                _log(logger, Severity.ERROR, "3: [executionContext.cpp::setTensorAddress] Error Code 3: API Usage Error "
                     "(address 0x{:x} of tensor {} is not 256-byte aligned)".format(p, name))
                return False
            if p and not _pd.is_device_memory(p):
                _log(logger, Severity.ERROR, "3: [executionContext.cpp::setTensorAddress] Error Code 3: API Usage Error "
                     "(address 0x{:x} of tensor {} is not device memory)".format(p, name))
                return False
            self._addr[name] = p
            return True

        def get_tensor_address(self, name: str) -> int:
            return self._addr.get(name, 0)

        # execution
        def _run(self, addr: "Dict[str, int]", stream_handle: int = 0) -> bool:
            """Validate now (False + an ERROR log, like enqueueV2/V3), compute when the stream is reached:
            on a pycuda-double stream the kernel is queued behind earlier copies (execute_async_v3 returns
            once enqueued: NvInferRuntime.h 10.3 L4250-4270); on any other handle it runs at once."""
            eng = self._engine
            logger = eng._logger
            if not self._all_specified():
                _log(logger, Severity.ERROR, "Parameter check failed: not all input dimensions are specified.")
                return False
            for name, _, _, _ in eng._io:
                if not addr.get(name):
                    _log(logger, Severity.ERROR, "Parameter check failed: address of tensor {} is null (call set_tensor_address).".format(name))
                    return False
            addr = dict(addr)
            shapes = {n: self._get_shape(n) for n, _, _, _ in eng._io}
            for n, _, _, dt in eng._io:  # every I/O buffer must hold the tensor at its current shape
                if not _pd.is_device_memory(addr[n]):  # a kernel reading host memory: an illegal address
                    raise _pd.IllegalAddress("TensorRT enqueue: tensor '{}' at 0x{:x} is not device memory".format(
                        n, addr[n]))
                check_access(addr[n], volume(shapes[n]) * np.dtype(nptype(dt)).itemsize,
                             "TensorRT {} '{}' {}".format("enqueue", n, list(shapes[n])))
            st = _pd.STREAMS.get(int(stream_handle)) if stream_handle else None
            capturing = st is not None and st._capturing
            if capturing and state.uncapturable:
                # "The built TRT engine may contain operations that are not permitted under CUDA graph capture
                # mode. When the stream is capturing, the enqueue call may return false" (sampleInference.cpp
                # release/10.3 L971-972); the capture is invalidated
                st._invalidated = True
                _log(logger, Severity.ERROR, "1: [enqueue] Error Code 1: Cuda Runtime (operation not permitted when "
                     "stream is capturing)")
                return False
            if not self.initialised:
                try:
                    _pd.check_unsafe_call("cudaMalloc")
                except _pd.CaptureError as exc:
                    _log(logger, Severity.ERROR, "1: [enqueue] Error Code 1: Cuda Runtime ({})".format(exc))
                    return False
                self.initialised = True

            def kernel() -> None:
                feeds = {n: read_pointer(addr[n], shapes[n], nptype(dt)) for n, is_in, _, dt in eng._io if is_in}
                outs = eng._model.run(feeds)
                low = any(f in eng._spec["flags"] for f in ("FP16", "INT8"))
                for n, is_in, _, dt in eng._io:
                    if is_in:
                        continue
                    a = outs[n]
                    if low and a.dtype == np.float32:
                        a = a.astype(np.float16).astype(np.float32)
                    write_pointer(addr[n], a.astype(nptype(dt), copy=False))

            if not enqueue_on(stream_handle, kernel):
                kernel()
            self.executions += 1
            return True

        def _bindings_to_addr(self, bindings: "Sequence[int]") -> "Optional[Dict[str, int]]":
            n = len(self._engine._io)
            if len(bindings) < n * (self._profile + 1):
                _log(self._engine._logger, Severity.ERROR, "Parameter check failed: bindings has {} entries, engine has {}".format(len(bindings), self._engine.num_bindings))
                return None
            base = n * self._profile
            return {self._engine._io[i][0]: int(bindings[base + i]) for i in range(n)}

        def execute_async_v2(self, bindings: "Sequence[int]", stream_handle: int, input_consumed: Any = None) -> bool:
            self.last_stream = int(stream_handle)
            addr = self._bindings_to_addr(bindings)
            return addr is not None and self._run(addr, stream_handle)

        def execute_v2(self, bindings: "Sequence[int]") -> bool:
            if not v8:
                n = len(self._engine._io)
                return self._run({self._engine._io[i][0]: int(bindings[i]) for i in range(min(n, len(bindings)))})
            addr = self._bindings_to_addr(bindings)
            return addr is not None and self._run(addr)

        def execute_async_v3(self, stream_handle: int) -> bool:
            self.last_stream = int(stream_handle)
            return self._run(self._addr, stream_handle)

    if gen == "8.2":
        for name in ("set_input_shape", "get_tensor_shape", "set_tensor_address", "get_tensor_address",
                     "infer_shapes", "execute_async_v3"):
            delattr(IExecutionContext, name)
    if not v8:
        for name in ("set_binding_shape", "get_binding_shape", "all_binding_shapes_specified", "execute_async_v2"):
            delattr(IExecutionContext, name)
    mod.IExecutionContext = IExecutionContext

    class Runtime:
        def __init__(self, logger: Any) -> None:
            _require_init(logger, "ILogger")
            self._logger = _take_logger(self, logger)
            self.DLA_core = -1
            self.max_threads = 1

        def deserialize_cuda_engine(self, serialized_engine: Any) -> "Optional[ICudaEngine]":
            data = bytes(serialized_engine)
            if not data.startswith(PLAN_MAGIC) or len(data) < len(PLAN_MAGIC) + 8:
                _log(self._logger, Severity.ERROR, "1: [stdArchiveReader.cpp::StdArchiveReader::32] Error Code 1: Serialization "
                     "(Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
                _log(self._logger, Severity.ERROR, "4: [runtime.cpp::deserializeCudaEngine::65] Error Code 4: Internal Error "
                     "(Engine deserialization failed.)")
                return None
            (n,) = struct.unpack("<Q", data[len(PLAN_MAGIC):len(PLAN_MAGIC) + 8])
            start = len(PLAN_MAGIC) + 8
            try:
                spec = json.loads(data[start:start + n].decode())
                onnx_bytes = data[start + n:]
                import onnx

                onnx.load_from_string(onnx_bytes)
            except Exception:
                _log(self._logger, Severity.ERROR, "4: [runtime.cpp::deserializeCudaEngine::65] Error Code 4: Internal Error "
                     "(Engine deserialization failed.)")
                return None
            if str(spec.get("trt_version")).split(".")[:3] != ver.split(".")[:3]:  # same release (major.minor.patch)
                _log(self._logger, Severity.ERROR,
                     "6: The engine plan file is not compatible with this version of TensorRT, expecting library version "
                     "{} got {}, please rebuild.".format(ver, spec.get("trt_version")))
                return None
            if int(spec.get("sm", state.sm)) != state.sm:
                _log(self._logger, Severity.ERROR,
                     "6: The engine plan file is generated on an incompatible device, expecting compute {}.{} got compute "
                     "{}.{}, please rebuild.".format(state.sm // 10, state.sm % 10, int(spec["sm"]) // 10, int(spec["sm"]) % 10))
                return None
            eng = ICudaEngine(spec, onnx_bytes, self._logger)
            # IRuntime::setDLACore picks "the DLA core that the deserialized engine must execute on"
            # (include/NvInferRuntime.h 8.2 L645-652; 10.3 L1390-1401); trtexec sets it before
            # deserializeCudaEngine (samples/common/sampleEngines.cpp 8.2 L999-1004).  Bound here, at
            # deserialization: changing it later does not move the engine.  -1 (unset) runs on core 0.
            if spec.get("device") == "DLA":
                eng._dla_core = self.DLA_core if self.DLA_core >= 0 else 0
            return eng

    mod.Runtime = Runtime

    class _PluginRegistry:
        plugin_creator_list: "List[Any]" = []

    mod.get_plugin_registry = lambda: _PluginRegistry()
    return mod


def read_plan(plan: bytes) -> "Dict[str, Any]":
    """The build configuration a double-built plan carries (for assertions in tests)."""
    data = bytes(plan)
    if not data.startswith(PLAN_MAGIC):
        raise ValueError("not a plan made by the TensorRT double")
    (n,) = struct.unpack("<Q", data[len(PLAN_MAGIC):len(PLAN_MAGIC) + 8])
    start = len(PLAN_MAGIC) + 8
    return json.loads(data[start:start + n].decode())


def install(monkeypatch: Any, generation: str = "8.6", **kwargs: Any) -> "types.ModuleType":
    """Put a fresh double in ``sys.modules['tensorrt']`` for one test (undone by monkeypatch)."""
    mod = make_tensorrt(generation, **kwargs)
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    return mod


def uninstall(monkeypatch: Any) -> None:
    """Make ``import tensorrt`` fail for one test, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


try:  # a fixture other test modules can import: ``from doubles.tensorrt_double import trt_double``
    import pytest

    @pytest.fixture
    def trt_double(monkeypatch: Any) -> Any:
        """``trt_double("10.x", fast_int8=False)`` installs a double as ``tensorrt`` for this test."""
        return lambda generation="8.6", **kwargs: install(monkeypatch, generation, **kwargs)
except ImportError:  # pragma: no cover
    pass
