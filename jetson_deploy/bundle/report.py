"""``bundle verify`` and ``bundle inspect`` as data (dicts), plus their human rendering."""
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..errors import BadInput, CheckFailed
from .manifest import MANIFEST, SCHEMA_VERSION, check_schema_version, parse_manifest
from .sign import INVALID, UNSIGNED, VALID, signature_state

PathLike = Union[str, "os.PathLike[str]"]


def human_size(n: "Optional[int]") -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return "{:.0f} {}".format(size, unit) if unit == "B" else "{:.1f} {}".format(size, unit)
        size /= 1024.0
    return "{} B".format(n)  # pragma: no cover


def verify_bundle(path: "PathLike", public_key: "Optional[PathLike]" = None) -> "Dict[str, Any]":
    """Full check of a bundle; returns a report (``ok`` False lists ``problems``), never raises for a failed check.

    Checks: manifest schema and version, every artifact's size and sha256, no
    unlisted/linked/special files, and with ``public_key`` the Ed25519 signature.
    Raises BadInput only when ``path`` is not a bundle at all.
    """
    from .reader import open_bundle

    report: "Dict[str, Any]" = {"bundle": str(path), "ok": False, "problems": [], "signature": None, "schema_version_read": SCHEMA_VERSION}
    damage = _damaged_archive(path)
    if damage:
        report["problems"].append({"path": str(path), "problem": "corrupt archive", "message": damage})
        report["signature"] = {"state": "not checked", "detail": "the archive is damaged"}
        return report
    try:
        b = open_bundle(path, verify=False)
    except CheckFailed as exc:
        report["problems"].append({"path": str(path), "problem": str(exc), "message": str(exc)})
        return report
    try:
        report.update(name=b.name, version=b.version, schema_version=b.schema_version, manifest_sha256=b.sha256)
        probs = b.problems(hash_files=True)
        report["problems"].extend(probs)
        bad = {p["path"] for p in probs}
        report["artifacts"] = [
            {"path": a["path"], "kind": a["kind"], "size": a["size"], "ok": a["path"] not in bad} for a in b.artifacts
        ]
        report["checked_bytes"] = sum(a["size"] for a in b.artifacts if a["path"] not in bad)
        state, detail = signature_state(b, public_key)
        report["signature"] = {"state": state, "detail": detail}
        if public_key is not None and state != VALID:
            msg = "signature {}: {}".format(state, detail or "bundle has no manifest.sig") if state != UNSIGNED else "signature: bundle is not signed (no manifest.sig)"
            report["problems"].append({"path": "manifest.sig", "problem": state, "message": msg})
        report["ok"] = not report["problems"]
    finally:
        b.close()
    return report


def _spec_summary(spec: Any) -> "Dict[str, Any]":
    if not isinstance(spec, dict):
        return {}
    inp = spec.get("input", {}) or {}
    pre = spec.get("preprocess", {}) or {}
    labels = spec.get("labels")
    return {
        "task": spec.get("task"),
        "input": inp.get("name"),
        "shape": inp.get("shape"),
        "dtype": inp.get("dtype"),
        "color": inp.get("color"),
        "layout": inp.get("layout", "nchw"),
        "resize": pre.get("resize"),
        "keep_aspect": pre.get("keep_aspect"),
        "mean": pre.get("mean"),
        "std": pre.get("std"),
        "scale": pre.get("scale"),
        "outputs": spec.get("outputs"),
        "labels": labels if isinstance(labels, list) else None,
    }


def inspect_bundle(path: "PathLike", public_key: "Optional[PathLike]" = None) -> "Dict[str, Any]":
    """What a bundle holds, fast (no hashing): identity, spec, precision, accuracy,
    calibration, engine targets, artifacts and sizes, signature state, and a size-only
    integrity check (``bundle verify`` does the sha256s).  A packed bundle is read in
    place (manifest and member headers only), not extracted."""
    from .reader import open_bundle

    p = Path(path)
    if p.is_file():
        return _inspect_packed(p, public_key)
    try:
        b = open_bundle(p, verify=False)
    except CheckFailed:
        # say at least which schema version it is when we cannot read it
        if p.is_dir() and (p / MANIFEST).is_file():
            m = parse_manifest((p / MANIFEST).read_bytes(), str(p))
            check_schema_version(m, str(p))
        raise
    try:
        state, detail = signature_state(b, public_key)
        probs = [x["message"] for x in b.problems(hash_files=False)]
        return _inspect_dict(str(path), b.manifest, b.sha256, state, detail, probs, packed=False)
    finally:
        b.close()


def _damaged_archive(path: "PathLike") -> "Optional[str]":
    """For a packed bundle: how its tar stream is damaged (:func:`.archive.archive_damage`), else None."""
    from .archive import archive_damage

    return archive_damage(path) if Path(path).is_file() else None


