"""``jetson-deploy agent``: the board polls a registry tag and updates itself; thin over :mod:`jetson_deploy.deploy.agent`."""
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import click

from ..deploy.agent import DEFAULT_INTERVAL, DEFAULT_MAX_BACKOFF
from ..deploy.options import DEFAULT_KEEP, DEFAULT_ROOT
from ._options import FiniteFloat, json_option
from ._registry import registry_from, registry_options


def _stop_on_signals(stop: "threading.Event") -> None:
    """SIGTERM (systemctl stop) and SIGINT end the loop between polls; an update in progress finishes."""
    def handler(signum: int, frame: Any) -> None:
        logging.getLogger("jetson_deploy.deploy.agent").info("[agent] %s: stopping after this poll", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


@click.command()
@click.argument("ref", metavar="REGISTRY/REPO:TAG")
@click.option("--root", default=DEFAULT_ROOT, show_default=True, metavar="DIR",
              help="This board's deploy root (bundles/, active/, staging/, state/; the agent's own files in agent/).")
@click.option("--key", "public_key", type=click.Path(dir_okay=False), metavar="PUBKEY",
              help="Ed25519 public key every bundle must be signed by (default: $JETSON_DEPLOY_REQUIRE_KEY or "
                   "/etc/jetson-deploy/trusted.pub; one of them is required unless --allow-unsigned).")
@click.option("--allow-unsigned", is_flag=True, help="Activate bundles without a signature check (a lab only).")
@click.option("--interval", type=FiniteFloat(0.01, 86400), default=DEFAULT_INTERVAL, show_default=True, metavar="S",
              help="Seconds between polls (each is one HEAD; spread by +-10 %).")
@click.option("--max-backoff", type=FiniteFloat(0.01, 86400), default=DEFAULT_MAX_BACKOFF, show_default=True, metavar="S",
              help="Longest wait after failed polls (the interval doubles per failure, with jitter).")
@click.option("--once", is_flag=True, help="Poll once, update if the tag moved, and exit (for a timer or a test).")
@click.option("--keep", default=DEFAULT_KEEP, show_default=True, type=click.IntRange(1, 1000),
              help="Versions kept per bundle (the active and previous are never deleted).")
@click.option("--health-cmd", metavar="CMD",
              help="Shell command run after the switch (cwd = the new bundle); failure or timeout switches back.")
@click.option("--health-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 3600), metavar="S",
              help="Seconds the health command may take.")
@click.option("--restart-service", "service", metavar="NAME",
              help="Restart NAME's run service (service install NAME) on the new version and gate on it staying active.")
@click.option("--service-settle", default=10, show_default=True, type=click.IntRange(0, 600), metavar="S",
              help="How long the restarted service must stay active (0: restart only).")
@click.option("--board-id", "board", metavar="ID", help="This board's name in status records (default: the host name).")
@click.option("--name", metavar="NAME", help="Refuse any bundle not named NAME (the one this board runs).")
@click.option("--tensorrt", metavar="VERSION", help="This board's TensorRT version, e.g. 8.2.1 (default: detected).")
@click.option("--sm", metavar="NN", help="This board's GPU compute capability, e.g. 53 (default: detected).")
@click.option("--status-repo", metavar="REPO", help="Repository for the status records (default: REPO/status).")
@click.option("--no-report", is_flag=True, help="Do not publish this board's status record to the registry.")
@click.option("--bwlimit", type=click.IntRange(1, None), metavar="KIB/S", help="Limit download bandwidth, KiB/s.")
@registry_options
@click.option("--verbose", "-v", is_flag=True, help="Also a line for each quiet poll.")
@json_option()
def agent(ref: str, root: str, public_key: "Optional[str]", allow_unsigned: bool, interval: float, max_backoff: float,
          once: bool, keep: int, health_cmd: "Optional[str]", health_timeout: float, service: "Optional[str]",
          service_settle: int, board: "Optional[str]", name: "Optional[str]", tensorrt: "Optional[str]", sm: "Optional[str]",
          status_repo: "Optional[str]", no_report: bool, bwlimit: "Optional[int]", verbose: bool, as_json: bool,
          **values: "Any") -> None:
    """Keep this board on what REGISTRY/REPO:TAG points at: HEAD the tag every --interval; when
    the digest changes, pull it by digest (resuming a cut download), check its sha256, signature
    and TensorRT/SM against this board, then activate it with deploy's staged steps (atomic
    switch, service restart, health gate, rollback, retention).  A refused or failed update keeps
    the running version.  State in ROOT/agent/state.json; status records in REPO/status:BOARD.

    \b
    Example (on the board):
      jetson-deploy agent registry.local:5000/fleet/shapes:stable --key /etc/jetson-deploy/fleet.pub \\
          --ca-cert /etc/jetson-deploy/registry-ca.pem --restart-service shapes --interval 60
    """
    from ..deploy.agent import Agent, AgentOptions
    from ..deploy.options import DeployOptions

    deploy = DeployOptions(root=root, keep=keep, health_cmd=health_cmd, health_timeout=health_timeout, service=service,
                           settle=service_settle)
    options = AgentOptions(ref, deploy, registry_from(values), public_key=public_key, allow_unsigned=allow_unsigned,
                           interval=interval, max_backoff=max_backoff, board=board, name=name, tensorrt=tensorrt, sm=sm,
                           status_repo=status_repo, report=not no_report, bwlimit=bwlimit)
    if verbose:
        logging.getLogger("jetson_deploy.deploy.agent").setLevel(logging.DEBUG)
    stop = threading.Event()
    _stop_on_signals(stop)
    with Agent(options) as a:
        out = a.run(stop, once=once)
    if as_json:
        click.echo(json.dumps(out.to_dict(), indent=2, sort_keys=True))
    elif once:
        click.echo("{}: {}".format(out.result, out.message))
    if not out.ok:
        raise SystemExit(1)


# the unit sets these itself, or they make no sense for a service that keeps polling
_UNIT_OWNS = ("--root", "--name", "--restart-service", "--once", "--json", "--help")


def agent_spec(name: str, ref: "Optional[str]", agent_args: "List[str]", run_args: "List[str]", rootfs: "Optional[str]",
               print_only: bool, common: "Dict[str, Any]") -> Any:
    """``service install NAME --agent REF -- AGENT_OPTIONS``: the agent unit's spec, its options parsed
    here by the agent command itself, so a typo fails at install, not at boot."""
    from ..errors import BadInput
    from ..service import AgentSpec, UNIT_DIR, board_path, unit_name

    if ref is None:
        raise BadInput("{}: options after '--' are for the pull agent; give --agent REGISTRY/REPO:TAG".format(" ".join(agent_args)))
    if run_args:
        raise BadInput("--agent installs the pull agent; run options ({}) belong to NAME's run service; give agent "
                       "options after '--' (service install {} --agent REF -- --key PUB --interval 60)".format(" ".join(run_args), name))
    from ..deploy.oci_ref import Reference

    Reference.parse(ref, tag_required=True)
    owned = sorted({a.split("=", 1)[0] for a in agent_args} & set(_UNIT_OWNS))
    if owned:
        raise BadInput("{}: the agent unit sets these itself (--root is service install's own option)".format(", ".join(owned)))
    try:
        ctx = agent.make_context("agent", [ref, "--root", common["root"], "--name", name] + list(agent_args))
    except click.UsageError as exc:
        raise BadInput("agent options after '--': {}".format(exc.format_message()))
    from ..bundle.sign import TRUSTED_KEY_FILE

    trusted = board_path(rootfs, TRUSTED_KEY_FILE).is_file() if rootfs else os.path.isfile(TRUSTED_KEY_FILE)
    if not (ctx.params["public_key"] or ctx.params["allow_unsigned"] or trusted):
        raise BadInput("the agent needs the publisher's public key on the board: add '-- --key /etc/jetson-deploy/fleet.pub' "
                       "(or install it as {}; --allow-unsigned for a lab)".format(TRUSTED_KEY_FILE))
    run_unit = board_path(rootfs, "{}/{}".format(UNIT_DIR, unit_name(name))) if rootfs else Path(UNIT_DIR) / unit_name(name)
    if not print_only and not run_unit.is_file():
        raise BadInput("{} is not installed: install NAME's run service first (jetson-deploy service install {} --source ...); "
                       "the agent restarts it after each update".format(run_unit, name))
    return AgentSpec(name, ref, list(agent_args), **common)
