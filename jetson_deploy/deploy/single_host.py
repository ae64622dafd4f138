"""Deploy, roll back and inspect one device; the fleet layer fans these out.

Round trips per deploy: one ssh call to inspect the device and prepare staging, one
transfer (rsync or sftp), one ssh call to verify, install, switch, health-check and prune.
A redeploy of the active, verified version stops after the first call.
"""
import re
import shutil
import time
from typing import Any, Callable, Dict, List, Optional

from ..errors import BadInput, JetsonDeployError
from . import scripts
from .local_bundle import LocalBundle
from .transport import RemoteError, ScriptResult, Transport, describe_failure

DEFAULT_ROOT = "/opt/jetson-deploy"
DEFAULT_KEEP = 3
TRANSFERS = ("auto", "rsync", "sftp")

_ROOT_RE = re.compile(r"^[A-Za-z0-9._+@=,/\-]+$")

ProgressFn = Callable[[str, str], None]
Hooks = Dict[str, Callable[..., Any]]


def check_root(root: str) -> str:
    """The device root: an absolute (or home-relative) path of plain characters."""
    if not root or not _ROOT_RE.match(root) or root.startswith("-") or ".." in root.split("/"):
        raise BadInput("--root {!r}: use a path of letters, digits, '.', '_', '-', '/' (e.g. {})".format(root, DEFAULT_ROOT))
    return root.rstrip("/") or "/"


