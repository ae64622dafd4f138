"""``deploy``, ``rollback`` and ``devices status``: thin layers over :mod:`jetson_deploy.deploy`.

Per-host progress lines come from the library's ``logging`` (the CLI prints them on stderr);
``--quiet`` hides them and keeps warnings.
"""
import json
from typing import Any, Dict, List, Optional, Sequence

import click

from ..deploy.fleet import DEPLOY_NOT_OK, ROLLBACK_NOT_OK
from ..deploy.options import DEFAULT_KEEP, DEFAULT_ROOT
from ._options import json_option


def fleet_options(fn):
    """--root, --hosts, --group, --ssh-config, -o, --jobs, --connect-timeout (shared by the three commands)."""
    opts = [
        click.option("--root", default=DEFAULT_ROOT, show_default=True, metavar="DIR",
                     help="Directory on the device holding bundles/, active/, staging/, state/ "
                          "(inside the image with --rootfs)."),
        click.option("--hosts", "hosts_file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Host file: one user@host[:port] a line (# comments) or an Ansible-style INI inventory."),
        click.option("--group", metavar="NAME", help="Only the hosts of this [group] of the --hosts inventory."),
        click.option("--ssh-config", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                     help="OpenSSH client config passed as -F FILE to every ssh/rsync/sftp call "
                          "(default: your ~/.ssh/config)."),
        click.option("-o", "--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", callback=_check_ssh_options,
                     help="Extra ssh -o option, repeatable (e.g. -o ProxyJump=bastion)."),
        click.option("--jobs", "-j", default=8, show_default=True, type=click.IntRange(1, 256),
                     help="Hosts worked on at once."),
        click.option("--connect-timeout", default=10, show_default=True, type=click.IntRange(1, 600),
                     help="Seconds to wait for each ssh connection."),
        click.option("--quiet", "-q", is_flag=True, help="No per-host progress lines on stderr (as jetson-deploy --quiet CMD)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _check_ssh_options(ctx, param, value):
    """A usage error (exit 2) here, not a failed host for each of them later."""
    import re

    for v in value:
        if not re.match(r"^[A-Za-z][A-Za-z0-9]*=[^\n\r\0]*$", v) or v.split("=", 1)[1] == "":
            raise click.BadParameter("{!r} must be KEY=VALUE, e.g. ProxyJump=bastion".format(v), ctx, param)
    return value


def _hosts(hosts: "Sequence[str]", hosts_file: "Optional[str]", group: "Optional[str]"):
    """HOST arguments plus --hosts/--group; none is an empty list (the library says whether that is wrong)."""
    from ..deploy import collect_hosts

    return collect_hosts(hosts, hosts_file, group, required=False)


def _connection(ssh_config: "Optional[str]", ssh_options: "Sequence[str]", connect_timeout: int, jobs: int):
    from ..deploy import Connection

    return Connection(ssh_config=ssh_config, ssh_options=ssh_options, connect_timeout=connect_timeout, jobs=jobs)


def _quiet(quiet: bool):
    """--quiet: the deploy library's progress lines (INFO) are not printed; warnings still are."""
    from .._messages import quieted

    return quieted("jetson_deploy.deploy", quiet)


def _emit(results, as_json: bool, extra: "Dict[str, Any]", bad: "Sequence[str]") -> bool:
    """Print the table (or JSON); True when every host is ok (no result in ``bad``)."""
    from ..deploy import format_table

    ok = not any(r.result in bad for r in results)
    if as_json:
        payload = dict(extra)
        payload["ok"] = ok
        payload["results"] = [r.to_dict() for r in results]
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
    else:
        click.echo(format_table(results, bad))
    return ok


@click.command()
@click.argument("bundle", type=click.Path(exists=True))
@click.argument("hosts", nargs=-1)
@fleet_options
@click.option("--keep", default=DEFAULT_KEEP, show_default=True, type=click.IntRange(1, 1000),
              help="Versions to keep per bundle on each device (the active and previous are never deleted).")
@click.option("--health-cmd", metavar="CMD",
              help="Shell command run on the device after the switch (cwd = the active bundle); "
                   "non-zero exit or timeout switches back and reports the host as rolled-back.")
@click.option("--health-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds the health command may take.")
@click.option("--restart-service", "service", metavar="NAME",
              help="Restart the bundle's unit (jetson-deploy service install NAME) after the switch and "
                   "gate on it staying active; a failure switches back and restarts it on the previous version.")
@click.option("--service-settle", default=10, show_default=True, type=click.IntRange(0, 600), metavar="SECONDS",
              help="How long the restarted unit must stay active (0: restart only, no check).")
@click.option("--rootfs", type=click.Path(file_okay=False), metavar="DIR",
              help="Install into a mounted SD card or Linux_for_Tegra/rootfs instead of over ssh "
                   "(ROOTFS/<root>, relative symlinks).")
@click.option("--transfer", type=click.Choice(["auto", "rsync", "sftp"]), default="auto", show_default=True,
              help="Upload tool; auto uses rsync (resumable) when both sides have it, else sftp (resumes too).")
@click.option("--bwlimit", type=click.IntRange(1, None), metavar="KIB/S",
              help="Limit upload bandwidth per host, KiB/s (shared links).")
@click.option("--key", "public_key", type=click.Path(exists=True, dir_okay=False), metavar="PUBKEY",
              help="Require a valid manifest.sig by this Ed25519 public key before uploading anything.")
@click.option("--force", is_flag=True,
              help="Deploy even to hosts whose TensorRT (inventory tensorrt=, or asked on the device) is older than "
                   "the bundle needs (default: refused, exit 2, nothing uploaded).")
@json_option()
def deploy(bundle: str, hosts: "List[str]", root: str, hosts_file: "Optional[str]", group: "Optional[str]",
           ssh_config: "Optional[str]", ssh_options: "List[str]", jobs: int, connect_timeout: int, quiet: bool,
           keep: int, health_cmd: "Optional[str]", health_timeout: float, service: "Optional[str]",
           service_settle: int, rootfs: "Optional[str]", transfer: str, bwlimit: "Optional[int]",
           public_key: "Optional[str]", force: bool, as_json: bool) -> None:
    """Push BUNDLE to each HOST (user@host[:port]) over ssh and activate it atomically.

    The bundle is verified here, uploaded (resumably) to ROOT/staging on the device, its sizes
    and sha256 are checked there with sha256sum, then it moves to ROOT/bundles/NAME/VERSION and
    ROOT/active/NAME is switched in one rename. An interrupted or corrupted upload never
    touches the active version. Exit 1 when any host failed or was rolled back; exit 2,
    nothing uploaded, when a host's TensorRT is older than the bundle needs (--force).

    \b
    Examples:
      jetson-deploy deploy shapes-1.0.0.jdb nvidia@orin-01 nvidia@orin-02:2222 --keep 3
      jetson-deploy deploy shapes-1.0.0.jdb --hosts inventory.ini --group shelf --restart-service shapes
      jetson-deploy deploy shapes-1.0.0 --rootfs /media/sdcard      # into an SD card image
    """
    from ..deploy import DeployOptions
    from ..deploy import deploy as api_deploy

    options = DeployOptions(root=root, keep=keep, health_cmd=health_cmd, health_timeout=health_timeout, transfer=transfer,
                            bwlimit=bwlimit, service=service, settle=service_settle, public_key=public_key, rootfs=rootfs,
                            connection=_connection(ssh_config, ssh_options, connect_timeout, jobs), force=force)
    with _quiet(quiet):
        results = api_deploy(bundle, _hosts(hosts, hosts_file, group), options)
    name = next((r.name for r in results if r.name), "")
    if not _emit(results, as_json, {"command": "deploy", "bundle": bundle, "name": name, "root": root}, DEPLOY_NOT_OK):
        raise SystemExit(1)


@click.command()
@click.argument("name")
@click.argument("hosts", nargs=-1)
@fleet_options
@click.option("--to", "to_version", metavar="VERSION", help="Switch to this installed version instead of the previous one.")
@click.option("--rootfs", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Roll back inside a mounted SD card / L4T rootfs instead of over ssh.")
@json_option()
def rollback(name: str, hosts: "List[str]", root: str, hosts_file: "Optional[str]", group: "Optional[str]",
             ssh_config: "Optional[str]", ssh_options: "List[str]", jobs: int, connect_timeout: int, quiet: bool,
             to_version: "Optional[str]", rootfs: "Optional[str]", as_json: bool) -> None:
    """Switch bundle NAME on each HOST back to its previously active version.

    The previous version comes from ROOT/state/NAME.history (the activation history); it is
    checked with sha256sum before the switch. Rolling back again goes one further back.
    Exit 1 when any host failed.

    \b
    Examples:
      jetson-deploy rollback shapes nvidia@orin-01
      jetson-deploy rollback shapes --hosts inventory.ini --to 1.0.0
    """
    from ..deploy import rollback as api_rollback

    with _quiet(quiet):
        results = api_rollback(name, _hosts(hosts, hosts_file, group), root=root, to=to_version,
                               connection=_connection(ssh_config, ssh_options, connect_timeout, jobs), rootfs=rootfs)
    if not _emit(results, as_json, {"command": "rollback", "name": name, "root": root}, ROLLBACK_NOT_OK):
        raise SystemExit(1)


@click.group()
def devices() -> None:
    """Inspect devices: installed and active bundle versions.

    \b
    Example:
      jetson-deploy devices status --hosts inventory.ini --group shelf
    """


@devices.command("status")
@click.argument("hosts", nargs=-1)
@fleet_options
@click.option("--name", metavar="NAME", help="Only this bundle name.")
@click.option("--verify", is_flag=True, help="Also check the active version's files with sha256sum on the device.")
@click.option("--rootfs", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Inspect a mounted SD card / L4T rootfs instead of hosts.")
@json_option()
def status(hosts: "List[str]", root: str, hosts_file: "Optional[str]", group: "Optional[str]", ssh_config: "Optional[str]",
           ssh_options: "List[str]", jobs: int, connect_timeout: int, quiet: bool, name: "Optional[str]", verify: bool,
           rootfs: "Optional[str]", as_json: bool) -> None:
    """List installed, active and previous bundle versions on each HOST.

    Exit 1 when a host cannot be reached or (with --verify) an active version fails its checksums.

    \b
    Examples:
      jetson-deploy devices status nvidia@orin-01 --verify
      jetson-deploy devices status --rootfs /media/sdcard
    """
    from ..deploy import format_status
    from ..deploy import status as api_status

    statuses = api_status(_hosts(hosts, hosts_file, group), root=root, name=name, verify=verify,
                          connection=_connection(ssh_config, ssh_options, connect_timeout, jobs), rootfs=rootfs)
    bad = any(not s.get("ok") for s in statuses) or any(
        e.get("verified") is False for s in statuses for e in s.get("bundles", {}).values())
    if as_json:
        click.echo(json.dumps({"ok": not bad, "root": root, "hosts": statuses}, indent=2, sort_keys=True))
    else:
        click.echo(format_status(statuses))
    if bad:
        raise SystemExit(1)