def _inspect_packed(p: Path, public_key: "Optional[PathLike]") -> "Dict[str, Any]":
    import hashlib

    damage = _damaged_archive(p)
    if damage:
        raise CheckFailed(damage)

    from .manifest import RESERVED, validate_manifest
    from .pack import read_packed_index
    from .sign import signature_state_of

    idx = read_packed_index(p)
    raw = idx["manifest"]
    m = parse_manifest(raw, str(p))
    validate_manifest(m, str(p), error=CheckFailed)
    state, detail = signature_state_of(raw, idx["signature"], public_key)
    probs = list(idx["problems"])
    listed = {}
    for a in m["artifacts"]:
        listed[a["path"]] = a
        size = idx["sizes"].get(a["path"])
        if size is None:
            probs.append("artifact {}: missing".format(a["path"]))
        elif size != a["size"]:
            probs.append("artifact {}: size mismatch (manifest {} bytes, file {} bytes)".format(a["path"], a["size"], size))
    for rel in sorted(idx["sizes"]):
        if rel not in listed and rel not in RESERVED:
            probs.append("{}: unlisted file (not in manifest.json)".format(rel))
    return _inspect_dict(str(p), m, hashlib.sha256(raw).hexdigest(), state, detail, probs, packed=True)


def _inspect_dict(source: str, m: "Dict[str, Any]", sha: str, state: str, detail: "Optional[str]", probs: "List[str]", packed: bool) -> "Dict[str, Any]":
    arts = sorted(m.get("artifacts", []), key=lambda a: a["path"])
    targets: "List[Dict[str, Any]]" = []
    for a in arts:
        if a["kind"] == "engine":
            t = dict(a.get("target") or {})
            t.update(path=a["path"], size=a["size"])
            targets.append(t)
    return {
        "bundle": source,
        "name": m["name"],
        "version": m["version"],
        "schema_version": m["schema_version"],
        "created": m.get("created"),
        "generator": m.get("generator"),
        "manifest_sha256": sha,
        "packed": packed,
        "precision": m.get("precision", "fp32"),
        "spec": _spec_summary(m.get("spec")),
        "accuracy": m.get("accuracy"),
        "calibration": m.get("calibration"),
        "quantization": m.get("quantization"),
        "source": m.get("source"),
        "conversion": m.get("conversion"),
        "targets": targets,
        "artifacts": [{"path": a["path"], "kind": a["kind"], "size": a["size"], "sha256": a["sha256"], "target": a.get("target")} for a in arts],
        "total_size": sum(a["size"] for a in arts),
        "signature": {"state": state, "detail": detail},
        "integrity": {"checked": "sizes", "ok": not probs, "problems": probs},
        "exports": _exports(m),
    }


def _exports(m: "Dict[str, Any]") -> "Dict[str, Dict[str, Any]]":
    """What ``bundle export`` can write for this manifest, and why not (see bundle/export/support.py)."""
    from .export.support import export_support

    try:
        return export_support(m)
    except (BadInput, KeyError, TypeError, ValueError) as exc:  # inspect shows a bundle whatever its spec holds
        why = "cannot tell ({}: {})".format(type(exc).__name__, exc)
        return {"deepstream": {"ok": False, "detail": why}, "triton": {"ok": False, "detail": why}}


def _exports_text(exports: "Optional[Dict[str, Dict[str, Any]]]") -> str:
    if not exports:
        return "-"
    ok = ["{} ({})".format(f, e["detail"]) for f, e in sorted(exports.items()) if e["ok"]]
    no = ["{}: {}".format(f, e["detail"]) for f, e in sorted(exports.items()) if not e["ok"]]
    text = ", ".join(ok) if ok else "none"
    return text + ("; not to " + "; ".join(no) if no else "")


# ---- human rendering ----------------------------------------------------------------------


def _table(rows: "List[List[str]]", indent: str = "  ") -> "List[str]":
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return "{:.6g}".format(v)
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12] + "..."  # a sha256: the prefix is enough at a glance (--json has it whole)
    return str(v)


def _kv(d: "Optional[Dict[str, Any]]", skip: tuple = ()) -> str:
    if not d:
        return "-"
    parts = []
    for k in sorted(d):
        if k in skip:
            continue
        v = d[k]
        if isinstance(v, (dict, list)):
            continue
        parts.append("{}={}".format(k, _fmt_value(v)))
    return ", ".join(parts) if parts else "-"


def _sig_text(sig: "Dict[str, Any]", style: Any) -> str:
    state = sig["state"]
    color = {VALID: "green", INVALID: "red"}.get(state)
    text = style(state, fg=color, bold=state == INVALID) if color else state
    return text + (" ({})".format(sig["detail"]) if sig.get("detail") else "")


