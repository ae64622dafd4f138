"""Fan out over many hosts: bounded thread pool, per-host progress lines, a result table.

One host failing never stops the others; callers exit 1 when any result is 'failed'.
"""
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Union

from ..errors import BadInput
from ..service import check_name as check_service_name
from .rootfs import rootfs_path
from . import single_host as core
from .single_host import DEFAULT_KEEP, DEFAULT_ROOT, TRANSFERS, HostResult, ProgressFn, check_root, safe_call
from .inventory import Host, parse_host
from .local_bundle import LocalBundle, check_name, open_local_bundle
from .transport import LocalTransport, SSHTransport

log = logging.getLogger(__name__)

HostLike = Union[str, Host]


class StderrProgress(object):
    """Thread-safe ``[host] message`` lines on stderr (or any stream)."""

    def __init__(self, stream: "Optional[TextIO]" = None) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, label: str, msg: str) -> None:
        with self.lock:
            stream = self.stream or sys.stderr
            stream.write("[{}] {}\n".format(label, msg))
            stream.flush()


def _hosts(hosts: "Sequence[HostLike]") -> "List[Host]":
    out = [h if isinstance(h, Host) else parse_host(h) for h in hosts]
    if not out:
        raise BadInput("no hosts given: name them as user@host[:port] or pass --hosts FILE")
    return out


def run_fleet(hosts: "Sequence[Host]", work: "Callable[[Host], HostResult]", jobs: int = 8,
              name: str = "", version: str = "") -> "List[HostResult]":
    """Run ``work(host)`` on every host with at most ``jobs`` at once; results in host order."""
    if jobs < 1:
        raise BadInput("--jobs must be 1 or more")
    if len(hosts) == 1:
        return [safe_call(lambda: work(hosts[0]), hosts[0].label, name, version)]
    with ThreadPoolExecutor(max_workers=min(jobs, len(hosts))) as pool:
        futures = [pool.submit(safe_call, (lambda h=h: work(h)), h.label, name, version) for h in hosts]
        return [f.result() for f in futures]


def deploy(bundle: "Union[str, LocalBundle]", hosts: "Sequence[HostLike]", root: str = DEFAULT_ROOT,
           keep: int = DEFAULT_KEEP, ssh_config: "Optional[str]" = None, jobs: int = 8,
           health_cmd: "Optional[str]" = None, health_timeout: float = 60.0, transfer: str = "auto",
           bwlimit: "Optional[int]" = None, connect_timeout: int = 10, ssh_options: "Sequence[str]" = (),
           progress: "Optional[ProgressFn]" = None, hooks: "Optional[Dict[str, Callable[..., Any]]]" = None,
           verify_retries: int = 1, public_key: "Optional[str]" = None, service: "Optional[str]" = None,
           settle: int = 10) -> "List[HostResult]":
    """Verify ``bundle`` here, then deploy it to every host (see docs/deploy.md).

    ``service``: restart that unit (``service install NAME``) after the switch and gate on it
    staying active ``settle`` seconds; see :func:`.single_host.deploy_host`.

    Returns one :class:`HostResult` per host, in order. Bad input (bundle, flags) raises
    BadInput/CheckFailed before any host is touched; per-host failures are results.
    """
    root = check_root(root)
    if keep < 1:
        raise BadInput("--keep must be 1 or more (the active and the previous version are always kept)")
    if transfer not in TRANSFERS:
        raise BadInput("--transfer must be one of " + ", ".join(TRANSFERS))
    if health_timeout <= 0:
        raise BadInput("--health-timeout must be positive")
    if service:
        check_service_name(service)
    if settle < 0:
        raise BadInput("--service-settle must be 0 or more")
    host_list = _hosts(hosts)
    lb = bundle if isinstance(bundle, LocalBundle) else open_local_bundle(str(bundle), public_key)
    try:
        if progress:
            progress("local", "verified {} {} ({} files, {:.1f} MiB)".format(
                lb.name, lb.version, len(lb.files), lb.total_size / (1 << 20)))
        _warn_tensorrt(lb.manifest, host_list, progress)

        def work(h: "Host") -> "HostResult":
            t = SSHTransport(h, ssh_config=ssh_config, connect_timeout=connect_timeout, ssh_options=ssh_options)
            return core.deploy_host(lb, t, root=root, keep=keep, health_cmd=health_cmd,
                                    health_timeout=health_timeout, transfer=transfer, bwlimit=bwlimit,
                                    progress=progress, hooks=hooks, verify_retries=verify_retries,
                                    service=service, settle=settle)

        return run_fleet(host_list, work, jobs, lb.name, lb.version)
    finally:
        if not isinstance(bundle, LocalBundle):
            lb.close()


def _warn_tensorrt(manifest: "Dict[str, Any]", hosts: "Sequence[Host]", progress: "Optional[ProgressFn]") -> None:
    """Before uploading: a host whose inventory gives ``tensorrt=`` too old for the bundle gets one warning line."""
    from ..bundle.opset import compat_problem

    for h in hosts:
        problem = compat_problem(manifest, h.tensorrt) if getattr(h, "tensorrt", None) else None
        if problem:
            (progress or (lambda label, msg: log.warning("%s: %s", label, msg)))(h.label, "warning: " + problem)


