"""Deploy, roll back and inspect one device; the fleet layer fans these out.

Round trips per deploy: one ssh call to inspect the device and prepare staging, one
transfer (rsync or sftp), one ssh call to verify, install, switch, health-check and prune.
A redeploy of the active, verified version stops after the first call.

Progress goes to this module's logger as ``[host] message`` lines (INFO); the CLI prints them
on stderr unless ``--quiet``.
"""
import logging
import re
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Set

from ..errors import JetsonDeployError
from ..service import deploy_gate as service_gate
from ..service import unit_name
from . import scripts
from .local_bundle import LocalBundle
from .options import DEFAULT_ROOT, DeployOptions
from .transport import RemoteError, ScriptResult, Transport, describe_failure

log = logging.getLogger(__name__)

Hooks = Dict[str, Callable[..., Any]]


def say(label: str, msg: str) -> None:
    """One progress line for one host (or ``local``), as ``[label] message``."""
    log.info("[%s] %s", label, msg)


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


def rollback_message(res: "ScriptResult", previous: str, name: str, service: "Optional[str]" = None) -> str:
    """One line for finalize's RC_HEALTH answer: why, where the device switched back to, and
    what became of the service there (restarted on PREVIOUS, stopped, or the restart failed)."""
    log = res.lines("HEALTH_LOG")
    msg = "health check failed (exit {}{}); {}".format(
        res.first("HEALTH_FAILED", "?"), ": " + log[-1] if log else "",
        "switched back to {}".format(previous) if previous else "no previous version, {} deactivated".format(name))
    if not service:
        return msg
    unit, rc = unit_name(service), res.first("AFTER_ROLLBACK")
    done = "restarted on {}".format(previous) if previous else "stopped"
    if rc is None:
        return msg + "; the device did not say whether {} was {} (check: systemctl status {})".format(unit, done, unit)
    if rc.strip() == "0":
        return msg + "; service {}".format(done)
    slog = res.lines("AFTER_ROLLBACK_LOG")
    what = "restarting {} on {}".format(unit, previous) if previous else "stopping " + unit
    return msg + "; {} failed (exit {}{}): fix it on the device (the deploy user needs root or passwordless sudo " \
                 "for systemctl)".format(what, rc.strip(), ": " + slog[-1] if slog else "")


def deploy_host(bundle: "LocalBundle", transport: "Transport", options: "Optional[DeployOptions]" = None,
                hooks: "Optional[Hooks]" = None) -> "HostResult":
    """Deploy one verified bundle to one device as ``options`` say; raises RemoteError on failure.

    ``options.root`` is the directory as ``transport`` sees it.  Files that fail the on-device
    check are removed there and re-sent up to ``options.verify_retries`` times; nothing is
    activated until every file verifies.  ``options.service``: the bundle's systemd unit restarts
    on the new version and must stay active ``settle`` seconds before ``health_cmd`` runs; a
    failure switches back and the device restarts the unit on the previous version in the same call.
    ``hooks`` (tests, tooling): ``after_prepare(**ctx)`` and ``after_upload(**ctx)``.
    The caller checks ``options`` (:meth:`DeployOptions.checked`): here the root may be a path
    inside a mounted image, which the device-root rules do not describe.
    """
    o = options or DeployOptions()
    root, service, health_cmd = o.root, o.service, o.health_cmd
    d = _HostDeploy(bundle, transport, root, hooks or {})
    info = d.prepare()
    if d.active == bundle.version and d.target == "ok":
        return d.result("unchanged", "{} {} is already active and verified; nothing to do".format(bundle.name, bundle.version))
    if "after_prepare" in d.hooks:
        d.hooks["after_prepare"](transport=transport, root=root, name=bundle.name, version=bundle.version)
    mode = "switch" if d.target == "ok" else "upload"
    method = d.stage(info, o.transfer, o.bwlimit) if mode == "upload" else "-"
    if mode == "switch":
        say(d.label, "{} {} is already installed and verified; switching to it".format(bundle.name, bundle.version))
    prune = retention(d.history, d.installed, bundle.version, d.active, o.keep)
    gate_cmd, gate_timeout, on_rollback = service_gate(service, o.settle, health_cmd, o.health_timeout)
    script = scripts.finalize(root, bundle.name, bundle.version, mode, bundle.sizes_text, prune, gate_cmd, gate_timeout,
                              on_rollback)
    timeout = 600 + (gate_timeout if gate_cmd else 0) + (scripts.ROLLBACK_TIMEOUT if on_rollback else 0)
    res = d.verify_and_activate(script, timeout, method, o.bwlimit, o.verify_retries)
    if res.rc == scripts.RC_HEALTH:
        return d.rolled_back(res, service)
    return d.activated(res, mode, health_cmd, service)


