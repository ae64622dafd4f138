"""Push bundles to Jetsons over SSH: verify, atomic activation, rollback, fleets, rootfs installs.

Python API (the CLI commands ``deploy``, ``rollback`` and ``devices status`` are thin layers)::

    from jetson_deploy.deploy import DeployOptions, collect_hosts, deploy, rollback, status

    results = deploy("out/demo-0.1.0", ["nvidia@orin1", "nvidia@10.0.0.7:2222"],
                     DeployOptions(keep=3, health_cmd="curl -fs localhost:8080/health"))
    for r in results:
        print(r.host, r.result, r.version, r.message)   # deployed | unchanged | rolled-back | failed

Progress lines go to ``logging`` (``jetson_deploy.deploy``, INFO) as ``[host] message``.

Only the system OpenSSH client (and rsync or sftp) is needed here; the device needs sh and
coreutils (sha256sum, stat, df, mv), nothing from jetson-deploy.  Layout: docs/deploy.md.
"""
from .options import DEFAULT_KEEP, DEFAULT_ROOT, Connection, DeployOptions
from .single_host import HostResult, deploy_host, retention, rollback_host, status_host
from .fleet import deploy, format_status, format_table, rollback, run_fleet, status
from .inventory import Host, collect_hosts, load_inventory, parse_host
from .local_bundle import LocalBundle, open_local_bundle
from .transport import LocalTransport, RemoteError, SSHTransport

__all__ = [
    "Connection", "DEFAULT_KEEP", "DEFAULT_ROOT", "DeployOptions", "Host", "HostResult", "LocalBundle", "LocalTransport",
    "RemoteError", "SSHTransport", "collect_hosts", "deploy", "deploy_host", "format_status",
    "format_table", "load_inventory", "open_local_bundle", "parse_host", "retention", "rollback", "rollback_host",
    "run_fleet", "status", "status_host",
]
