"""``compute_int8``: ranges, TensorRT caches, Q/DQ model and accuracy gate for one model.

Writes into ``out_dir`` (default: the calibration dir itself)::

    ranges.json          per-tensor ranges (+ method, ONNX sha256, set sha256)
    <trt-version>.cache  TensorRT calibration cache per target version (implicit INT8)
    model.qdq.onnx       Q/DQ model (explicit INT8; also runs in ONNX Runtime)
    int8.json            the result: agreement before/after, excluded layers, files + sha256

Every file is written atomically and ``int8.json`` last, so it marks a complete
result; a later call for the same ONNX model, set and settings reuses it, and a
call with other gate settings reuses at least ``ranges.json``.
"""
import datetime
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import __version__
from .._files import atomic_write_json, sha256_file
from .._lazy import require
from ..errors import BadInput, CheckFailed
from .cache import DEFAULT_TRT_VERSIONS, trt_version_number, write_cache
from .dataset import load_calibration_set
from .gate import gate_failure  # noqa: F401 - the gate's advice lives with the gate (was defined here)

RESULT_FILE = "int8.json"
RANGES_FILE = "ranges.json"
QDQ_FILE = "model.qdq.onnx"
DEFAULT_EXCLUDE_BUDGET = 5

PathLike = Union[str, Path]

log = logging.getLogger(__name__)


@dataclass
class Int8Result:
    ranges_path: Path
    cache_paths: "Dict[str, Path]"
    qdq_path: Path
    agreement: "Dict[str, Any]"
    excluded: "List[str]" = field(default_factory=list)  # node names left in float
    agreement_before: "Optional[Dict[str, Any]]" = None  # before auto-exclude (== agreement when not run)
    passed: bool = False
    method: str = "entropy"
    onnx_sha256: str = ""
    set_sha256: str = ""
    excluded_groups: "List[Dict[str, Any]]" = field(default_factory=list)
    excluded_tensors: "List[str]" = field(default_factory=list)
    reused: str = "none"  # none | ranges | all
    result_path: "Optional[Path]" = None

    def to_dict(self) -> "Dict[str, Any]":
        return {
            "ranges": str(self.ranges_path),
            "caches": {k: str(v) for k, v in self.cache_paths.items()},
            "qdq": str(self.qdq_path),
            "agreement": self.agreement,
            "agreement_before": self.agreement_before,
            "excluded": list(self.excluded),
            "excluded_groups": list(self.excluded_groups),
            "passed": self.passed,
            "method": self.method,
            "onnx_sha256": self.onnx_sha256,
            "set_sha256": self.set_sha256,
            "reused": self.reused,
        }


def resolve_model(model: "PathLike") -> Path:
    """An ``.onnx`` file, or a plain directory holding ``model.onnx``.

    A bundle is not opened here (calibration comes before bundles in the data flow): its
    caller passes the verified ``model.onnx`` (:func:`jetson_deploy.bundle.onnx_model`).
    """
    p = Path(model)
    if not p.exists():
        raise BadInput("model {} does not exist: pass an .onnx file or a bundle directory".format(p))
    if p.is_file() and p.suffix.lower() == ".onnx":
        return p
    if p.is_dir() and (p / "manifest.json").is_file():
        raise BadInput("{} is a bundle: open it with jetson_deploy.bundle.onnx_model() and pass its model.onnx".format(p))
    if p.is_dir() and (p / "model.onnx").is_file():
        return p / "model.onnx"
    raise BadInput("{} is neither an .onnx file nor a directory holding model.onnx".format(p))


def _same_settings(rec: "Dict[str, Any]", want: "Dict[str, Any]") -> bool:
    return all(rec.get("settings", {}).get(k) == v for k, v in want.items())


def _try_reuse(out_dir: Path, want: "Dict[str, Any]", versions: "Sequence[str]") -> "Optional[Dict[str, Any]]":
    p = out_dir / RESULT_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _same_settings(rec, want):
        return None
    files = rec.get("files", {})
    for v in versions:
        if "{}.cache".format(v) not in files:
            return None
    for name, digest in files.items():
        f = out_dir / name
        if not f.is_file() or sha256_file(f) != digest:
            return None
    return rec


def _find_ranges(dirs: "Sequence[Path]", onnx_sha: str, set_sha: str, method: str) -> "Optional[Path]":
    from .ranges import Ranges

    for d in dirs:
        p = d / RANGES_FILE
        if not p.is_file():
            continue
        try:
            r = Ranges.load(p)
        except BadInput:
            continue
        if r.onnx_sha256 == onnx_sha and r.set_sha256 == set_sha and r.method == method:
            return p
    return None


