"""``bundle engine BUNDLE --on USER@HOST``: the CLI side of :mod:`jetson_deploy.deploy.remote_engine`."""
import json
from typing import Optional, Sequence

import click


def engine_on(bundle_path: str, host: str, precision: "Optional[str]", tensorrt: "Optional[str]", sm: "Optional[str]",
              cache_dir: "Optional[str]", build: bool, remote_cmd: str, ssh_config: "Optional[str]",
              ssh_options: "Sequence[str]", as_json: bool) -> None:
    from ..deploy.options import Connection
    from ..deploy.remote_engine import RemoteEngineOptions, build_on
    from ..errors import BadInput
    from .deploy import _check_ssh_options

    if cache_dir or not build:
        raise BadInput("--on builds on the board: --cache-dir and --no-build are for this machine's engine cache")
    _check_ssh_options(None, None, ssh_options)
    options = RemoteEngineOptions(remote_cmd, precision, tensorrt, sm,
                                  connection=Connection(ssh_config=ssh_config, ssh_options=tuple(ssh_options)))
    res = build_on(bundle_path, host, options)
    if as_json:
        click.echo(json.dumps(res, indent=2, sort_keys=True))
        return
    t = res["target"]
    if res["artifact"] is None:
        click.echo("{} already has an engine for TensorRT {} sm{} {} (as {} reports); nothing added".format(
            bundle_path, t["tensorrt"], t["sm"], t["precision"], res["host"]))
        return
    a = res["artifact"]
    click.echo("added {} built on {} (TensorRT {} sm{} {}, {} bytes, sha256 {}...) in {:.0f} s{}".format(
        a["path"], res["host"], t["tensorrt"], t["sm"], t["precision"], a["size"], a["sha256"][:12], res["seconds"],
        "; the signature was removed: sign the bundle again" if res["signature_removed"] else ""))
