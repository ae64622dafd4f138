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
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .. import __version__
from .._files import atomic_write_json, sha256_file
from .._lazy import require
from ..errors import BadInput
from .cache import DEFAULT_TRT_VERSIONS, trt_version_number, write_cache
from .dataset import load_calibration_set

RESULT_FILE = "int8.json"
RANGES_FILE = "ranges.json"
QDQ_FILE = "model.qdq.onnx"
DEFAULT_EXCLUDE_BUDGET = 5

PathLike = Union[str, Path]


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
    """An ``.onnx`` file, a bundle (directory or packed file, checked against its
    manifest) whose fp32 ``model.onnx`` is used, or a plain directory holding
    ``model.onnx``."""
    p = Path(model)
    if not p.exists():
        raise BadInput("model {} does not exist: pass an .onnx file or a bundle directory".format(p))
    if p.is_file() and p.suffix.lower() == ".onnx":
        return p
    if p.is_dir() and not (p / "manifest.json").is_file():
        if (p / "model.onnx").is_file():
            return p / "model.onnx"
        raise BadInput("{} holds no model.onnx and is not a bundle".format(p))
    try:
        from ..bundle import open_bundle  # type: ignore[attr-defined]
    except ImportError:
        open_bundle = None
    if open_bundle is None:
        if (p / "model.onnx").is_file():
            return p / "model.onnx"
        raise BadInput("{} is neither an .onnx file nor a bundle with model.onnx".format(p))
    b = open_bundle(p)
    found = None
    path_fn = getattr(b, "path", None)
    if callable(path_fn):
        found = path_fn("onnx")
    if found is None:
        root = getattr(b, "root", None)
        if root is not None and (Path(root) / "model.onnx").is_file():
            found = Path(root) / "model.onnx"
    if found is None or not Path(found).is_file():
        raise BadInput("bundle {} has no ONNX model (kind onnx) to calibrate".format(p))
    return Path(found)


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
    log: "Optional[Callable[[str], None]]" = None,
) -> "Int8Result":
    """Compute INT8 ranges for ``onnx_path`` over the set in ``calib_dir`` and gate them.

    ``onnx_path`` may be a bundle (its model.onnx is used).  Does not raise when
    the gate fails: check ``result.passed`` (the CLI turns it into exit 1).
    """
    from .auto_exclude import search_exclusions
    from .gate import Gate
    from .qdq import build_qdq, ensure_node_names
    from .ranges import METHODS, Ranges, compute_ranges

    if method not in METHODS:
        raise BadInput("--method must be one of {}, got {!r}".format("|".join(METHODS), method))
    if not 0.0 <= float(min_agreement) <= 1.0:
        raise BadInput("--min-agreement must be between 0 and 1, got {}".format(min_agreement))
    versions = [str(v) for v in trt_versions]
    for v in versions:
        trt_version_number(v)  # validates
    say = log or (lambda m: print(m, file=sys.stderr) if progress else None)
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
        for d in ([out] if out == calib_dir else [out, calib_dir]):
            rec = _try_reuse(d, settings, versions)
            if rec is None:
                continue
            if d != out:
                for name in rec["files"]:
                    shutil.copy2(str(d / name), str(out / (name + ".tmp")))
                    (out / (name + ".tmp")).replace(out / name)
                atomic_write_json(out / RESULT_FILE, rec)
            say("reusing INT8 results in {} (same model, set and settings)".format(d))
            return _result_from_record(out, rec, versions, reused="all")

    onnx = require("onnx", "INT8 calibration")
    with tempfile.TemporaryDirectory(prefix="jd-int8-") as td:
        work_model = onnx_path
        model = onnx.load(str(onnx_path), load_external_data=False)
        if ensure_node_names(model):
            if any(i.HasField("data_location") and i.data_location == 1 for i in model.graph.initializer):
                raise BadInput("{}: has unnamed nodes and external weights; name the nodes (re-export) to calibrate".format(onnx_path))
            work_model = Path(td) / "named.onnx"
            onnx.save(model, str(work_model))
        del model

        reused = "none"
        rp = _find_ranges([out, calib_dir], onnx_sha, cs.sha256, method) if reuse else None
        if rp is not None:
            ranges = Ranges.load(rp)
            reused = "ranges"
            say("reusing ranges from {}".format(rp))
        else:
            ranges = compute_ranges(work_model, cs, method=method, progress=progress)
            ranges.onnx_sha256 = onnx_sha
        ranges_path = ranges.save(out / RANGES_FILE)

        gate = Gate(work_model, cs)
        excluded_groups: "List[Dict[str, Any]]" = []
        excluded_nodes: "List[str]" = []
        excluded_tensors: "List[str]" = []
        if auto_exclude:
            res, best, tmpdir = search_exclusions(work_model, ranges, gate, float(min_agreement), int(exclude_budget), progress, say)
            try:
                before, after = res.before, res.after
                excluded_groups = [g.to_dict() for g in res.excluded]
                excluded_nodes = [n for g in res.excluded for n in g.nodes]
                excluded_tensors = sorted({t for g in res.excluded for t in g.tensors})
                qdq_path = out / QDQ_FILE
                shutil.copyfile(str(best), str(out / (QDQ_FILE + ".tmp")))
                (out / (QDQ_FILE + ".tmp")).replace(qdq_path)
                ranking = res.ranking
            finally:
                tmpdir.cleanup()
        else:
            qdq_path = build_qdq(work_model, ranges, out / QDQ_FILE)
            before = after = gate.evaluate(qdq_path, float(min_agreement))
            ranking = []
    assert after is not None

    # Implicit INT8: tensors of layers left in float get no scale, so TensorRT
    # keeps the layers that produce or consume them out of INT8.
    amax = {k: v for k, v in ranges.amax().items() if k not in set(excluded_tensors)}
    cache_paths: "Dict[str, Path]" = {}
    cache_method = "minmax" if method == "minmax" else "entropy"
    for v in versions:
        cache_paths[v] = write_cache(out / "{}.cache".format(v), amax, v, cache_method)

    files = {p.name: sha256_file(p) for p in [ranges_path, qdq_path] + list(cache_paths.values())}
    rec = {
        "schema_version": 1,
        "kind": "int8-result",
        "tool": {"name": "jetson-deploy", "version": __version__},
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": settings,
        "onnx": str(onnx_path),
        "trt_versions": versions,
        "samples": ranges.samples,
        "agreement": after,
        "agreement_before": before,
        "passed": bool(after["passed"]),
        "excluded": excluded_nodes,
        "excluded_groups": excluded_groups,
        "excluded_tensors": excluded_tensors,
        "ranking": ranking,
        "reused": reused,
        "files": files,
    }
    atomic_write_json(out / RESULT_FILE, rec)
    return _result_from_record(out, rec, versions, reused=reused)


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


def load_int8_result(path: "PathLike") -> "Optional[Dict[str, Any]]":
    """The ``int8.json`` record in a calibration/output dir, or None."""
    p = Path(path) / RESULT_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