def deploy_rootfs(bundle: "Union[str, LocalBundle]", rootfs: str, root: str = DEFAULT_ROOT, keep: int = DEFAULT_KEEP,
                  progress: "Optional[ProgressFn]" = None, hooks: "Optional[Dict[str, Callable[..., Any]]]" = None,
                  public_key: "Optional[str]" = None) -> "HostResult":
    """Install into a mounted SD card or ``Linux_for_Tegra/rootfs``: ``ROOTFS/<root>`` gets the same
    layout, checks and relative symlinks, so the board boots with the bundle active."""
    root = check_root(root)
    if keep < 1:
        raise BadInput("--keep must be 1 or more")
    fs = Path(rootfs)
    if not fs.is_dir():
        raise BadInput("--rootfs {} is not a directory (mount the SD card or point at Linux_for_Tegra/rootfs)".format(rootfs))
    if not (fs / "etc").is_dir() and progress:
        progress(str(fs), "note: {} has no etc/; is it really a root filesystem?".format(fs))
    local_root = rootfs_path(fs, root)
    lb = bundle if isinstance(bundle, LocalBundle) else open_local_bundle(str(bundle), public_key)
    try:
        t = LocalTransport("rootfs:" + str(fs))
        return safe_call(lambda: core.deploy_host(lb, t, root=local_root, keep=keep, progress=progress, hooks=hooks),
                         t.label, lb.name, lb.version)
    finally:
        if not isinstance(bundle, LocalBundle):
            lb.close()


def rollback(name: str, hosts: "Sequence[HostLike]", root: str = DEFAULT_ROOT, to: "Optional[str]" = None,
             ssh_config: "Optional[str]" = None, jobs: int = 8, connect_timeout: int = 10,
             ssh_options: "Sequence[str]" = (), progress: "Optional[ProgressFn]" = None,
             rootfs: "Optional[str]" = None) -> "List[HostResult]":
    """Switch ``active/NAME`` back to the previous verified version (or ``to``) on every host."""
    root = check_root(root)
    check_name(name, "name")
    if to is not None:
        check_name(to, "version")
    if rootfs is not None:
        local_root = rootfs_path(rootfs, root)
        t = LocalTransport("rootfs:" + rootfs)
        return [safe_call(lambda: core.rollback_host(name, t, local_root, to, progress), t.label, name)]
    host_list = _hosts(hosts)

    def work(h: "Host") -> "HostResult":
        t = SSHTransport(h, ssh_config=ssh_config, connect_timeout=connect_timeout, ssh_options=ssh_options)
        return core.rollback_host(name, t, root=root, to=to, progress=progress)

    return run_fleet(host_list, work, jobs, name)


def status(hosts: "Sequence[HostLike]", root: str = DEFAULT_ROOT, name: "Optional[str]" = None, verify: bool = False,
           ssh_config: "Optional[str]" = None, jobs: int = 8, connect_timeout: int = 10,
           ssh_options: "Sequence[str]" = (), rootfs: "Optional[str]" = None) -> "List[Dict[str, Any]]":
    """Installed and active versions per host (unreachable hosts get ``ok: False`` and ``error``)."""
    root = check_root(root)
    if name is not None:
        check_name(name, "name")
    if rootfs is not None:
        t = LocalTransport("rootfs:" + rootfs)
        return [core.status_host(t, rootfs_path(rootfs, root), name, verify)]
    host_list = _hosts(hosts)
    out: "List[Dict[str, Any]]" = [{} for _ in host_list]

    def one(i: int) -> None:
        h = host_list[i]
        t0 = time.monotonic()
        try:
            t = SSHTransport(h, ssh_config=ssh_config, connect_timeout=connect_timeout, ssh_options=ssh_options)
            out[i] = core.status_host(t, root, name, verify)
        except Exception as exc:  # noqa: BLE001 - one host never stops the others
            out[i] = {"host": h.label, "ok": False, "root": root, "bundles": {}, "free_bytes": None, "error": str(exc)}
        out[i]["seconds"] = round(time.monotonic() - t0, 3)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(host_list)))) as pool:
        list(pool.map(one, range(len(host_list))))
    return out


# ----------------------------------------------------------------------------- tables

def format_table(results: "Sequence[HostResult]") -> str:
    rows = [("HOST", "RESULT", "VERSION", "SECONDS", "MESSAGE")]
    for r in results:
        rows.append((r.host, r.result, r.version or "-", "{:.1f}".format(r.seconds), r.message))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
    ok = sum(1 for r in results if not r.failed)
    lines.append("{} of {} hosts ok{}".format(ok, len(results), "" if ok == len(results) else ", {} failed".format(len(results) - ok)))
    return "\n".join(lines)


def format_status(statuses: "Sequence[Dict[str, Any]]") -> str:
    rows = [("HOST", "NAME", "ACTIVE", "PREVIOUS", "INSTALLED")]
    for s in statuses:
        if not s.get("ok"):
            rows.append((s["host"], "-", "-", "-", "unreachable: " + str(s.get("error"))))
            continue
        if not s["bundles"]:
            rows.append((s["host"], "-", "-", "-", "nothing installed under " + s["root"]))
        for n, e in sorted(s["bundles"].items()):
            active = e["active"] or "-"
            if e.get("verified") is False:
                active += " (FAILS CHECKSUMS)"
            extra = ""
            if e["staging"]:
                extra = "  [partial upload: {}]".format(", ".join(x["version"] for x in e["staging"]))
            rows.append((s["host"], n, active, e["previous"] or "-", ", ".join(e["installed"]) + extra))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4] for row in rows)
