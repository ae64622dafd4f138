"""``jetson-deploy selftest``: does the real device path work here?"""
import json
from typing import Tuple

import click

from ._options import json_option


@click.command()
@json_option()
@click.option("--camera", "camera", default=None, metavar="SRC",
              help="Also open this camera and read a frame: csi://0, /dev/video0, v4l2:///dev/video0 or an index.")
@click.option("--precision", type=click.Choice(["auto", "fp16", "fp32"]), default="auto", show_default=True,
              help="Precision of the test engine; auto is fp16 where the GPU has fast FP16.")
@click.option("--require", "require", multiple=True, type=click.Choice(["tensorrt", "pycuda"]),
              help="Fail (not skip) when this is missing, on any machine; on a Jetson both always are. Repeatable.")
@click.option("--root", default="/", show_default=True, hidden=True, help="Filesystem root to probe (tests).")
@click.pass_context
def selftest(ctx: "click.Context", as_json: bool, camera: str, precision: str, require: "Tuple[str, ...]", root: str) -> None:
    """Check the device path and print PASS/FAIL/SKIP per step: platform, TensorRT, a
    pycuda context with MAP_HOST, a mapped pinned buffer, building and running a tiny
    engine against a reference, the GPU frame path, and (with --camera) a camera frame;
    then what was proven and what was not.  Exits 1 if any check fails.  On a Jetson a
    missing TensorRT or pycuda is a FAIL (a venv made without --system-site-packages
    cannot see JetPack's TensorRT); elsewhere a SKIP with the reason, unless --require.

    \b
    Examples:
      jetson-deploy selftest                          # on the board, after installing
      jetson-deploy selftest --camera csi://0 --json
      jetson-deploy selftest --require tensorrt       # fail anywhere TensorRT is missing
    """
    from ..selftest import format_report, run_selftest

    report = run_selftest(camera=camera, root=root, precision=precision, require=require)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(format_report(report))
    if not report["ok"]:
        ctx.exit(1)
