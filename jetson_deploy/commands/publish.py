"""``jetson-deploy publish``: a bundle into an OCI registry, or ``--promote`` a tag; thin over :mod:`jetson_deploy.deploy.publish`."""
import json
from typing import Any, List, Optional, Tuple

import click

from ._options import json_option
from ._registry import registry_from, registry_options


@click.command()
@click.argument("args", nargs=-1, metavar="[BUNDLE] REGISTRY/REPO[:TAG]")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Another tag for the same bundle (repeatable): a channel (canary) or a board kind (orin-sm87).")
@click.option("--promote", nargs=2, metavar="FROM TO", default=None,
              help="Point tag TO at what tag FROM points at (canary -> stable); no BUNDLE, nothing uploaded.")
@click.option("--key", "public_key", type=click.Path(exists=True, dir_okay=False), metavar="PUBKEY",
              help="Publish only when the bundle carries a valid manifest.sig by this Ed25519 public key.")
@click.option("--no-version-tag", is_flag=True, help="Do not also tag the bundle with its version (1.2.0).")
@registry_options
@json_option()
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def publish(args: "Tuple[str, ...]", tags: "List[str]", promote: "Optional[Tuple[str, str]]", public_key: "Optional[str]",
            no_version_tag: bool, as_json: bool, quiet: bool, **values: "Any") -> None:
    """Push BUNDLE (directory or packed file) to an OCI registry as one layer with the bundle's
    media type and annotations, tagged TAG, each --tag and its version; or, with --promote FROM TO,
    move tag TO to what FROM points at (same digest, nothing re-uploaded).

    \b
    Examples:
      jetson-deploy publish shapes-1.1.0 registry.local:5000/fleet/shapes:canary --key fleet.pub
      jetson-deploy publish --promote canary stable registry.local:5000/fleet/shapes
    """
    from .._messages import quieted
    from ..errors import BadInput
    from ..deploy.publish import describe_promote, describe_publish, promote as _promote, publish as _publish

    options = registry_from(values)
    if promote:
        if len(args) != 1 or tags or public_key:
            raise BadInput("--promote FROM TO takes only REGISTRY/REPO (no BUNDLE, --tag or --key)")
        res = _promote(args[0], promote[0], promote[1], options)
        text = describe_promote(res)
    else:
        if len(args) != 2:
            raise BadInput("give BUNDLE and REGISTRY/REPO:TAG (or --promote FROM TO REGISTRY/REPO)")
        with quieted("jetson_deploy.deploy", quiet):
            res = _publish(args[0], args[1], tags, options, public_key, version_tagged=not no_version_tag)
        text = describe_publish(res)
    click.echo(json.dumps(res, indent=2, sort_keys=True) if as_json else text)