@dataclass
class _Quantized:
    """The Q/DQ model in the output dir and the gate's verdict on it."""

    qdq_path: Path
    before: "Dict[str, Any]"
    after: "Dict[str, Any]"
    excluded_groups: "List[Dict[str, Any]]" = field(default_factory=list)
    excluded_nodes: "List[str]" = field(default_factory=list)
    excluded_tensors: "List[str]" = field(default_factory=list)
    ranking: "List[Dict[str, Any]]" = field(default_factory=list)


def compute_int8(
    onnx_path: "PathLike",
    calib_dir: "PathLike",
    out_dir: "Optional[PathLike]" = None,
    method: str = "entropy",
    trt_versions: "Sequence[str]" = DEFAULT_TRT_VERSIONS,
    min_agreement: float = 0.99,
    auto_exclude: bool = False,
    exclude_budget: int = DEFAULT_EXCLUDE_BUDGET,
    progress: bool = True,
    reuse: bool = True,
) -> "Int8Result":
    """Compute INT8 ranges for ``onnx_path`` over the set in ``calib_dir`` and gate them.

    ``onnx_path`` may be a directory holding model.onnx (a bundle: pass
    :func:`jetson_deploy.bundle.onnx_model` of it).  Does not raise when
    the gate fails: check ``result.passed`` or call :func:`enforce_gate`.
    """
    versions = _check_args(method, min_agreement, trt_versions)
    onnx_path = resolve_model(onnx_path)
    cs = load_calibration_set(calib_dir)
    calib_dir = Path(calib_dir)
    out = Path(out_dir) if out_dir is not None else calib_dir
    out.mkdir(parents=True, exist_ok=True)
    onnx_sha = sha256_file(onnx_path)
    settings = {
        "onnx_sha256": onnx_sha,
        "set_sha256": cs.sha256,
        "method": method,
        "min_agreement": float(min_agreement),
        "auto_exclude": bool(auto_exclude),
        "exclude_budget": int(exclude_budget) if auto_exclude else 0,
    }
    if reuse:
        done = _reuse_all(out, calib_dir, settings, versions)
        if done is not None:
            return done

    with tempfile.TemporaryDirectory(prefix="jd-int8-") as td:
        work_model = _with_node_names(onnx_path, Path(td))
        ranges, reused = _ranges(work_model, cs, [out, calib_dir] if reuse else [], onnx_sha, method, progress)
        ranges_path = ranges.save(out / RANGES_FILE)
        q = _quantize(work_model, cs, ranges, out, float(min_agreement), int(exclude_budget) if auto_exclude else None, progress)
    cache_paths = _write_caches(out, ranges, q.excluded_tensors, versions, method)
    files = {p.name: sha256_file(p) for p in [ranges_path, q.qdq_path] + list(cache_paths.values())}
    rec = {
        "schema_version": 1,
        "kind": "int8-result",
        "tool": {"name": "jetson-deploy", "version": __version__},
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": settings,
        "onnx": str(onnx_path),
        "trt_versions": versions,
        "samples": ranges.samples,
        "agreement": q.after,
        "agreement_before": q.before,
        "passed": bool(q.after["passed"]),
        "excluded": q.excluded_nodes,
        "excluded_groups": q.excluded_groups,
        "excluded_tensors": q.excluded_tensors,
        "ranking": q.ranking,
        "reused": reused,
        "files": files,
    }
    atomic_write_json(out / RESULT_FILE, rec)
    return _result_from_record(out, rec, versions, reused=reused)


def _check_args(method: str, min_agreement: float, trt_versions: "Sequence[str]") -> "List[str]":
    from .ranges import METHODS

    if method not in METHODS:
        raise BadInput("--method must be one of {}, got {!r}".format("|".join(METHODS), method))
    if not 0.0 <= float(min_agreement) <= 1.0:
        raise BadInput("--min-agreement must be between 0 and 1, got {}".format(min_agreement))
    versions = [str(v) for v in trt_versions]
    for v in versions:
        trt_version_number(v)  # validates
    return versions


