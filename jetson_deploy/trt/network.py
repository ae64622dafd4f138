"""Network from ONNX: an explicit-batch network parsed by TensorRT's ONNX parser.

Parser failures become one line naming the node and op (:mod:`jetson_deploy.trt.logger`).
The parser owns the parsed weights, so callers keep it alive until the build is done.
"""
from pathlib import Path
from typing import Any, List, Tuple

from ..errors import BadInput
from .logger import format_parser_failure, parser_issues


def network_from_onnx(trt: Any, feats: Any, builder: Any, logger: Any, path: Path) -> "Tuple[Any, Any]":
    """(network, parser) for the ONNX file at ``path``; BadInput names the failing node."""
    flags = 0
    if feats.explicit_batch_required:  # 8.x; TensorRT 10 is always explicit and deprecates the flag
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger.native)
    if feats.parse_from_file:
        ok = parser.parse_from_file(str(path))  # resolves external weights beside the file
    else:
        ok = parser.parse(path.read_bytes(), str(path))
    if not ok:
        raise BadInput(format_parser_failure(path.name, parser_issues(parser, str(path)), feats.version_string))
    return network, parser


def network_inputs(network: Any) -> "List[Any]":
    return [network.get_input(i) for i in range(network.num_inputs)]


def network_tensors(network: Any) -> "List[Any]":
    """Inputs and layer outputs, each once: what per-tensor dynamic ranges can name."""
    seen = {}
    for t in network_inputs(network):
        seen[t.name] = t
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            t = layer.get_output(j)
            if t is not None:
                seen.setdefault(t.name, t)
    return list(seen.values())


def is_qdq(trt: Any, network: Any) -> bool:
    """True when the network has Quantize/Dequantize layers (explicit INT8)."""
    lt = getattr(trt, "LayerType", None)
    kinds = {getattr(lt, "QUANTIZE", None), getattr(lt, "DEQUANTIZE", None)} - {None}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))