def _plain(text: str, **_: Any) -> str:
    return text


def render_inspect(info: "Dict[str, Any]", style: Any = _plain) -> str:
    """Aligned, glanceable text for ``bundle inspect``."""
    lines = [style("{} {}".format(info["name"], info["version"]), bold=True) + "   (schema v{}, {}, created {})".format(
        info["schema_version"], info.get("generator") or "?", info.get("created") or "?")]
    s = info.get("spec") or {}
    shape = "x".join(str(x) for x in (s.get("shape") or [])) or "?"
    labels = s.get("labels") or []
    acc = info.get("accuracy") or {}
    if acc.get("metric") is not None and acc.get("value") is not None:
        acc_text = "{} = {}".format(acc["metric"], _fmt_value(acc["value"]))
        if acc.get("reference"):
            acc_text += " vs {}".format(acc["reference"])
        rest = _kv(acc, skip=("metric", "value", "reference"))
        if rest != "-":
            acc_text += " ({})".format(rest)
    else:
        acc_text = _kv(acc)
    cal = info.get("calibration") or {}
    cal_text = _kv(cal)
    integ = info["integrity"]
    rows = [
        ["bundle", "{}  (manifest sha256 {}...)".format(info["bundle"], info["manifest_sha256"][:16])],
        ["signature", _sig_text(info["signature"], style)],
        ["sizes", "ok ({} in {} files; 'bundle verify' checks sha256s)".format(human_size(info["total_size"]), len(info["artifacts"]))
         if integ["ok"] else style("MISMATCH: " + "; ".join(integ["problems"][:3]), fg="red")],
        ["precision", info["precision"]],
        ["task", "{}  input '{}' {} {} {} {}  -> outputs {}".format(
            s.get("task") or "?", s.get("input") or "?", shape, s.get("dtype") or "?", s.get("color") or "?", s.get("layout") or "nchw",
            ", ".join(s.get("outputs") or []) or "?")],
        ["preprocess", "resize {} keep_aspect={} scale={} mean={} std={}".format(
            s.get("resize"), s.get("keep_aspect"), _fmt_value(s.get("scale")), s.get("mean"), s.get("std"))],
        ["labels", "{}: {}".format(len(labels), ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")) if labels else "-"],
        ["accuracy", acc_text],
        ["calibration", cal_text],
        ["exportable to", _exports_text(info.get("exports"))],
    ]
    if info.get("quantization"):
        rows.append(["quantization", _kv(info["quantization"])])
    if info.get("source"):
        rows.append(["source", _kv(info["source"])])
    lines += _table(rows)
    lines.append("")
    if info["targets"]:
        lines.append(style("Engines", bold=True))
        trows = [["TensorRT", "SM", "precision", "JetPack", "platform", "size", "path"]]
        for t in info["targets"]:
            trows.append([str(t.get("tensorrt", "?")), str(t.get("sm", "?")), str(t.get("precision", "?")), str(t.get("jetpack") or "-"),
                          str(t.get("platform") or "-"), human_size(t.get("size")), t["path"]])
        lines += _table(trows)
    else:
        lines.append(style("Engines", bold=True) + "  none bundled (built on the device from model.onnx and cached)")
    lines.append("")
    lines.append(style("Artifacts", bold=True))
    arows = [["kind", "size", "sha256", "path"]]
    for a in info["artifacts"]:
        arows.append([a["kind"], human_size(a["size"]), a["sha256"][:12], a["path"]])
    lines += _table(arows)
    lines.append("  total {} in {} files".format(human_size(info["total_size"]), len(info["artifacts"])))
    return "\n".join(lines)


def render_verify(report: "Dict[str, Any]", style: Any = _plain) -> str:
    lines = []
    head = "{} {}".format(report["name"], report.get("version", "?")) if report.get("name") else report["bundle"]
    if report["ok"]:
        lines.append(style("OK", fg="green", bold=True) + "  {}  ({} artifacts, {} checked)".format(
            head, len(report.get("artifacts", [])), human_size(report.get("checked_bytes"))))
    else:
        lines.append(style("FAILED", fg="red", bold=True) + "  {}  ({} problem{})".format(
            head, len(report["problems"]), "s" if len(report["problems"]) != 1 else ""))
        for p in report["problems"]:
            lines.append("  " + p["message"])
    if report.get("signature"):
        lines.append("  signature: " + _sig_text(report["signature"], style))
    if report.get("manifest_sha256"):
        lines.append("  manifest sha256: " + report["manifest_sha256"])
    return "\n".join(lines)


__all__ = ["verify_bundle", "inspect_bundle", "render_inspect", "render_verify", "human_size", "BadInput"]
