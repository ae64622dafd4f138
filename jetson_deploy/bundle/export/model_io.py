"""Input and output names, shapes and dtypes of the bundle's model, as the serving side sees them.

Read from the bundle's ONNX file with ``onnx`` (lazily: the device side may not have it), else
from ``conversion.onnx_check`` in the manifest (convert records the checked graph's I/O there).
Dimensions are ints, or a dim name (str) for a dynamic axis.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..._lazy import optional
from ...errors import BadInput

#: ONNX TensorProto element types (onnx.proto: TensorProto.DataType) -> dtype names
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}

Tensor = Dict[str, Any]  # {"name", "shape": [int | str], "dtype"}


def values_io(values: Any, skip: "Any" = ()) -> "List[Tensor]":
    """Name, shape (ints, or the dim name of a dynamic axis) and dtype of ONNX value infos, ``skip`` left out
    (convert records the checked graph's I/O with this too)."""
    out = []
    for v in values:
        if v.name in skip:
            continue
        t = v.type.tensor_type
        shape: "List[Any]" = []
        for d in t.shape.dim:
            shape.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
        out.append({"name": v.name, "shape": shape, "dtype": ONNX_DTYPES.get(t.elem_type, "type{}".format(t.elem_type))})
    return out


def onnx_file_io(path: "Path") -> "Dict[str, List[Tensor]]":
    """Graph inputs (initializers skipped) and outputs of an ONNX file; None when onnx is not installed."""
    onnx = optional("onnx")
    if onnx is None:
        return {}
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return {"inputs": values_io(m.graph.input, inits), "outputs": values_io(m.graph.output)}


def bundle_io(bundle: Any, onnx_path: "Optional[Path]") -> "Dict[str, List[Tensor]]":
    """The model's I/O: from ``onnx_path`` when onnx is installed, else the manifest's record."""
    if onnx_path is not None:
        io = onnx_file_io(onnx_path)
        if io:
            return io
    check = (bundle.manifest.get("conversion") or {}).get("onnx_check") or {}
    if check.get("inputs") and check.get("outputs"):
        return {"inputs": [dict(t) for t in check["inputs"]], "outputs": [dict(t) for t in check["outputs"]]}
    raise BadInput("triton: reading model.onnx's inputs and outputs needs onnx (pip install onnx), and the manifest has no "
                   "conversion.onnx_check to read them from")
