"""Parity: does the ONNX model (in ONNX Runtime) compute what the PyTorch model computes?

Inputs are frames made from a seeded generator and fed through
:func:`jetson_deploy.preprocess.preprocess` with the spec, so the check runs on the
distribution the engine will see.  Float outputs pass when, element-wise,
``|onnx - torch| <= tolerance * (1 + |torch|)`` (numpy's ``allclose`` with
``atol = rtol = tolerance``); integer outputs (folded top-k classes, argmax masks)
by their agreement fraction.  Top-1 agreement is reported for classifiers and
segmenters.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .._lazy import require
from ..errors import BadInput
from ..preprocess import preprocess
from ..spec import ModelSpec

DEFAULT_TOLERANCE = 1e-3
DEFAULT_SAMPLES = 4
MIN_INDEX_AGREEMENT = 0.99


def make_frames(spec: "ModelSpec", n: int, seed: int = 0) -> "List[np.ndarray]":
    """``n`` camera-like frames (BGR or gray ``uint8``, model size): smooth shapes plus noise.

    Made at the model's input size, so preprocessing needs no resize (and no cv2).
    """
    rng = np.random.RandomState(seed)
    w, h = spec.resize_wh
    c = 1 if spec.color == "gray" else 3
    frames = []
    for i in range(n):
        if i == 0:
            low = rng.randint(0, 256, size=(h, w, c))
            frames.append(low.astype(np.uint8))  # pure noise: exercises the full input range
            continue
        gh, gw = max(1, h // 8), max(1, w // 8)
        coarse = rng.randint(0, 256, size=(gh, gw, c)).astype(np.float32)
        up = np.repeat(np.repeat(coarse, -(-h // gh), axis=0), -(-w // gw), axis=1)[:h, :w]
        noise = rng.normal(0.0, 12.0, size=(h, w, c))
        frames.append(np.clip(up + noise, 0, 255).astype(np.uint8))
    return frames


def batches(frames: "Sequence[np.ndarray]", spec: "ModelSpec", batch: int) -> "List[np.ndarray]":
    """Preprocess frames with ``spec`` and group them into batches of ``batch``."""
    arrays = [preprocess(f, spec) for f in frames]
    out = []
    for i in range(0, len(arrays) - batch + 1, batch):
        out.append(np.stack(arrays[i : i + batch], axis=0))
    return out


class OrtModel:
    """A small ONNX Runtime session on CPU (2 threads: the machine is shared)."""

    def __init__(self, path: Any, threads: int = 2) -> None:
        ort = require("onnxruntime", "the ONNX Runtime parity check")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BadInput("ONNX Runtime cannot load {}: {}".format(path, " ".join(str(exc).split())[:300]))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: "np.ndarray") -> "Dict[str, np.ndarray]":
        res = self.session.run(None, {self.input_names[0]: x})
        return dict(zip(self.output_names, res))


def torch_runner(module: Any, names: "Sequence[str]") -> "Callable[[np.ndarray], Dict[str, np.ndarray]]":
    """Wrap a torch module (returning a tensor or a tuple of tensors) as numpy in -> {name: array}."""
    torch = require("torch", "the PyTorch reference of the parity check")

    def run(x: "np.ndarray") -> "Dict[str, np.ndarray]":
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(x)))
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return {n: o.detach().cpu().numpy() for n, o in zip(names, out)}

    return run


def softmax_topk(logits: "np.ndarray", k: int) -> "Dict[str, np.ndarray]":
    """The folded classifier postprocessing, in numpy: softmax over axis 1, top-k."""
    x = logits.reshape(logits.shape[0], -1).astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=1, keepdims=True)
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return {"scores": np.take_along_axis(p, idx, axis=1).astype(np.float32), "classes": idx.astype(np.int32)}


def argmax_mask(logits: "np.ndarray") -> "Dict[str, np.ndarray]":
    """The folded segmenter postprocessing: argmax over the class axis."""
    return {"mask": np.argmax(logits, axis=1).astype(np.int32)}


def _top1(arr: "np.ndarray", task: str, folded: bool) -> "Optional[np.ndarray]":
    if folded:
        if task == "classify":
            return arr[:, 0] if arr.ndim == 2 else None
        return arr
    if task in ("classify", "segment") and arr.ndim >= 2 and arr.shape[1] > 1:
        return np.argmax(arr, axis=1)
    return None


def compare(
    refs: "List[Dict[str, np.ndarray]]",
    gots: "List[Dict[str, np.ndarray]]",
    names: "Sequence[str]",
    task: str,
    tolerance: float = DEFAULT_TOLERANCE,
    folded_post: bool = False,
) -> "Dict[str, Any]":
    """Compare reference and ONNX outputs over several batches; returns the manifest record."""
    per: "Dict[str, Any]" = {}
    passed = True
    worst_abs = 0.0
    worst_scaled = 0.0
    top1_hits = 0
    top1_total = 0
    for name in names:
        abs_max = 0.0
        abs_sum = 0.0
        count = 0
        scaled_max = 0.0
        agree = 0
        total = 0
        shape = None
        dtype = None
        for ref, got in zip(refs, gots):
            r, g = ref[name], got[name]
            shape, dtype = list(g.shape), str(g.dtype)
            if r.shape != g.shape:
                raise BadInput("output {!r}: ONNX shape {} differs from PyTorch shape {}".format(name, list(g.shape), list(r.shape)))
            if np.issubdtype(g.dtype, np.integer) or np.issubdtype(r.dtype, np.integer):
                agree += int(np.sum(r.astype(np.int64) == g.astype(np.int64)))
                total += r.size
                continue
            d = np.abs(r.astype(np.float64) - g.astype(np.float64))
            if not np.all(np.isfinite(g)):
                scaled_max = float("inf")
            abs_max = max(abs_max, float(d.max()) if d.size else 0.0)
            abs_sum += float(d.sum())
            count += d.size
            s = d / (1.0 + np.abs(r.astype(np.float64)))
            scaled_max = max(scaled_max, float(s.max()) if s.size else 0.0)
        rec: "Dict[str, Any]" = {"shape": shape, "dtype": dtype}
        if total:
            frac = agree / float(total)
            rec["agreement"] = round(frac, 6)
            ok = frac >= MIN_INDEX_AGREEMENT
        else:
            rec["max_abs_error"] = abs_max
            rec["mean_abs_error"] = abs_sum / max(1, count)
            rec["max_scaled_error"] = scaled_max
            worst_abs = max(worst_abs, abs_max)
            worst_scaled = max(worst_scaled, scaled_max)
            ok = scaled_max <= tolerance
        rec["passed"] = bool(ok)
        passed = passed and ok
        per[name] = rec
    first = names[0]
    if folded_post:
        first = next((n for n in ("classes", "mask") if n in names), first)
    for ref, got in zip(refs, gots):
        a = _top1(ref[first], task, folded_post)
        b = _top1(got[first], task, folded_post)
        if a is None or b is None:
            continue
        top1_hits += int(np.sum(a == b))
        top1_total += a.size
    result: "Dict[str, Any]" = {
        "batches": len(refs),
        "tolerance": tolerance,
        "rule": "|onnx - torch| <= tolerance * (1 + |torch|) element-wise; integer outputs: agreement >= {}".format(MIN_INDEX_AGREEMENT),
        "max_abs_error": worst_abs,
        "max_scaled_error": worst_scaled,
        "outputs": per,
        "passed": bool(passed),
    }
    if top1_total:
        result["top1_agreement"] = top1_hits / float(top1_total)
    return result


def failure_line(parity: "Dict[str, Any]", what: str) -> str:
    """One line naming the outputs that failed parity and by how much."""
    bad = []
    for name, rec in parity["outputs"].items():
        if rec.get("passed"):
            continue
        if "agreement" in rec:
            bad.append("{} agreement {:.4f} < {}".format(name, rec["agreement"], MIN_INDEX_AGREEMENT))
        else:
            bad.append("{} max error {:.3g} (scaled {:.3g})".format(name, rec["max_abs_error"], rec["max_scaled_error"]))
    return "{} parity failed above --tolerance {}: {} (use --force to write the bundle anyway)".format(what, parity["tolerance"], "; ".join(bad))


def fp16_estimate(onnx_path: Any, work_dir: Any, inputs: "Sequence[np.ndarray]", refs: "List[Dict[str, np.ndarray]]", names: "Sequence[str]", task: str) -> "Dict[str, Any]":
    """Run an FP16 copy of the model (weights and activations in half, I/O float32) in ONNX
    Runtime and compare it with the FP32 reference: an early look at what an FP16 engine does,
    and a catch for activations that overflow half precision (|x| > 65504 -> inf).

    Returns a record; ``{"skipped": why}`` when this ONNX Runtime cannot run it.
    """
    from pathlib import Path

    onnx = require("onnx", "the FP16 estimate")
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except Exception as exc:  # older/smaller onnxruntime builds lack the transformers tools
        return {"skipped": "onnxruntime.transformers.float16 is not available ({})".format(type(exc).__name__)}
    path16 = Path(work_dir) / "fp16-estimate.onnx"
    try:
        m16 = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
        onnx.save(m16, str(path16))
        sess = OrtModel(path16)
        gots = [sess(x) for x in inputs]
    except Exception as exc:
        return {"skipped": "ONNX Runtime cannot run the FP16 copy here: {}".format(" ".join(str(exc).split())[:160])}
    finite = all(bool(np.all(np.isfinite(g[n]))) for g in gots for n in names if np.issubdtype(g[n].dtype, np.floating))
    rec = compare(refs[: len(gots)], gots, names, task, tolerance=1.0)
    out: "Dict[str, Any]" = {
        "reference": "torch-fp32",
        "how": "onnxruntime CPU, weights and activations float16, I/O float32",
        "max_abs_error": rec["max_abs_error"],
        "max_scaled_error": rec["max_scaled_error"],
        "finite": finite,
    }
    if "top1_agreement" in rec:
        out["top1_agreement"] = rec["top1_agreement"]
    return out


FP16_MAX = 65504.0


def half_range_overflows(onnx_path: Any, work_dir: Any, inputs: "Sequence[np.ndarray]", limit: int = 5) -> "List[Dict[str, Any]]":
    """Float tensors of the FP32 model whose values exceed float16's range on ``inputs``.

    Every float intermediate is exposed as an output and run in ONNX Runtime (FP32),
    so this sees what an FP16 engine would overflow on the GPU (ONNX Runtime's CPU
    float16 kernels saturate instead, hiding it).  Worst first.
    """
    from pathlib import Path

    onnx = require("onnx", "the FP16 range check")
    from onnx import TensorProto, helper

    m = onnx.load(str(onnx_path))
    inferred = onnx.shape_inference.infer_shapes(m)
    floats = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.output) if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    existing = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for name in node.output:
            if name and name in floats and name not in existing:
                m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
                existing.add(name)
    path = Path(work_dir) / "fp16-range.onnx"
    onnx.save(m, str(path))
    sess = OrtModel(path)
    amax: "Dict[str, float]" = {}
    for x in inputs:
        for name, arr in sess(x).items():
            if np.issubdtype(arr.dtype, np.floating) and arr.size:
                a = float(np.max(np.abs(arr[np.isfinite(arr)]))) if np.isfinite(arr).any() else float("inf")
                amax[name] = max(amax.get(name, 0.0), a)
    bad = sorted(((a, n) for n, a in amax.items() if a > FP16_MAX), reverse=True)
    return [{"tensor": n, "max_abs": a} for a, n in bad[:limit]]