class _HostDeploy(object):
    """The steps of one :func:`deploy_host`, sharing the device's answers and the result details.

    The device runs verify, activate, health check, switch-back and prune in one
    round trip (:func:`scripts.finalize`); these steps send what it needs and read its answer.
    """

    def __init__(self, bundle: "LocalBundle", transport: "Transport", root: str, hooks: "Hooks") -> None:
        self.bundle, self.transport, self.root, self.hooks = bundle, transport, root, hooks
        self.label = transport.label
        self.t0 = time.monotonic()
        self.staging = "{}/staging/{}/{}".format(root, bundle.name, bundle.version)
        self.details: "Dict[str, Any]" = {}
        self.active, self.target = "", "absent"
        self.installed: "List[str]" = []
        self.history: "List[str]" = []
        self.have: "Set[str]" = set()

    def result(self, result: str, msg: str, active: "Optional[str]" = None) -> "HostResult":
        return HostResult(self.label, result, self.bundle.name, self.bundle.version, self.active,
                          time.monotonic() - self.t0, msg, self.details, active=active)

    def prepare(self) -> "ScriptResult":
        """First round trip: what is installed and active, free space, what is staged already."""
        say(self.label, "connecting")
        b = self.bundle
        info = self.transport.run_script(scripts.prepare(self.root, b.name, b.version, b.sums_text), timeout=300)
        _check_error(info, "preparing " + self.root)
        if info.first("PREPARED") is None:
            raise RemoteError("the device gave no answer to the prepare step: " + info.error_line())
        self.have = set(info.lines("HAVE"))
        if "sha256sum" not in self.have:
            raise RemoteError("the device has no sha256sum (GNU coreutils or busybox): install it to verify uploads")
        self.active = (info.first("ACTIVE") or "").strip()
        self.installed = [v for v in info.lines("INSTALLED") if v]
        self.history = [v for v in info.lines("HIST") if v]
        self.target = info.first("TARGET", "absent")
        cleaned = info.lines("CLEANED")
        if cleaned:
            say(self.label, "cleaned stale uploads: " + ", ".join(cleaned))
        self.details.update({"installed_before": self.installed, "cleaned": cleaned})
        return info

    def stage(self, info: "ScriptResult", transfer: str, bwlimit: "Optional[int]") -> str:
        """Upload what staging lacks (resuming partial files); return the transfer method."""
        b = self.bundle
        staged: "Dict[str, int]" = {}
        for line in info.lines("STAGED"):
            size, _, rel = line.partition(" ")
            if size.isdigit():
                staged[rel] = int(size)
        already = sum(min(staged.get(rel, 0), size) for rel, size, _ in b.files)
        partial = sum(v for k, v in staged.items() if k.startswith(".rsync-partial/"))
        self._check_space(info, max(0, b.total_size - already - partial))
        method = self._method(transfer)
        resumed = already + partial
        say(self.label, "uploading {} in {} files via {}{}".format(
            _mib(b.total_size), len(b.files), method,
            " (resuming: {} already on the device)".format(_mib(resumed)) if resumed else ""))
        try:
            up_s = _upload(self.transport, b, self.staging, method, staged, bwlimit, self.hooks, self.root, report=True)
        except RemoteError as exc:
            raise _diagnose_upload_failure(self.transport, self.root, exc)
        self.details.update({"transfer": method, "upload_seconds": round(up_s, 3), "resumed_bytes": resumed})
        say(self.label, "uploaded in {:.1f} s; verifying on the device".format(up_s))
        return method

    def _check_space(self, info: "ScriptResult", need: int) -> None:
        avail_kb = (info.first("DF") or "").strip()
        if not avail_kb.isdigit():
            return
        avail = int(avail_kb) * 1024
        margin = max(1 << 20, need // 100)
        if avail < need + margin:
            raise RemoteError("not enough disk space under {}: the upload needs {}, {} free (df -Pk); free space or deploy with a smaller --keep".format(
                self.root, _mib(need + margin), _mib(avail)))

    def _method(self, transfer: str) -> str:
        t = self.transport
        if transfer == "auto":
            method = "rsync" if ("rsync" in self.have and shutil.which("rsync") and t.kind == "ssh") else "sftp"
        else:
            method = transfer
            if method == "rsync" and "rsync" not in self.have and t.kind == "ssh":
                raise RemoteError("--transfer rsync: the device has no rsync (apt install rsync there, or use --transfer sftp)")
        return "copy" if t.kind == "local" else method

    def verify_and_activate(self, script: str, timeout: float, method: str, bwlimit: "Optional[int]",
                            retries: int) -> "ScriptResult":
        """Second round trip; files that fail the device's check are re-sent up to ``retries`` times."""
        res = self.transport.run_script(script, timeout=timeout)
        attempt = 0
        while res.rc == scripts.RC_VERIFY and attempt < retries:
            # the device removed the files that failed; send just those again (flaky links corrupt)
            attempt += 1
            bad = res.lines("BAD")
            bad_paths = {b.split(" ")[0] for b in bad}
            self.details.setdefault("reuploaded", []).extend(sorted(bad_paths))
            say(self.label, "verification failed on the device ({}); re-uploading {} file(s)".format(
                _bad_text(bad[0]) if bad else "?", len(bad_paths)))
            staged = {rel: size for rel, size, _ in self.bundle.files if rel not in bad_paths}
            _upload(self.transport, self.bundle, self.staging, method, staged, bwlimit, self.hooks, self.root)
            res = self.transport.run_script(script, timeout=timeout)
        self.details["pruned"] = res.lines("PRUNED")
        extra = res.lines("EXTRA")
        if extra:
            self.details["extra_removed"] = extra
        if res.rc == scripts.RC_VERIFY:
            bad = res.lines("BAD")
            first = _bad_text(bad[0]) if bad else "an unknown file"
            more = " (+{} more)".format(len(bad) - 1) if len(bad) > 1 else ""
            raise RemoteError("verification on the device failed, nothing activated: {}{}; removed from staging, deploy again to re-upload".format(
                first, more))
        return res

    def rolled_back(self, res: "ScriptResult", service: "Optional[str]" = None) -> "HostResult":
        """The health check failed: the device switched back to the previous version (or deactivated)."""
        self.details["health_log"] = res.lines("HEALTH_LOG")
        if service:
            self.details["service_log"] = res.lines("AFTER_ROLLBACK_LOG")
        msg = rollback_message(res, self.active, self.bundle.name, service)
        say(self.label, msg)
        return self.result("rolled-back", msg, active=self.active)

    def activated(self, res: "ScriptResult", mode: str, health_cmd: "Optional[str]",
                  service: "Optional[str]" = None) -> "HostResult":
        b = self.bundle
        _check_error(res, "activating " + b.version)
        if res.first("DONE") is None:
            raise RemoteError("the device did not confirm the switch: " + res.error_line())
        msg = "active" + (" (was {})".format(self.active) if self.active else "")
        if mode == "switch":
            msg += "; already installed, no upload"
        if self.target == "bad":
            msg += "; replaced a damaged or different copy of {}".format(b.version)
        if service:
            msg += "; {} restarted on it".format(unit_name(service))
        if health_cmd:
            msg += "; health check passed"
        if self.details["pruned"]:
            msg += "; pruned " + ", ".join(self.details["pruned"])
        say(self.label, "{} {} {}".format(b.name, b.version, msg))
        return self.result("deployed", msg)


class _UploadProgress(object):
    """Per-host progress lines for big uploads: about one per 10 % of the bundle, at most one every 2 s.

    rsync reports bytes it processed in this run (files already complete in staging are skipped
    and not counted), so the line says what was sent rather than a percentage that could lie.
    """

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, max(1, total)
        self.t0 = time.monotonic()
        self.last_step = 0
        self.last_t = 0.0

    def __call__(self, sent: int) -> None:
        step = int(10 * min(sent, self.total) / self.total)
        now = time.monotonic()
        if step > self.last_step and (now - self.last_t >= 2.0 or step >= 10):
            self.last_step, self.last_t = step, now
            rate = sent / max(1e-6, now - self.t0)
            say(self.label, "uploading: {} of {} sent ({}/s)".format(_mib(sent), _mib(self.total), _mib(rate)))


def _upload(transport: "Transport", bundle: "LocalBundle", staging: str, method: str, staged: "Dict[str, int]",
            bwlimit: "Optional[int]", hooks: "Hooks", root: str, report: bool = False) -> float:
    """Send the bundle's files to staging; ``report``: progress lines for a big upload (when shown)."""
    t_up = time.monotonic()
    files = [(rel, size) for rel, size, _ in bundle.files]
    on_bytes = None
    if report and bundle.total_size >= (8 << 20) and log.isEnabledFor(logging.INFO):
        on_bytes = _UploadProgress(transport.label, bundle.total_size)
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


def rollback_host(name: str, transport: "Transport", root: str = DEFAULT_ROOT, to: "Optional[str]" = None) -> "HostResult":
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