def _reuse_all(out: Path, calib_dir: Path, settings: "Dict[str, Any]", versions: "List[str]") -> "Optional[Int8Result]":
    """A complete earlier result for the same model, set and settings (copied into ``out``), or None."""
    for d in ([out] if out == calib_dir else [out, calib_dir]):
        rec = _try_reuse(d, settings, versions)
        if rec is None:
            continue
        if d != out:
            for name in rec["files"]:
                shutil.copy2(str(d / name), str(out / (name + ".tmp")))
                (out / (name + ".tmp")).replace(out / name)
            atomic_write_json(out / RESULT_FILE, rec)
        log.info("reusing INT8 results in {} (same model, set and settings)".format(d))
        return _result_from_record(out, rec, versions, reused="all")
    return None


def _with_node_names(onnx_path: Path, td: Path) -> Path:
    """The model itself, or a copy in ``td`` whose nodes all have names (exclusions name nodes)."""
    from .qdq import ensure_node_names

    onnx = require("onnx", "INT8 calibration")
    model = onnx.load(str(onnx_path), load_external_data=False)
    if not ensure_node_names(model):
        return onnx_path
    if any(i.HasField("data_location") and i.data_location == 1 for i in model.graph.initializer):
        raise BadInput("{}: has unnamed nodes and external weights; name the nodes (re-export) to calibrate".format(onnx_path))
    named = td / "named.onnx"
    onnx.save(model, str(named))
    return named


def _ranges(work_model: Path, cs: Any, search: "List[Path]", onnx_sha: str, method: str, progress: bool) -> "Tuple[Any, str]":
    """Ranges reused from ``search`` dirs when they fit, else computed; and ``reused`` (none|ranges)."""
    from .ranges import Ranges, compute_ranges

    rp = _find_ranges(search, onnx_sha, cs.sha256, method) if search else None
    if rp is not None:
        log.info("reusing ranges from {}".format(rp))
        return Ranges.load(rp), "ranges"
    ranges = compute_ranges(work_model, cs, method=method, progress=progress)
    ranges.onnx_sha256 = onnx_sha
    return ranges, "none"


def _quantize(work_model: Path, cs: Any, ranges: Any, out: Path, min_agreement: float, budget: "Optional[int]", progress: bool) -> "_Quantized":
    """The Q/DQ model and its agreement; with a ``budget``, layers left in float until the gate passes."""
    from .auto_exclude import search_exclusions
    from .gate import Gate
    from .qdq import build_qdq

    gate = Gate(work_model, cs)
    if budget is None:
        qdq_path = build_qdq(work_model, ranges, out / QDQ_FILE)
        after = gate.evaluate(qdq_path, min_agreement)
        return _Quantized(qdq_path, after, after)
    res, best, tmpdir = search_exclusions(work_model, ranges, gate, min_agreement, budget, progress)
    try:
        qdq_path = out / QDQ_FILE
        shutil.copyfile(str(best), str(out / (QDQ_FILE + ".tmp")))
        (out / (QDQ_FILE + ".tmp")).replace(qdq_path)
    finally:
        tmpdir.cleanup()
    assert res.after is not None
    return _Quantized(
        qdq_path, res.before, res.after,
        excluded_groups=[g.to_dict() for g in res.excluded],
        excluded_nodes=[n for g in res.excluded for n in g.nodes],
        excluded_tensors=sorted({t for g in res.excluded for t in g.tensors}),
        ranking=res.ranking,
    )


def _write_caches(out: Path, ranges: Any, excluded_tensors: "List[str]", versions: "List[str]", method: str) -> "Dict[str, Path]":
    """Implicit INT8: tensors of layers left in float get no scale, so TensorRT
    keeps the layers that produce or consume them out of INT8."""
    skip = set(excluded_tensors)
    amax = {k: v for k, v in ranges.amax().items() if k not in skip}
    cache_method = "minmax" if method == "minmax" else "entropy"
    return {v: write_cache(out / "{}.cache".format(v), amax, v, cache_method) for v in versions}


def _result_from_record(out: Path, rec: "Dict[str, Any]", versions: "Sequence[str]", reused: str) -> "Int8Result":
    return Int8Result(
        ranges_path=out / RANGES_FILE,
        cache_paths={v: out / "{}.cache".format(v) for v in versions},
        qdq_path=out / QDQ_FILE,
        agreement=rec["agreement"],
        excluded=list(rec.get("excluded", [])),
        agreement_before=rec.get("agreement_before"),
        passed=bool(rec["passed"]),
        method=rec["settings"]["method"],
        onnx_sha256=rec["settings"]["onnx_sha256"],
        set_sha256=rec["settings"]["set_sha256"],
        excluded_groups=list(rec.get("excluded_groups", [])),
        excluded_tensors=list(rec.get("excluded_tensors", [])),
        reused=reused,
        result_path=out / RESULT_FILE,
    )
