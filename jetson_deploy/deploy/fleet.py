"""Fan out over many hosts: bounded thread pool, per-host progress lines, a result table.

One host failing never stops the others; callers exit 1 when any result is not ok
(:data:`DEPLOY_NOT_OK`: failed or rolled back; for ``rollback``, :data:`ROLLBACK_NOT_OK`).
Progress lines (``[host] message``) and notes go to ``logging`` (INFO), warnings at WARNING.
"""
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..errors import BadInput
from .rootfs import rootfs_path
from . import single_host as core
from .options import DEFAULT_ROOT, Connection, DeployOptions, check_root
from .single_host import HostResult, Hooks, safe_call, say
from .inventory import Host, parse_host
from .local_bundle import LocalBundle, check_name, open_local_bundle
from .transport import LocalTransport, SSHTransport
from .trt_check import PROBE_SCRIPT, check_hosts, refuse_old, tensorrt_of_rootfs

log = logging.getLogger(__name__)

HostLike = Union[str, Host]


def _hosts(hosts: "Sequence[HostLike]") -> "List[Host]":
    out = [h if isinstance(h, Host) else parse_host(h) for h in hosts]
    if not out:
        raise BadInput("no hosts given: name them as user@host[:port] or pass --hosts FILE")
    return out


def _no_hosts_with_rootfs(hosts: "Sequence[HostLike]", rootfs: "Optional[str]", what: str) -> None:
    """``--rootfs`` works on a directory here: hosts given with it are a usage error, not ignored."""
    if rootfs is not None and hosts:
        raise BadInput("--rootfs {} a directory: give no HOST or --hosts with it".format(what))


def _ssh(h: "Host", c: "Connection") -> "SSHTransport":
    return SSHTransport(h, ssh_config=c.ssh_config, connect_timeout=c.connect_timeout, ssh_options=c.ssh_options)


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


def deploy(bundle: "Union[str, LocalBundle]", hosts: "Sequence[HostLike]", options: "Optional[DeployOptions]" = None,
           hooks: "Optional[Hooks]" = None) -> "List[HostResult]":
    """Verify ``bundle`` here, then deploy it to every host, or into ``options.rootfs`` (see docs/deploy.md).

    Returns one :class:`HostResult` per host (one for a rootfs), in order. Bad input (bundle,
    options, hosts given with a rootfs) raises BadInput/CheckFailed before any host is touched;
    per-host failures are results.  ``hooks``: see :func:`.single_host.deploy_host`.
    """
    o = options or DeployOptions()
    _no_hosts_with_rootfs(hosts, o.rootfs, "installs into")
    o = o.checked()
    if o.rootfs is not None:
        return [_deploy_rootfs(bundle, o, hooks)]
    host_list = _hosts(hosts)
    lb = bundle if isinstance(bundle, LocalBundle) else open_local_bundle(str(bundle), o.public_key)
    try:
        say("local", "verified {} {} ({} files, {:.1f} MiB)".format(lb.name, lb.version, len(lb.files), lb.total_size / (1 << 20)))
        check_hosts(lb.manifest, host_list, lambda h: _probe(h, o.connection), force=o.force, jobs=o.connection.jobs)

        def work(h: "Host") -> "HostResult":
            return core.deploy_host(lb, _ssh(h, o.connection), o, hooks)

        return run_fleet(host_list, work, o.connection.jobs, lb.name, lb.version)
    finally:
        if not isinstance(bundle, LocalBundle):
            lb.close()


def _probe(h: "Host", c: "Connection") -> str:
    """What the board says about its TensorRT (:data:`.trt_check.PROBE_SCRIPT`, one ssh call)."""
    res = _ssh(h, c).run_script(PROBE_SCRIPT, timeout=120)
    return res.stdout


def _deploy_rootfs(bundle: "Union[str, LocalBundle]", o: "DeployOptions", hooks: "Optional[Hooks]") -> "HostResult":
    """Install into a mounted SD card or ``Linux_for_Tegra/rootfs``: ``ROOTFS/<root>`` gets the same
    layout, checks and relative symlinks, so the board boots with the bundle active."""
    fs = Path(str(o.rootfs))
    if not fs.is_dir():
        raise BadInput("--rootfs {} is not a directory (mount the SD card or point at Linux_for_Tegra/rootfs)".format(o.rootfs))
    if not (fs / "etc").is_dir():
        say(str(fs), "note: {} has no etc/; is it really a root filesystem?".format(fs))
    if o.service:
        _note_rootfs_service(o.service, str(fs), o.root)
    local = o.replace(root=rootfs_path(fs, o.root), service=None, transfer="auto", bwlimit=None)
    lb = bundle if isinstance(bundle, LocalBundle) else open_local_bundle(str(bundle), o.public_key)
    try:
        refuse_old(lb.manifest, {"rootfs:" + str(fs): tensorrt_of_rootfs(str(fs))}, o.force)
        t = LocalTransport("rootfs:" + str(fs))
        return safe_call(lambda: core.deploy_host(lb, t, local, hooks), t.label, lb.name, lb.version)
    finally:
        if not isinstance(bundle, LocalBundle):
            lb.close()


