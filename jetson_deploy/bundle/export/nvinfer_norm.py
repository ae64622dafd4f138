"""The bundle's normalisation in nvinfer's terms, or the one line saying why it cannot be.

jetson-deploy normalises ``y = (x * scale - mean[c]) / std[c]`` (:func:`jetson_deploy.preprocess.preprocess`).
nvinfer computes ``y = net-scale-factor * (x - offsets[c])`` in float32 on the colour-converted
pixels (``nvdsinfer_conversion.cu``, the ``...WithMeanSubtraction`` kernels, DeepStream sources), with
ONE scale factor for every channel.  Rewriting ours:
``y = (scale / std) * (x - mean[c] / scale)``, so ``net-scale-factor = scale / std`` and
``offsets[c] = mean[c] / scale`` (pixel units), which exists only when ``std`` is the same for every
channel.  nvinfer also writes only float32 tensors into the engine's input (``InferPreprocessor::transform``
in ``nvdsinfer_context_impl.cpp``), so engines with a uint8 input (``convert --fold-preprocess``) are out.
"""
from typing import Any, Dict, Optional

from ...errors import BadInput

#: ModelSpec colour -> nvinfer model-color-format (gstnvinfer_property_parser.cpp: 0 RGB, 1 BGR, 2 GRAY)
COLOR_FORMAT = {"rgb": 0, "bgr": 1, "gray": 2}
#: std values closer than this (relative) are one value: float32 text round trips differ by ~1e-7
SAME_STD_RTOL = 1e-6

FOLD_HINT = ("fold normalisation into the engine (jetson-deploy convert MODEL --spec SPEC --fold-preprocess) and serve that "
             "bundle with --format triton (Triton, or DeepStream's Gst-nvinferserver, which feeds UINT8)")


def _num(v: float) -> str:
    return "{:.6g}".format(v)


def std_is_uniform(std: "Any") -> bool:
    lo, hi = min(std), max(std)
    return hi - lo <= SAME_STD_RTOL * max(abs(hi), abs(lo))


def input_reason(spec: Any) -> "Optional[str]":
    """Why nvinfer cannot feed this spec's input as specified, or None."""
    if spec.dtype == "uint8":
        return ("the engine input is uint8 {} (normalisation folded in by convert --fold-preprocess) and nvinfer writes float32 "
                "tensors only; serve this bundle with --format triton (Triton, or DeepStream's Gst-nvinferserver, which feeds "
                "UINT8)".format(spec.layout.upper()))
    if spec.dtype != "float32":
        return "the spec's input dtype is {} and nvinfer writes float32 tensors only: re-convert with a float32 input".format(spec.dtype)
    if not std_is_uniform(spec.std):
        return ("nvinfer has one net-scale-factor for all channels but this spec's std differs per channel ({}), so "
                "net-scale-factor * (x - offsets) cannot reproduce it; {}".format(", ".join(_num(s) for s in spec.std), FOLD_HINT))
    return None


def nvinfer_normalization(spec: Any) -> "Dict[str, Any]":
    """``net-scale-factor``, ``offsets`` and ``model-color-format`` reproducing ``preprocess(frame, spec)``.

    BadInput (one line, exit 2) when they cannot: a per-channel std, a non-float32 input.
    """
    why = input_reason(spec)
    if why:
        raise BadInput("deepstream: " + why)
    return {
        "net-scale-factor": float(spec.scale) / float(spec.std[0]),
        "offsets": [float(m) / float(spec.scale) for m in spec.mean],
        "model-color-format": COLOR_FORMAT[spec.color],
    }
