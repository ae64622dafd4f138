"""``calibrate``: what ``jetson-deploy calibrate`` does, as one library call.

Builds a calibration set from SOURCE files (or takes the one already in the
output dir when only ``model`` work is asked), then, given a model, computes INT8
ranges, caches and the Q/DQ model and holds them to the agreement gate.  The
command only parses options, calls :func:`calibrate`, prints the result and calls
:meth:`CalibrateResult.enforce_gate`.
"""
import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .._files import CALIBRATION_SET, atomic_dir
from .._messages import collect_messages
from ..errors import BadInput
from .cache import DEFAULT_TRT_VERSIONS
from .dataset import (DEFAULT_DEDUPE_BITS, CalibrationSet, build_calibration_set, fill_calibration_set, is_calibration_set,
                      load_calibration_set)
from .gate import gate_failure, holdout_advice
from .quantize import DEFAULT_EXCLUDE_BUDGET, Int8Result, compute_int8

PathLike = Union[str, Path]

log = logging.getLogger(__name__)


@dataclass
class SetOptions:
    """How to sample a calibration set."""

    num: int = 500
    seed: int = 0
    holdout: float = 0.1
    dedupe_bits: int = DEFAULT_DEDUPE_BITS


@dataclass
class QuantizeOptions:
    """How to compute INT8 ranges and gate them."""

    method: str = "entropy"
    trt_versions: "Sequence[str]" = DEFAULT_TRT_VERSIONS
    min_agreement: float = 0.99
    auto_exclude: bool = False
    exclude_budget: int = DEFAULT_EXCLUDE_BUDGET


@dataclass
class CalibrateResult:
    """The set, the INT8 result when a model was given, and the notes logged on the way."""

    calibration_set: "CalibrationSet"
    int8: "Optional[Int8Result]" = None
    min_agreement: float = 0.99
    notes: "List[str]" = field(default_factory=list)
    quantize: "Optional[QuantizeOptions]" = None  # what was asked (the gate's advice follows it)

    def set_summary(self) -> "Dict[str, Any]":
        cs = self.calibration_set
        m = cs.manifest
        return {
            "path": str(cs.path),
            "samples": len(cs),
            "holdout": cs.num_holdout,
            "shape": list(cs.shape),
            "dtype": str(cs.dtype),
            "set_sha256": cs.sha256,
            "spec_sha256": cs.spec_sha256,
            "skipped": len(m.get("skipped", [])),
            "duplicates": int(m.get("dedupe", {}).get("dropped", 0)),
            "stats": {"mean": m.get("stats", {}).get("mean"), "std": m.get("stats", {}).get("std")},
        }

    def to_dict(self) -> "Dict[str, Any]":
        out: "Dict[str, Any]" = {"calibration_set": self.set_summary(), "notes": list(self.notes)}
        if self.int8 is not None:
            out["int8"] = self.int8.to_dict()
        return out

    def enforce_gate(self) -> None:
        """Raise :class:`CheckFailed` (exit 1) when the INT8 agreement gate failed."""
        if self.int8 is not None:
            q = self.quantize or QuantizeOptions(min_agreement=self.min_agreement)
            err = gate_failure(self.int8, self.min_agreement, auto_exclude=q.auto_exclude, exclude_budget=q.exclude_budget)
            if err is not None:
                raise err


def calibrate(
    sources: "Sequence[PathLike]",
    out_dir: "PathLike",
    spec: Any = None,
    model: "Optional[PathLike]" = None,
    set_options: "Optional[SetOptions]" = None,
    quantize: "Optional[QuantizeOptions]" = None,
    progress: bool = True,
) -> "CalibrateResult":
    """Build (with ``sources``) or reuse (without) the set in ``out_dir``; with ``model``, INT8 for it.

    Does not raise when the gate fails, so the result can be shown first: call
    :meth:`CalibrateResult.enforce_gate` after.
    """
    so = set_options or SetOptions()
    qo = quantize or QuantizeOptions()
    with collect_messages("jetson_deploy.calibration") as notes:
        if sources and not spec:
            raise BadInput("--spec is required to build a calibration set: pass the model's ModelSpec file")
        if not sources:
            if not model:
                raise BadInput("give SOURCE files/folders/videos to build a set, or --model to compute INT8 ranges for the set in -o")
            if not is_calibration_set(out_dir):
                raise BadInput("{} holds no calibration set: give SOURCE files and --spec to build one first".format(out_dir))
        if sources and not model:
            cs = build_calibration_set(
                list(sources), spec, out_dir, num=so.num, seed=so.seed, holdout=so.holdout, progress=progress, dedupe_bits=so.dedupe_bits
            )
            _warn_small_holdout(cs, qo.min_agreement)
            return CalibrateResult(cs, min_agreement=qo.min_agreement, notes=notes, quantize=qo)
        # Everything (set, ranges, caches, Q/DQ model) is built beside -o and swapped in once at
        # the end: a failed or interrupted --model step leaves the previous set whole.
        with atomic_dir(Path(out_dir), kind=CALIBRATION_SET) as tmp:
            if sources:
                fill_calibration_set(list(sources), spec, tmp, num=so.num, seed=so.seed, holdout=so.holdout,
                                     progress=progress, dedupe_bits=so.dedupe_bits)
            else:
                _link_tree(Path(out_dir), tmp)
            int8 = compute_int8(
                model, tmp, method=qo.method, trt_versions=qo.trt_versions or DEFAULT_TRT_VERSIONS, min_agreement=qo.min_agreement,
                auto_exclude=qo.auto_exclude, exclude_budget=qo.exclude_budget, progress=progress,
            )
        result = CalibrateResult(load_calibration_set(out_dir), min_agreement=qo.min_agreement, notes=notes, quantize=qo)
        result.int8 = _moved(int8, tmp, Path(out_dir))
    return result


def _warn_small_holdout(cs: "CalibrationSet", min_agreement: float) -> None:
    """A set built for later (no --model): say now if the INT8 gate it will feed cannot resolve its threshold."""
    advice = holdout_advice(cs.num_holdout, len(cs) + cs.num_holdout, min_agreement)
    if advice:
        log.warning("warning: the INT8 agreement gate (convert --precision int8 --calib %s, --min-agreement %s) cannot "
                    "resolve its threshold with this set: %s", cs.path, min_agreement, advice)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) the files of the existing set into the staging directory."""
    for dirpath, dirnames, filenames in os.walk(str(src)):
        rel = os.path.relpath(dirpath, str(src))
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = os.path.join(dirpath, name), str(dst / rel / name)
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)


def _moved(r: "Int8Result", tmp: Path, out: Path) -> "Int8Result":
    """``r`` with its paths pointing into ``out`` (where ``tmp`` was swapped in)."""
    def fix(p: "Optional[Path]") -> "Optional[Path]":
        if p is None:
            return None
        try:
            return out / Path(p).relative_to(tmp)
        except ValueError:
            return Path(p)
    return dataclasses.replace(
        r, ranges_path=fix(r.ranges_path), qdq_path=fix(r.qdq_path), result_path=fix(r.result_path),
        cache_paths={k: fix(v) for k, v in r.cache_paths.items()},
    )
