"""``jetson-deploy fleet status``: every board's version and health from the registry; thin over :mod:`jetson_deploy.deploy.fleet_status`."""
import json
from typing import Any, Optional

import click

from ._options import json_option
from ._registry import registry_from, registry_options


@click.group()
def fleet() -> None:
    """Boards that update themselves from a registry (jetson-deploy agent).

    \b
    Example:
      jetson-deploy fleet status registry.local:5000/fleet/shapes --ca-cert ca.pem
    """


@fleet.command()
@click.argument("ref", metavar="REGISTRY/REPO[:TAG]")
@click.option("--status-repo", metavar="REPO", help="Repository the agents report to (default: REPO/status).")
@click.option("--jobs", "-j", default=8, show_default=True, type=click.IntRange(1, 64), help="Status records read at once.")
@registry_options
@json_option()
def status(ref: str, status_repo: "Optional[str]", jobs: int, as_json: bool, **values: "Any") -> None:
    """List every board that reports to REPO: the tag it follows, its active version, its health
    (ok, behind, refused, rolled-back, failed) and why.  With :TAG only the boards following that
    tag.  Exit 1 when a board refused, rolled back or failed its last update.

    \b
    Examples:
      jetson-deploy fleet status registry.local:5000/fleet/shapes --ca-cert ca.pem
      jetson-deploy fleet status registry.local:5000/fleet/shapes:canary --json
    """
    from ..deploy.fleet_status import fleet_status, format_fleet

    res = fleet_status(ref, registry_from(values), status_repo, jobs)
    click.echo(json.dumps(res, indent=2, sort_keys=True) if as_json else format_fleet(res))
    if not res["ok"]:
        raise SystemExit(1)
