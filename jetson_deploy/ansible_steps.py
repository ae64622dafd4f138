"""The controller-side steps of the Ansible play (``ansible/deploy.yml``): one implementation.

The play runs these on the controller (``delegate_to: localhost``) and ships what they render
to the boards with ``script:``/``copy:``.  The on-device scripts are the very ones ``deploy``
runs (:mod:`jetson_deploy.deploy.scripts`), and the decisions between them (nothing to do,
upload or switch, disk space, what to prune, what the answer means) use the same functions,
so staging -> on-device sha256 -> atomic switch -> health gate -> rollback is the same here::

    python -m jetson_deploy.ansible_steps stage BUNDLE WORKDIR          # verify here, lay files out (-> probe.sh)
    ... script: probe.sh on HOST without an inventory tensorrt= (bundles past opset 13), then
    python -m jetson_deploy.ansible_steps prepare WORKDIR HOST --root R [--tensorrt V | --probe OUT] [--force]
    ... script: prepare.sh on HOST, its stdout on stdin of:
    python -m jetson_deploy.ansible_steps plan WORKDIR HOST --root R --rc RC [--health-cmd ...]
    ... copy: files -> staging (when the plan says upload), script: finalize.sh, its stdout on stdin of:
    python -m jetson_deploy.ansible_steps result WORKDIR HOST --rc RC

Every step prints one JSON object on stdout; a failure prints one line on stderr and exits
non-zero (``result``: 4 rolled back, 1 failed; ``prepare``: 2 for a host whose TensorRT is older than
the bundle needs, as ``deploy`` refuses it, before anything is written on it, unless ``--force``), so
Ansible marks the host failed with it.
"""
import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ._files import atomic_write_json, atomic_write_text
from .deploy import scripts
from .deploy.local_bundle import open_local_bundle
from .deploy.options import check_root
from .deploy.single_host import retention, rollback_message
from .deploy.transport import ScriptResult
from .deploy.trt_check import PROBE_SCRIPT, needs_probe, refuse_old, tensorrt_from_probe
from .errors import BadInput, JetsonDeployError
from .service import check_name as check_service_name
from .service import deploy_gate, unit_name

BUNDLE_JSON = "bundle.json"
_HOST_DIR_KEEP = re.compile(r"[A-Za-z0-9\-]")


def host_dir_name(host: str) -> str:
    """The controller's directory for one inventory host, one-to-one: every character but letters,
    digits and '-' is written ``_XX`` (its UTF-8 bytes in hex), '_' included, so ``b+1`` and ``b_1``
    (once both ``b_1``) never share a directory and run each other's scripts."""
    out = []
    for ch in host:
        out.append(ch if _HOST_DIR_KEEP.match(ch) else "".join("_{:02x}".format(b) for b in ch.encode("utf-8")))
    return "".join(out) or "_"


