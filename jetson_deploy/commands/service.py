"""``jetson-deploy service install|status|uninstall``: thin layer over :mod:`jetson_deploy.service`."""
import copy
import json
import shlex
from typing import Any, Dict, List, Optional

import click

from ._options import json_option
from .run import run as _run_command
from ..vocab import DEFAULT_ROOT

# `run` options that make no sense for a service that runs until stopped
_NOT_FOR_SERVICE = ("bundle", "as_json", "max_frames", "sync_debug")


def _run_options() -> "List[click.Option]":
    """The `run` command's options, so `service install` takes exactly what `run` takes."""
    opts = [copy.copy(p) for p in _run_command.params
            if isinstance(p, click.Option) and p.name not in _NOT_FOR_SERVICE]
    for p in opts:
        if p.name == "source":
            p.required = False  # not with --agent; ServiceSpec says "--source is required" otherwise
    return opts


RUN_OPTIONS = _run_options()


def _run_argv(values: "Dict[str, Any]") -> "List[str]":
    """Run options whose value differs from the default, as `jetson-deploy run` arguments."""
    argv: "List[str]" = []
    for opt in RUN_OPTIONS:
        if opt.name in ("source", "sinks"):
            continue
        value = values.get(opt.name)
        if value is None or value == opt.default:
            continue
        if opt.is_flag and opt.secondary_opts:
            argv.append(opt.opts[0] if value else opt.secondary_opts[0])
        elif opt.is_flag:
            if value:
                argv.append(opt.opts[0])
        elif opt.multiple:
            for v in value:
                argv += [opt.opts[0], str(v)]
        else:
            argv += [opt.opts[0], str(value)]
    return argv


def _rootfs_option():
    return click.option("--rootfs", type=click.Path(file_okay=False), metavar="DIR",
                        help="Work inside a mounted SD card or Linux_for_Tegra/rootfs instead of this machine "
                             "(no systemd needed here).")


def _root_option():
    return click.option("--root", default=DEFAULT_ROOT, show_default=True, metavar="DIR",
                        help="The deploy root on the board (the service runs ROOT/active/NAME).")


@click.group()
def service() -> None:
    """Run a deployed bundle as a systemd service: at boot, restarted after a crash, logs in the journal."""


def _install_params(fn):
    fn = click.option("--print", "print_only", is_flag=True, help="Print the unit text and install nothing.")(fn)
    fn = click.option("--no-start", is_flag=True, help="Enable the unit but do not start it now (this machine only).")(fn)
    fn = _rootfs_option()(fn)
    fn = click.option("--after", "after", multiple=True, metavar="UNIT",
                      help="Start after this unit too (repeatable); nvargus-daemon.service is added for csi:// sources.")(fn)
    fn = click.option("--restart-sec", type=click.IntRange(1, 3600), default=5, show_default=True,
                      help="Seconds systemd waits before restarting after a failure (at most 10 starts in 5 minutes).")(fn)
    fn = click.option("--exec", "exec_cmd", metavar="CMD",
                      help="The whole command that starts jetson-deploy on the board, taken as given "
                           "(default: PYTHON -m jetson_deploy).")(fn)
    fn = click.option("--python", "python", metavar="PATH",
                      help="The board's interpreter that has jetson-deploy installed (default: this one; "
                           "required with --rootfs, e.g. /home/nvidia/jd/bin/python).")(fn)
    fn = click.option("--extra-group", "groups", multiple=True, default=["video"], show_default=True, metavar="GROUP",
                      help="Supplementary group of the service (repeatable, replaces the default); 'video' opens "
                           "/dev/video* and the Jetson GPU nodes.")(fn)
    fn = click.option("--user", metavar="USER",
                      help="User the service runs as (default: the sudo caller or the current user).")(fn)
    fn = _root_option()(fn)
    fn = click.option("--agent", "agent_ref", metavar="REGISTRY/REPO:TAG",
                      help="Install the pull agent for NAME instead (jetson-deploy-agent-NAME.service): it keeps NAME on "
                           "what the tag points at and restarts NAME's run service; agent options go after '--'.")(fn)
    return fn