def _note_rootfs_service(service: str, rootfs: str, root: str) -> None:
    """An image is not running: nothing to restart.  The unit starts the new version at the
    board's next boot, if the image has it (``service install --rootfs``)."""
    from ..service import status_rootfs

    st = status_rootfs(service, rootfs, root)
    if st["installed"] and st["enabled"]:
        log.info("--restart-service: %s is not running in an image; %s starts the new version at the board's next boot",
                 rootfs, st["unit"])
    else:
        log.warning("--restart-service: %s has no enabled %s; install it with: jetson-deploy service install %s "
                    "--rootfs %s --source ...", rootfs, st["unit"], service, rootfs)


def rollback(name: str, hosts: "Sequence[HostLike]", root: str = DEFAULT_ROOT, to: "Optional[str]" = None,
             connection: "Optional[Connection]" = None, rootfs: "Optional[str]" = None) -> "List[HostResult]":
    """Switch ``active/NAME`` back to the previous verified version (or ``to``) on every host,
    or inside ``rootfs`` (then no hosts)."""
    _no_hosts_with_rootfs(hosts, rootfs, "works on")
    root = check_root(root)
    check_name(name, "name")
    if to is not None:
        check_name(to, "version")
    if rootfs is not None:
        local_root = rootfs_path(rootfs, root)
        t = LocalTransport("rootfs:" + rootfs)
        return [safe_call(lambda: core.rollback_host(name, t, local_root, to), t.label, name)]
    c = connection or Connection()
    c.check()
    host_list = _hosts(hosts)

    def work(h: "Host") -> "HostResult":
        return core.rollback_host(name, _ssh(h, c), root=root, to=to)

    return run_fleet(host_list, work, c.jobs, name)


def status(hosts: "Sequence[HostLike]", root: str = DEFAULT_ROOT, name: "Optional[str]" = None, verify: bool = False,
           connection: "Optional[Connection]" = None, rootfs: "Optional[str]" = None) -> "List[Dict[str, Any]]":
    """Installed and active versions per host, or inside ``rootfs`` (unreachable hosts get ``ok: False`` and ``error``)."""
    _no_hosts_with_rootfs(hosts, rootfs, "inspects")
    root = check_root(root)
    if name is not None:
        check_name(name, "name")
    if rootfs is not None:
        t = LocalTransport("rootfs:" + rootfs)
        return [core.status_host(t, rootfs_path(rootfs, root), name, verify)]
    c = connection or Connection()
    c.check()
    host_list = _hosts(hosts)
    out: "List[Dict[str, Any]]" = [{} for _ in host_list]

    def one(i: int) -> None:
        h = host_list[i]
        t0 = time.monotonic()
        try:
            out[i] = core.status_host(_ssh(h, c), root, name, verify)
        except Exception as exc:  # noqa: BLE001 - one host never stops the others
            out[i] = {"host": h.label, "ok": False, "root": root, "bundles": {}, "free_bytes": None, "error": str(exc)}
        out[i]["seconds"] = round(time.monotonic() - t0, 3)

    with ThreadPoolExecutor(max_workers=max(1, min(c.jobs, len(host_list)))) as pool:
        list(pool.map(one, range(len(host_list))))
    return out


# ----------------------------------------------------------------------------- tables

#: Results that are not ok: a deploy whose health check failed was rolled back, so it did not deploy
#: (for ``rollback`` itself, ``rolled-back`` is the success).
DEPLOY_NOT_OK = ("failed", "rolled-back")
ROLLBACK_NOT_OK = ("failed",)


def format_table(results: "Sequence[HostResult]", not_ok: "Sequence[str]" = DEPLOY_NOT_OK) -> str:
    """The per-host table and a last line counting the hosts that are ok and, by result, those that are not."""
    rows = [("HOST", "RESULT", "VERSION", "SECONDS", "MESSAGE")]
    for r in results:
        rows.append((r.host, r.result, r.version or "-", "{:.1f}".format(r.seconds), r.message))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
    bad = [(what, sum(1 for r in results if r.result == what)) for what in not_ok]
    ok = len(results) - sum(n for _, n in bad)
    tail = "".join(", {} {}".format(n, what.replace("-", " ")) for what, n in bad if n)
    lines.append("{} of {} hosts ok{}".format(ok, len(results), tail))
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