def _host_dir(workdir: str, host: str) -> Path:
    d = Path(workdir) / "hosts" / host_dir_name(host)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _load(workdir: str) -> "Dict[str, Any]":
    try:
        return json.loads((Path(workdir) / BUNDLE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JetsonDeployError("{} has no staged bundle ({}): run the stage step first".format(workdir, exc))


def stage(bundle: str, workdir: str, public_key: "Optional[str]" = None) -> "Dict[str, Any]":
    """Verify BUNDLE (sizes, sha256, signature with a key) and lay its files out under WORKDIR/files."""
    files_dir = Path(workdir) / "files"
    if files_dir.exists():
        shutil.rmtree(str(files_dir))
    with open_local_bundle(bundle, public_key) as lb:
        for rel, _, _ in lb.files:
            dst = files_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(str(lb.root / rel), str(dst))
            except OSError:
                shutil.copyfile(str(lb.root / rel), str(dst))
        info = {"name": lb.name, "version": lb.version, "files_dir": str(files_dir.resolve()),
                "files": [list(f) for f in lb.files], "sums_text": lb.sums_text, "sizes_text": lb.sizes_text,
                "total_size": lb.total_size, "compat": _compat(lb.manifest)}
    atomic_write_json(Path(workdir) / BUNDLE_JSON, info)
    probe = ""
    if needs_probe(info["compat"]):  # the boards are asked their TensorRT (docs/deploy.md)
        atomic_write_text(Path(workdir) / "probe.sh", PROBE_SCRIPT)
        probe = str((Path(workdir) / "probe.sh").resolve())
    out = {k: info[k] for k in ("name", "version", "files_dir", "total_size")}
    out["probe"] = probe
    return out


def _compat(manifest: "Dict[str, Any]") -> "Dict[str, Any]":
    """What the TensorRT check reads from the manifest (:func:`jetson_deploy.bundle.opset.bundle_requirement`)."""
    return {"name": manifest.get("name"), "requires": manifest.get("requires") or {},
            "source": {k: v for k, v in (manifest.get("source") or {}).items() if k in ("onnx_opset", "opset")},
            "conversion": {k: v for k, v in (manifest.get("conversion") or {}).items() if k in ("min_tensorrt", "opset")}}


def prepare(workdir: str, host: str, root: str, tensorrt: "Optional[str]" = None, probe_out: str = "",
            force: bool = False) -> "Dict[str, Any]":
    """Render the prepare step (inspect the device, make staging, write expected checksums).

    First, a host whose TENSORRT (inventory) or probed TensorRT (PROBE_OUT, the answer to the stage
    step's probe.sh) is older than the bundle needs is refused (exit 2) unless FORCE, before anything
    is written on it (:mod:`jetson_deploy.deploy.trt_check`, as ``deploy`` does)."""
    info = _load(workdir)
    root = _abs_root(root)
    known = (tensorrt, "inventory") if tensorrt else tensorrt_from_probe(probe_out) if probe_out else None
    if known is not None:
        refuse_old(info.get("compat") or {}, {host: known}, force)
    path = _host_dir(workdir, host) / "prepare.sh"
    atomic_write_text(path, scripts.prepare(root, info["name"], info["version"], info["sums_text"]))
    return {"script": str(path.resolve())}


def _abs_root(root: str) -> str:
    root = check_root(root)
    if not root.startswith("/"):
        raise JetsonDeployError("jd_root {!r}: the Ansible play needs an absolute device root (copy: needs it)".format(root))
    return root


def plan(workdir: str, host: str, root: str, rc: int, prepare_out: str, keep: int = 3,
         health_cmd: "Optional[str]" = None, health_timeout: float = 60.0, service: "Optional[str]" = None,
         settle: int = 10) -> "Dict[str, Any]":
    """Read the device's answer to prepare, decide unchanged / switch / upload, render finalize.

    With SERVICE the health gate first restarts that unit on the new version and requires it to
    stay active for SETTLE seconds; after a failed gate finalize itself restarts it on the
    version it switched back to (:func:`jetson_deploy.service.deploy_gate`, as ``deploy`` does)."""
    info = _load(workdir)
    root = _abs_root(root)
    _check_plan_args(keep, service, settle, health_timeout)  # before anything is decided: "unchanged" too
    res = ScriptResult(rc, prepare_out.replace("\r", ""), "")
    if rc != 0 or res.first("PREPARED") is None:
        raise JetsonDeployError("preparing {} failed: {}".format(root, res.error_line()))
    if "sha256sum" not in set(res.lines("HAVE")):
        raise JetsonDeployError("the device has no sha256sum (GNU coreutils or busybox): install it to verify uploads")
    name, version = info["name"], info["version"]
    active = (res.first("ACTIVE") or "").strip()
    installed = [v for v in res.lines("INSTALLED") if v]
    history = [v for v in res.lines("HIST") if v]
    target = res.first("TARGET", "absent")
    staging = "{}/staging/{}/{}".format(root, name, version)
    if active == version and target == "ok":
        return {"action": "unchanged", "staging": staging, "message": "{} {} is already active and verified; nothing to do".format(name, version)}
    action = "switch" if target == "ok" else "upload"
    if action == "upload":
        _check_space(res, info, root)
    prune = retention(history, installed, version, active, keep)
    gate_cmd, gate_timeout, on_rollback = deploy_gate(service, settle, health_cmd or None, health_timeout)
    script = scripts.finalize(root, name, version, action, info["sizes_text"], prune, gate_cmd, gate_timeout, on_rollback)
    path = _host_dir(workdir, host) / "finalize.sh"
    atomic_write_text(path, script)
    atomic_write_json(_host_dir(workdir, host) / "plan.json", {"previous": active, "action": action, "service": service or ""})
    return {"action": action, "staging": staging, "finalize": str(path.resolve()), "previous": active, "prune": prune}


def _check_plan_args(keep: int, service: "Optional[str]", settle: int, health_timeout: float) -> None:
    """The play's variables, checked as ``deploy`` checks its options (one line, exit 1)."""
    import math

    if keep < 1:
        raise JetsonDeployError("jd_keep={}: keep 1 or more versions (the active and the previous one are always kept)".format(keep))
    if service:
        try:
            check_service_name(service)
        except BadInput as exc:
            raise JetsonDeployError("jd_service: {}".format(exc))
    if settle < 0:
        raise JetsonDeployError("jd_service_settle={}: give 0 or more seconds".format(settle))
    if not math.isfinite(health_timeout) or health_timeout <= 0:
        raise JetsonDeployError("jd_health_timeout={}: give a number of seconds above 0".format(health_timeout))


def _check_space(res: "ScriptResult", info: "Dict[str, Any]", root: str) -> None:
    staged: "Dict[str, int]" = {}
    for line in res.lines("STAGED"):
        size, _, rel = line.partition(" ")
        if size.isdigit():
            staged[rel] = int(size)
    need = max(0, int(info["total_size"]) - sum(min(staged.get(rel, 0), size) for rel, size, _ in info["files"]))
    avail_kb = (res.first("DF") or "").strip()
    if avail_kb.isdigit() and int(avail_kb) * 1024 < need + max(1 << 20, need // 100):
        raise JetsonDeployError("not enough disk space under {}: the upload needs {:.1f} MiB, {:.1f} MiB free (df -Pk)".format(
            root, need / 1048576.0, int(avail_kb) / 1024.0))


def result(workdir: str, host: str, rc: int, finalize_out: str) -> "Dict[str, Any]":
    """What the finalize answer means: deployed, rolled-back (health check failed) or failed."""
    info = _load(workdir)
    try:
        planned = json.loads((_host_dir(workdir, host) / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        planned = {}
    previous, service = planned.get("previous", ""), planned.get("service") or None
    res = ScriptResult(rc, finalize_out.replace("\r", ""), "")
    out = {"name": info["name"], "version": info["version"], "previous": previous, "pruned": res.lines("PRUNED")}
    if rc == scripts.RC_HEALTH:
        out.update(result="rolled-back", active=previous, health_log=res.lines("HEALTH_LOG"),
                   message=rollback_message(res, previous, info["name"], service))
    elif rc == scripts.RC_VERIFY:
        bad = res.lines("BAD")
        out.update(result="failed", active=previous, message="verification on the device failed, nothing activated: {}; "
                   "removed from staging, run the play again to re-upload".format(bad[0] if bad else "?"))
    elif rc != 0 or res.first("DONE") is None:
        out.update(result="failed", active=previous, message="activating {} failed: {}".format(info["version"], res.error_line()))
    else:
        out.update(result="deployed", active=info["version"], message="{} {} active{}{}".format(
            info["name"], info["version"], " (was {})".format(previous) if previous else "",
            "; {} restarted on it".format(unit_name(service)) if service else ""))
    return out


def _parser() -> "argparse.ArgumentParser":
    p = argparse.ArgumentParser(prog="python -m jetson_deploy.ansible_steps", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="step")
    s = sub.add_parser("stage")
    s.add_argument("bundle")
    s.add_argument("workdir")
    s.add_argument("--key", default=None)
    for name in ("prepare", "plan", "result"):
        s = sub.add_parser(name)
        s.add_argument("workdir")
        s.add_argument("host")
        s.add_argument("--root", default="/opt/jetson-deploy")
        s.add_argument("--rc", type=int, default=0)
        s.add_argument("--keep", type=int, default=3)
        s.add_argument("--health-cmd", default="")
        s.add_argument("--health-timeout", type=float, default=60.0)
        s.add_argument("--service", default="")
        s.add_argument("--settle", type=int, default=10)
        s.add_argument("--tensorrt", default="")
        s.add_argument("--probe", default="")
        s.add_argument("--force", action="store_true")
    return p


def main(argv: "Optional[List[str]]" = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.step == "stage":
            out = stage(a.bundle, a.workdir, a.key or None)
        elif a.step == "prepare":
            out = prepare(a.workdir, a.host, a.root, a.tensorrt or None, a.probe, a.force)
        elif a.step == "plan":
            out = plan(a.workdir, a.host, a.root, a.rc, sys.stdin.read(), a.keep, a.health_cmd, a.health_timeout,
                       a.service or None, a.settle)
        elif a.step == "result":
            out = result(a.workdir, a.host, a.rc, sys.stdin.read())
        else:
            _parser().print_usage(sys.stderr)
            return 2
    except JetsonDeployError as exc:
        sys.stderr.write("{}\n".format(exc))
        return 2 if isinstance(exc, BadInput) else 1  # 2: refused before anything was sent
    print(json.dumps(out, sort_keys=True))
    if a.step == "result" and out["result"] != "deployed":
        sys.stderr.write("{}\n".format(out["message"]))
        return 4 if out["result"] == "rolled-back" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
