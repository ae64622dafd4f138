"""Push bundles to Jetsons over SSH: verify, atomic activation, rollback, fleets, rootfs installs.

Python API (the CLI commands ``deploy``, ``rollback`` and ``devices status`` are thin layers)::

    from jetson_deploy.deploy import deploy, rollback, status, deploy_rootfs, collect_hosts

    results = deploy("out/demo-0.1.0", ["nvidia@orin1", "nvidia@10.0.0.7:2222"], keep=3,
                     health_cmd="systemctl restart infer && curl -fs localhost:8080/health")
    for r in results:
        print(r.host, r.result, r.version, r.message)   # deployed | unchanged | rolled-back | failed

Only the system OpenSSH client (and rsync or sftp) is needed here; the device needs sh and
coreutils (sha256sum, stat, df, mv), nothing from jetson-deploy.  Layout: docs/deploy.md.
"""
from .single_host import DEFAULT_KEEP, DEFAULT_ROOT, HostResult, deploy_host, retention, rollback_host, status_host
from .fleet import StderrProgress, deploy, deploy_rootfs, format_status, format_table, rollback, run_fleet, status
from .inventory import Host, collect_hosts, load_inventory, parse_host
from .local_bundle import LocalBundle, open_local_bundle
from .transport import LocalTransport, RemoteError, SSHTransport

__all__ = [
    "DEFAULT_KEEP", "DEFAULT_ROOT", "Host", "HostResult", "LocalBundle", "LocalTransport", "RemoteError",
    "SSHTransport", "StderrProgress", "collect_hosts", "deploy", "deploy_host", "deploy_rootfs", "format_status",
    "format_table", "load_inventory", "open_local_bundle", "parse_host", "retention", "rollback", "rollback_host",
    "run_fleet", "status", "status_host",
]
