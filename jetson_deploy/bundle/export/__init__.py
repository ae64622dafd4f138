"""Exports: a bundle as the files DeepStream (Gst-nvinfer) or Triton Inference Server take.

The bundle already knows what those configs need (input name, shape, colour order,
normalisation, outputs, labels, precision, engines per TensorRT/SM, calibration caches); an
export writes them into a new directory and never touches the bundle, so a signed bundle stays
valid.  One module a job: :mod:`.support` (what can be exported, from the manifest),
:mod:`.nvinfer_keys` (the key tables and their sources), :mod:`.nvinfer_norm` (normalisation in
nvinfer's terms), :mod:`.keyfile` / :mod:`.pbtxt` (the two file formats), :mod:`.deepstream` and
:mod:`.triton` (what each export writes), :mod:`.output` (writing it under the output policy).

::

    from jetson_deploy.bundle.export import export_bundle
    res = export_bundle("shapes-1.0.0", "triton", "triton-repo")
    res["files"], res["configs"], res["notes"]
"""
import os
from typing import Any, Dict, Optional, Union

from ...errors import BadInput
from .support import FORMATS, export_support


def export_bundle(bundle: Any, fmt: str, out: "Union[str, os.PathLike]", source: "Optional[str]" = None,
                  tensorrt: "Optional[str]" = None, use_onnx: bool = False) -> "Dict[str, Any]":
    """Write ``bundle`` (a path, packed file or opened Bundle; verified first) as ``fmt`` into the new directory ``out``.

    ``source`` (deepstream): the stream the deepstream-app config runs on; ``tensorrt`` (triton):
    serve the engines of that TensorRT release; ``use_onnx`` (triton): serve model.onnx with
    ONNX Runtime even when the bundle has engines.  Returns what was written and what to use where.
    """
    from ..reader import open_bundle
    from .output import write_plan

    if fmt not in FORMATS:
        raise BadInput("--format {!r} must be one of {}".format(fmt, "|".join(FORMATS)))
    b = open_bundle(bundle, verify=True)
    try:
        if fmt == "deepstream":
            from .deepstream import plan_deepstream

            plan = plan_deepstream(b, source=source)
        else:
            from .triton import plan_triton

            plan = plan_triton(b, tensorrt=tensorrt, use_onnx=use_onnx)
        return write_plan(plan, out)
    finally:
        if b is not bundle:
            b.close()


__all__ = ["FORMATS", "export_bundle", "export_support"]