class HostResult(object):
    """Outcome on one host.

    ``result``: deployed, unchanged, rolled-back or failed. ``version``: the version this
    operation was about (the bundle's for deploy, the one switched to for rollback);
    ``active``: the version active on the host afterwards ("" when unknown or none);
    ``previous``: the version active before.
    """

    __slots__ = ("host", "result", "name", "version", "previous", "seconds", "message", "details", "active")

    OK = ("deployed", "unchanged", "rolled-back")

    def __init__(self, host: str, result: str, name: str = "", version: str = "", previous: str = "",
                 seconds: float = 0.0, message: str = "", details: "Optional[Dict[str, Any]]" = None,
                 active: "Optional[str]" = None) -> None:
        self.host = host
        self.active = active if active is not None else (version if result in self.OK else "")
        self.result = result
        self.name = name
        self.version = version
        self.previous = previous
        self.seconds = seconds
        self.message = message
        self.details = details or {}

    @property
    def failed(self) -> bool:
        return self.result == "failed"

    def to_dict(self) -> "Dict[str, Any]":
        return {
            "host": self.host, "result": self.result, "name": self.name, "version": self.version,
            "previous": self.previous, "active": self.active, "seconds": round(self.seconds, 3), "message": self.message,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return "HostResult({!r}, {!r}, {!r}, {!r})".format(self.host, self.result, self.version, self.message)


def _noop(label: str, msg: str) -> None:
    pass


def _mib(n: float) -> str:
    return "{:.1f} MiB".format(n / (1 << 20))


def _check_error(res: "ScriptResult", what: str) -> None:
    if res.rc == 255 and not res.lines("ERROR"):
        # ssh itself failed after the script started: the device may have finished the step
        raise RemoteError("{}: {}; the device completes a started step on its own, check it with "
                          "'jetson-deploy devices status'".format(what, describe_failure(res.stderr)))
    if res.rc != 0:
        line = res.error_line()
        if res.rc == scripts.RC_NOSPACE or "no space left" in (res.stdout + res.stderr).lower():
            raise RemoteError(describe_failure("No space left on device") + " ({})".format(line))
        if res.rc == 11 and "permission" in (line + res.stderr).lower():
            raise RemoteError("{} (create it on the device: sudo install -d -o $USER <root>, or pass --root)".format(line))
        raise RemoteError("{} failed: {}".format(what, line))


def retention(history: "List[str]", installed: "List[str]", new: str, previous: str, keep: int) -> "List[str]":
    """Versions to delete after activating ``new``: keep the ``keep`` most recently active ones,
    and never ``new`` or ``previous`` (so a rollback always has somewhere to go)."""
    order: "List[str]" = []
    for v in reversed(history + [new]):
        if v in installed + [new] and v not in order:
            order.append(v)
    # installed but never activated (e.g. a failed health check): oldest, go first
    keep_set = set(order[:max(1, keep)]) | {new}
    if previous:
        keep_set.add(previous)
    return sorted(v for v in installed if v not in keep_set)


def deploy_host(bundle: "LocalBundle", transport: "Transport", root: str = DEFAULT_ROOT, keep: int = DEFAULT_KEEP,
                health_cmd: "Optional[str]" = None, health_timeout: float = 60.0, transfer: str = "auto",
                bwlimit: "Optional[int]" = None, progress: "Optional[ProgressFn]" = None,
                hooks: "Optional[Hooks]" = None, verify_retries: int = 1) -> "HostResult":
    """Deploy one verified bundle to one device; raises RemoteError on failure.

    Files that fail the on-device check are removed there and re-sent up to
    ``verify_retries`` times; nothing is activated until every file verifies.
    ``hooks`` (tests, tooling): ``after_prepare(**ctx)`` and ``after_upload(**ctx)``.
    """
    say = progress or _noop
    hooks = hooks or {}
    label = transport.label
    name, version = bundle.name, bundle.version
    t0 = time.monotonic()
    say(label, "connecting")
    info = transport.run_script(scripts.prepare(root, name, version, bundle.sums_text), timeout=300)
    _check_error(info, "preparing " + root)
    if info.first("PREPARED") is None:
        raise RemoteError("the device gave no answer to the prepare step: " + info.error_line())
    have = set(info.lines("HAVE"))
    if "sha256sum" not in have:
        raise RemoteError("the device has no sha256sum (GNU coreutils or busybox): install it to verify uploads")
    active = (info.first("ACTIVE") or "").strip()
    installed = [v for v in info.lines("INSTALLED") if v]
    history = [v for v in info.lines("HIST") if v]
    target = info.first("TARGET", "absent")
    cleaned = info.lines("CLEANED")
    if cleaned:
        say(label, "cleaned stale uploads: " + ", ".join(cleaned))
    details: "Dict[str, Any]" = {"installed_before": installed, "cleaned": cleaned}
    if active == version and target == "ok":
        return HostResult(label, "unchanged", name, version, active, time.monotonic() - t0,
                          "{} {} is already active and verified; nothing to do".format(name, version), details)
    if "after_prepare" in hooks:
        hooks["after_prepare"](transport=transport, root=root, name=name, version=version)
    staging = "{}/staging/{}/{}".format(root, name, version)
    mode = "switch" if target == "ok" else "upload"
    method = "-"
    if mode == "upload":
        staged: "Dict[str, int]" = {}
        for line in info.lines("STAGED"):
            size, _, rel = line.partition(" ")
            if size.isdigit():
                staged[rel] = int(size)
        already = sum(min(staged.get(rel, 0), size) for rel, size, _ in bundle.files)
        partial = sum(v for k, v in staged.items() if k.startswith(".rsync-partial/"))
        need = max(0, bundle.total_size - already - partial)
        avail_kb = (info.first("DF") or "").strip()
        if avail_kb.isdigit():
            avail = int(avail_kb) * 1024
            margin = max(1 << 20, need // 100)
            if avail < need + margin:
                raise RemoteError("not enough disk space under {}: the upload needs {}, {} free (df -Pk); free space or deploy with a smaller --keep".format(
                    root, _mib(need + margin), _mib(avail)))
        if transfer == "auto":
            method = "rsync" if ("rsync" in have and shutil.which("rsync") and transport.kind == "ssh") else "sftp"
        else:
            method = transfer
            if method == "rsync" and "rsync" not in have and transport.kind == "ssh":
                raise RemoteError("--transfer rsync: the device has no rsync (apt install rsync there, or use --transfer sftp)")
        if transport.kind == "local":
            method = "copy"
        resumed = already + partial
        say(label, "uploading {} in {} files via {}{}".format(
            _mib(bundle.total_size), len(bundle.files), method,
            " (resuming: {} already on the device)".format(_mib(resumed)) if resumed else ""))
        try:
            up_s = _upload(transport, bundle, staging, method, staged, bwlimit, hooks, root, progress)
        except RemoteError as exc:
            raise _diagnose_upload_failure(transport, root, exc)
        details.update({"transfer": method, "upload_seconds": round(up_s, 3), "resumed_bytes": resumed})
        say(label, "uploaded in {:.1f} s; verifying on the device".format(up_s))
    else:
        say(label, "{} {} is already installed and verified; switching to it".format(name, version))
    previous = active
    prune = retention(history, installed, version, previous, keep)
    script = scripts.finalize(root, name, version, mode, bundle.sizes_text, prune, health_cmd, health_timeout)
    timeout = 600 + (health_timeout if health_cmd else 0)
    res = transport.run_script(script, timeout=timeout)
    attempt = 0
    while res.rc == scripts.RC_VERIFY and attempt < verify_retries:
        # the device removed the files that failed; send just those again (flaky links corrupt)
        attempt += 1
        bad = res.lines("BAD")
        bad_paths = {b.split(" ")[0] for b in bad}
        details.setdefault("reuploaded", []).extend(sorted(bad_paths))
        say(label, "verification failed on the device ({}); re-uploading {} file(s)".format(
            _bad_text(bad[0]) if bad else "?", len(bad_paths)))
        staged = {rel: size for rel, size, _ in bundle.files if rel not in bad_paths}
        _upload(transport, bundle, staging, method, staged, bwlimit, hooks, root)
        res = transport.run_script(script, timeout=timeout)
    details["pruned"] = res.lines("PRUNED")
    extra = res.lines("EXTRA")
    if extra:
        details["extra_removed"] = extra
    if res.rc == scripts.RC_VERIFY:
        bad = res.lines("BAD")
        first = _bad_text(bad[0]) if bad else "an unknown file"
        more = " (+{} more)".format(len(bad) - 1) if len(bad) > 1 else ""
        raise RemoteError("verification on the device failed, nothing activated: {}{}; removed from staging, deploy again to re-upload".format(
            first, more))
    if res.rc == scripts.RC_HEALTH:
        log = res.lines("HEALTH_LOG")
        rc = res.first("HEALTH_FAILED", "?")
        back = "switched back to {}".format(previous) if previous else "no previous version, {} deactivated".format(name)
        details["health_log"] = log
        return HostResult(label, "rolled-back", name, version, previous, time.monotonic() - t0,
                          "health check failed (exit {}{}); {}".format(rc, ": " + log[-1] if log else "", back), details,
                          active=previous)
    _check_error(res, "activating " + version)
    if res.first("DONE") is None:
        raise RemoteError("the device did not confirm the switch: " + res.error_line())
    msg = "active" + (" (was {})".format(previous) if previous else "")
    if mode == "switch":
        msg += "; already installed, no upload"
    if target == "bad":
        msg += "; replaced a damaged or different copy of {}".format(version)
    if health_cmd:
        msg += "; health check passed"
    if details["pruned"]:
        msg += "; pruned " + ", ".join(details["pruned"])
    say(label, "{} {} {}".format(name, version, msg))
    return HostResult(label, "deployed", name, version, previous, time.monotonic() - t0, msg, details)


class _UploadProgress(object):
    """Per-host progress lines for big uploads: about one per 10 % of the bundle, at most one every 2 s.

    rsync reports bytes it processed in this run (files already complete in staging are skipped
    and not counted), so the line says what was sent rather than a percentage that could lie.
    """

    def __init__(self, say: "ProgressFn", label: str, total: int) -> None:
        self.say, self.label, self.total = say, label, max(1, total)
        self.t0 = time.monotonic()
        self.last_step = 0
        self.last_t = 0.0

    def __call__(self, sent: int) -> None:
        step = int(10 * min(sent, self.total) / self.total)
        now = time.monotonic()
        if step > self.last_step and (now - self.last_t >= 2.0 or step >= 10):
            self.last_step, self.last_t = step, now
            rate = sent / max(1e-6, now - self.t0)
            self.say(self.label, "uploading: {} of {} sent ({}/s)".format(_mib(sent), _mib(self.total), _mib(rate)))


def _upload(transport: "Transport", bundle: "LocalBundle", staging: str, method: str, staged: "Dict[str, int]",
            bwlimit: "Optional[int]", hooks: "Hooks", root: str, say: "Optional[ProgressFn]" = None) -> float:
    t_up = time.monotonic()
    files = [(rel, size) for rel, size, _ in bundle.files]
    on_bytes = None
    if say is not None and bundle.total_size >= (8 << 20):
        on_bytes = _UploadProgress(say, transport.label, bundle.total_size)
    transport.upload(bundle.root, files, staging, method, staged=staged, bwlimit=bwlimit, on_bytes=on_bytes)
    if "after_upload" in hooks:
        hooks["after_upload"](transport=transport, root=root, name=bundle.name, version=bundle.version, staging=staging)
    return time.monotonic() - t_up


def _bad_text(line: str) -> str:
    """``BAD`` line from the device -> 'artifact PATH: what is wrong'."""
    parts = line.split(" ")
    path, why = parts[0], parts[1:] if len(parts) > 1 else ["?"]
    if why[0] == "sha256":
        text = "sha256 mismatch"
    elif why[0] == "size" and len(why) >= 4:
        text = "size {} bytes, expected {}".format(why[1], why[3])
    else:
        text = " ".join(why)
    return "artifact {}: {}".format(path, text)


def _diagnose_upload_failure(transport: "Transport", root: str, exc: "RemoteError") -> "RemoteError":
    """A failed upload may not say why (the device's message can die with the link): if the
    disk under ROOT is (nearly) full now, say that in one line."""
    if "disk space" in str(exc):
        return exc
    try:
        res = transport.run_script(scripts.free_space(root), timeout=60)
    except JetsonDeployError:
        return exc
    kb = (res.first("DF") or "").strip()
    if res.rc == 0 and kb.isdigit() and int(kb) < 1024:
        return RemoteError("the device ran out of disk space under {} (No space left on device: {} KiB free after the upload failed); "
                           "free space there or deploy with a smaller --keep".format(root, kb))
    return exc


def rollback_host(name: str, transport: "Transport", root: str = DEFAULT_ROOT, to: "Optional[str]" = None,
                  progress: "Optional[ProgressFn]" = None) -> "HostResult":
    say = progress or _noop
    label = transport.label
    t0 = time.monotonic()
    say(label, "rolling back {}".format(name))
    res = transport.run_script(scripts.rollback(root, name, to), timeout=300)
    if res.first("UNCHANGED") is not None:
        v = res.first("UNCHANGED") or ""
        return HostResult(label, "unchanged", name, v, v, time.monotonic() - t0, "{} {} is already active".format(name, v))
    _check_error(res, "rollback")
    line = res.first("ROLLED_BACK")
    if line is None:
        raise RemoteError("the device did not confirm the rollback: " + res.error_line())
    cur, _, target = line.partition(" ")
    skipped = res.lines("SKIPPED")
    msg = "switched from {} to {}".format(cur, target)
    if skipped:
        msg += " (skipped damaged {})".format(", ".join(skipped))
    say(label, msg)
    return HostResult(label, "rolled-back", name, target, cur, time.monotonic() - t0, msg)


def status_host(transport: "Transport", root: str = DEFAULT_ROOT, name: "Optional[str]" = None,
                verify: bool = False) -> "Dict[str, Any]":
    """Installed/active versions on one device: ``{"host", "ok", "root", "bundles": {name: {...}}, "free_bytes"}``."""
    res = transport.run_script(scripts.status(root, name, verify), timeout=300)
    _check_error(res, "status")
    if res.first("STATUS_DONE") is None and res.first("NOROOT") is None:
        raise RemoteError("the device gave no status: " + res.error_line())
    bundles: "Dict[str, Dict[str, Any]]" = {}

    def entry(n: str) -> "Dict[str, Any]":
        return bundles.setdefault(n, {"active": None, "previous": None, "installed": [], "history": [], "staging": []})

    for n in res.lines("NAME"):
        entry(n)
    for line in res.lines("VERSION"):
        n, _, v = line.partition(" ")
        entry(n)["installed"].append(v)
    for line in res.lines("ACTIVE"):
        n, _, v = line.partition(" ")
        entry(n)["active"] = v
    for line in res.lines("HIST"):
        n, _, v = line.partition(" ")
        entry(n)["history"].append(v)
    for line in res.lines("VERIFIED"):
        n, _, v = line.partition(" ")
        entry(n)["verified"] = v == "ok"
    for line in res.lines("STAGING"):
        parts = line.split(" ")
        if len(parts) == 3:
            entry(parts[0])["staging"].append({"version": parts[1], "kib": int(parts[2]) if parts[2].isdigit() else None})
    for n, e in bundles.items():
        e["installed"] = sort_versions(e["installed"])
        prev = [v for v in reversed(e["history"]) if v != e["active"] and v in e["installed"]]
        e["previous"] = prev[0] if prev else None
    df = (res.first("DF") or "").strip()
    return {"host": transport.label, "ok": True, "root": root, "bundles": bundles,
            "free_bytes": int(df) * 1024 if df.isdigit() else None, "error": None}


def _version_key(v: str) -> tuple:
    parts = re.split(r"[.+\-]", v)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def sort_versions(versions: "List[str]") -> "List[str]":
    return sorted(versions, key=_version_key)


def safe_call(fn: "Callable[[], HostResult]", label: str, name: str = "", version: str = "") -> "HostResult":
    """Run one host's work; any failure becomes a 'failed' result (one host never stops the others)."""
    t0 = time.monotonic()
    try:
        return fn()
    except JetsonDeployError as exc:
        return HostResult(label, "failed", name, version, "", time.monotonic() - t0, str(exc))
    except Exception as exc:  # noqa: BLE001 - report, never crash the fleet
        return HostResult(label, "failed", name, version, "", time.monotonic() - t0,
                          "internal error: {}: {}".format(type(exc).__name__, exc))
