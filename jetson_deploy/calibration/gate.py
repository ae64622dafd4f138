"""Accuracy gate: INT8 (Q/DQ model in ONNX Runtime) vs FP32 on held-out samples.

Classifiers: top-1 agreement of the first output (argmax over the last axis).
Other tasks: mean cosine similarity of the flattened outputs, per sample.
Both report max/mean absolute error and cosine statistics as well.  The gate
passes when the metric's value is at least ``min_agreement``.

Held-out samples were never used to compute ranges.  When a set has none (built
with ``holdout=0``) the calibration samples are used and the result says so.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .._lazy import require
from ..errors import CheckFailed
from .ranges import DEFAULT_BATCH, iter_model_batches, model_input, numpy_input_dtype

REFERENCE_CACHE_BYTES = 256 << 20  # keep FP32 outputs in memory up to this size


def _session(path: "Union[str, Path]") -> Any:
    ort = require("onnxruntime", "the INT8 accuracy gate")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 0
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


class Gate:
    """Runs candidate INT8 models against FP32 reference outputs (computed once)."""

    def __init__(self, fp32_path: "Union[str, Path]", cs: Any, task: "Optional[str]" = None, max_samples: int = 2000) -> None:
        onnx = require("onnx", "the INT8 accuracy gate")
        self.fp32_path = Path(fp32_path)
        self.cs = cs
        self.task = task or cs.spec.task
        model = onnx.load(str(self.fp32_path), load_external_data=False)
        self.fixed_batch, elem = model_input(model, cs.input_name, str(self.fp32_path), cs.shape)
        self.dtype = numpy_input_dtype(elem)
        self.batch = self.fixed_batch or DEFAULT_BATCH
        self.on = "holdout"
        if cs.num_holdout == 0:
            self.on = "calibration (the set has no held-out samples)"
        self.max_samples = max_samples
        self._ref: "Optional[List[List[np.ndarray]]]" = None
        self._fp32 = _session(self.fp32_path)

    def _usable(self) -> "Optional[int]":
        """The set's samples (calibration + held-out), to name a ``--holdout``; None when unknown."""
        try:
            return int(len(self.cs)) + int(self.cs.num_holdout) if self.cs.num_holdout else None
        except TypeError:  # a set without a length (an iterable of batches)
            return None

    def _batches(self):
        it = self.cs.iter_holdout(self.batch) if self.cs.num_holdout else self.cs.iter_batches(self.batch)
        n = 0
        for b in iter_model_batches(it, self.fixed_batch, self.dtype):
            if n >= self.max_samples:
                break
            n += len(b)
            yield b

    def _run(self, sess: Any, x: "np.ndarray") -> "List[np.ndarray]":
        return [np.asarray(o, dtype=np.float32) for o in sess.run(None, {self.cs.input_name: x})]

    def _reference(self):
        """FP32 outputs per batch; cached when small enough, else recomputed."""
        if self._ref is not None:
            for x, ref in zip(self._batches(), self._ref):
                yield x, ref
            return
        cache: "Optional[List[List[np.ndarray]]]" = []
        size = 0
        for x in self._batches():
            ref = self._run(self._fp32, x)
            if cache is not None:
                size += sum(r.nbytes for r in ref)
                if size > REFERENCE_CACHE_BYTES:
                    cache = None
                else:
                    cache.append(ref)
            yield x, ref
        if cache is not None:
            self._ref = cache

    def evaluate(self, int8_path: "Union[str, Path]", min_agreement: float = 0.99) -> "Dict[str, Any]":
        """Compare one INT8 model with FP32; returns the agreement record."""
        sess = _session(int8_path)
        n = 0
        agree = 0
        cos: "List[float]" = []
        max_abs = 0.0
        sum_abs = 0.0
        count_abs = 0
        for x, ref in self._reference():
            out = self._run(sess, x)
            b = len(x)
            n += b
            if self.task == "classify":
                agree += int(np.sum(np.argmax(ref[0].reshape(b, -1), axis=1) == np.argmax(out[0].reshape(b, -1), axis=1)))
            r = np.concatenate([o.reshape(b, -1) for o in ref], axis=1).astype(np.float64)
            q = np.concatenate([o.reshape(b, -1) for o in out], axis=1).astype(np.float64)
            num = np.sum(r * q, axis=1)
            den = np.linalg.norm(r, axis=1) * np.linalg.norm(q, axis=1)
            c = np.where(den > 0, num / np.maximum(den, 1e-30), np.where(np.all(r == q, axis=1), 1.0, 0.0))
            cos.extend(float(v) for v in c)
            d = np.abs(r - q)
            max_abs = max(max_abs, float(d.max()) if d.size else 0.0)
            sum_abs += float(d.sum())
            count_abs += d.size
        if n == 0:
            return {"metric": "none", "value": 0.0, "samples": 0, "passed": False, "on": self.on, "threshold": float(min_agreement)}
        res: "Dict[str, Any]" = {
            "samples": n,
            "on": self.on,
            "cosine_mean": round(float(np.mean(cos)), 6),
            "cosine_min": round(float(np.min(cos)), 6),
            "max_abs_error": float(max_abs),
            "mean_abs_error": float(sum_abs / max(1, count_abs)),
            "threshold": float(min_agreement),
        }
        if self.task == "classify":
            res["metric"] = "top1_agreement"
            res["value"] = round(agree / float(n), 6)
            res["disagreements"] = n - agree
            res["wilson_lower_95"] = round(wilson_lower(agree, n), 6)
            note = resolution_note(n, min_agreement, self._usable())
            if note:
                res["note"] = note
        else:
            res["metric"] = "cosine"
            res["value"] = res["cosine_mean"]
        res["passed"] = bool(res["value"] >= min_agreement)
        return res