@service.command()
@click.argument("name")
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- AGENT_OPTIONS]")
@_install_params
def install(name: str, agent_args: "List[str]", root: str, user: "Optional[str]", groups: "List[str]",
            python: "Optional[str]", exec_cmd: "Optional[str]", restart_sec: int, after: "List[str]",
            rootfs: "Optional[str]", no_start: bool, print_only: bool, agent_ref: "Optional[str]",
            **run_values: "Any") -> None:
    """Install a systemd unit that runs `jetson-deploy run ROOT/active/NAME --source SRC ...`.

    Takes the same --source, --sink and run options as `jetson-deploy run`.  A deploy's switch
    or rollback changes what the next (re)start runs.  Restart=on-failure, logs in the journal
    (journalctl -u jetson-deploy-NAME), started after the camera daemon for csi:// sources.
    """
    from ..service import ServiceSpec, check_value, default_exec, install_local, install_rootfs, render_unit

    sources = list(run_values["source"])  # `run --source` is repeatable: the first, then the others as run args
    more = [a for src in sources[1:] for a in ("--source", src)]
    if exec_cmd is not None:
        check_value(exec_cmd, "--exec")
        if python is not None:
            raise click.UsageError("give --python or --exec, not both")
    common = dict(root=root, user=user, exec_cmd=shlex.split(exec_cmd) if exec_cmd else default_exec(python, rootfs is not None),
                  groups=groups, restart_sec=restart_sec, after=after)
    if agent_ref is not None or agent_args:
        from .agent import agent_spec

        spec = agent_spec(name, agent_ref, list(agent_args), sources + _run_argv(run_values), rootfs, print_only, common)
    else:
        spec = ServiceSpec(name, sources[0] if sources else "", list(run_values["sinks"]), more + _run_argv(run_values), **common)
    if print_only:
        click.echo(render_unit(spec), nl=False)
        return
    res = install_rootfs(spec, rootfs) if rootfs else install_local(spec, start=not no_start)
    click.echo("{} installed at {}; it runs in {} (relative --sink paths land there)".format(
        res["unit"], res["path"], spec.state_dir))


for _opt in reversed(RUN_OPTIONS):
    install.params.insert(1, _opt)


@service.command()
@click.argument("name")
@_root_option()
@_rootfs_option()
@json_option()
def status(name: str, root: str, rootfs: "Optional[str]", as_json: bool) -> None:
    """Show whether NAME's service is installed, enabled and running (exit 1 when it is not running,
    or with --rootfs not installed and enabled)."""
    from ..service import status_local, status_rootfs

    if rootfs:
        st = status_rootfs(name, rootfs, root)
        ok = bool(st["installed"] and st["enabled"])
        text = "{}: {}, {}; active bundle version {}".format(
            st["unit"], "installed" if st["installed"] else "not installed",
            "enabled" if st["enabled"] else "not enabled", st["active_version"] or "none")
    else:
        st = status_local(name)
        ok = st["ActiveState"] == "active"
        text = "{}: {} ({}), {}, {} restarts, pid {}".format(
            st["unit"], st["ActiveState"] or "unknown", st["SubState"] or "-", st["UnitFileState"] or "not installed",
            st["NRestarts"] or "0", st["MainPID"] or "-")
    if as_json:
        st = dict(st, ok=ok)
        click.echo(json.dumps(st, sort_keys=True))
    else:
        click.echo(text)
    if not ok:
        raise SystemExit(1)


@service.command()
@click.argument("name")
@_rootfs_option()
def uninstall(name: str, rootfs: "Optional[str]") -> None:
    """Stop, disable and remove NAME's service (only a unit this tool installed)."""
    from ..service import uninstall_local, uninstall_rootfs

    res = uninstall_rootfs(name, rootfs) if rootfs else uninstall_local(name)
    click.echo("{} removed".format(res["unit"]))