def wilson_lower(k: int, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval for k agreements in n: what the data can vouch for."""
    if n <= 0:
        return 0.0
    p = k / float(n)
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def resolution_note(n: int, threshold: float, usable: "Optional[int]" = None) -> "Optional[str]":
    """Say so when one disagreement already decides the gate: the set is too small to measure it.

    ``usable``: the set's samples (calibration + held-out), to name the ``--holdout`` that would do."""
    if threshold >= 1.0 or n <= 0:
        return None
    needed = samples_needed(threshold)
    if n >= needed:
        return None
    how = "(--num/--holdout)"
    f = holdout_for(needed, usable) if usable else None
    if f is not None:
        how = "(calibrate ... --holdout {:g}: {} of this set's {} samples)".format(f, int(np.floor(usable * f + 0.5)), usable)
    return ("{} held-out samples: a single disagreement moves agreement by {:.3f}, so the {} gate cannot tell "
            "a good INT8 model from a bad one; give it at least {} held-out samples {}").format(
        n, 1.0 / n, threshold, needed, how)


def better(a: "Dict[str, Any]", b: "Optional[Dict[str, Any]]") -> bool:
    """True when record ``a`` is better than ``b`` (value, then cosine, then error)."""
    if b is None:
        return True
    ka = (a["value"], a.get("cosine_mean", 0.0), -a.get("mean_abs_error", 0.0))
    kb = (b["value"], b.get("cosine_mean", 0.0), -b.get("mean_abs_error", 0.0))
    return ka > kb


def holdout_for(needed: int, usable: int) -> "Optional[float]":
    """The smallest ``--holdout`` (two decimals, at most 0.9) that holds out ``needed`` of ``usable``
    samples with the set builder's rounding (``floor(n * f + 0.5)``); None when 0.9 is not enough."""
    for hundredths in range(1, 91):
        f = hundredths / 100.0
        if np.floor(usable * f + 0.5) >= needed:
            return f
    return None


def samples_needed(threshold: float) -> int:
    """Held-out samples a ``threshold`` top-1 gate needs before one disagreement stops deciding it."""
    return int(np.ceil(1.0 / (1.0 - threshold) - 1e-9)) if threshold < 1.0 else 0


def holdout_advice(held_out: int, usable: int, threshold: float) -> "Optional[str]":
    """What to pass so a ``threshold`` gate gets enough held-out samples, or None when it has them."""
    needed = samples_needed(threshold)
    if not needed or held_out >= needed:
        return None
    f = holdout_for(needed, usable)
    if f is not None:
        how = "rebuild the set with --holdout {:g} ({} of its {} usable samples)".format(f, int(np.floor(usable * f + 0.5)), usable)
    else:
        how = "give more sources or a larger --num (at --holdout 0.5, {} usable samples are needed)".format(2 * needed)
    return "{} held-out samples, and a {} gate needs at least {}: {}".format(held_out, threshold, needed, how)


def gate_failure(result: Any, min_agreement: float, for_convert: bool = False, auto_exclude: "Optional[bool]" = None,
                 exclude_budget: "Optional[int]" = None) -> "Optional[CheckFailed]":
    """The error for a failed INT8 agreement gate (None when it passed), with advice that follows what was
    asked: ``--auto-exclude`` only when it was not given; with it, ``--exclude-budget`` when the budget
    ran out, else the other levers.  ``auto_exclude`` None: read from the result (layers left in float)."""
    if result.passed:
        return None
    a = result.agreement
    excluded = len(getattr(result, "excluded_groups", None) or [])
    asked = bool(excluded) if auto_exclude is None else bool(auto_exclude)
    tips = []
    if not asked:
        tips.append("try --auto-exclude")
    elif exclude_budget is not None and excluded >= exclude_budget:
        tips.append("--auto-exclude left {} layer group(s) in float, all --exclude-budget {} allows: try --exclude-budget {}".format(
            excluded, exclude_budget, max(2 * exclude_budget, exclude_budget + 5)))
    else:
        tips.append("--auto-exclude left {} layer group(s) in float and no other group helps".format(excluded))
    tips.append("more/better calibration data" if for_convert else "--method percentile/minmax or more calibration data")
    if for_convert:
        tips.append("or --precision fp16 (--force writes the bundle anyway)")
    if a.get("note"):
        tips.append("and give the gate enough held-out samples to tell ({})".format(a["note"]))
    if for_convert:
        head = "INT8 agreement {} {:.4f} is below --min-agreement {}".format(a.get("metric", ""), float(a.get("value", 0.0)), min_agreement)
    else:
        head = "INT8 {} {:.4f} on {} held-out samples is below --min-agreement {}".format(
            a.get("metric", "agreement"), float(a.get("value", 0.0)), a.get("samples", "?"), min_agreement)
    return CheckFailed("{}: {}".format(head, "; ".join(tips)))
