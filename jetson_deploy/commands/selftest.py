"""``jetson-deploy selftest``: does the real device path work here?"""
import json

import click

from ._options import json_option


@click.command()
@json_option()
@click.option("--camera", "camera", default=None, metavar="SRC",
              help="Also open this camera and read a frame: csi://0, /dev/video0, v4l2:///dev/video0 or an index.")
@click.option("--precision", type=click.Choice(["auto", "fp16", "fp32"]), default="auto", show_default=True,
              help="Precision of the test engine; auto is fp16 where the GPU has fast FP16.")
@click.option("--root", default="/", show_default=True, hidden=True, help="Filesystem root to probe (tests).")
@click.pass_context
def selftest(ctx: "click.Context", as_json: bool, camera: str, precision: str, root: str) -> None:
    """Check the device path and print PASS/FAIL/SKIP per step: platform, TensorRT, a
    pycuda context with MAP_HOST, a mapped pinned buffer, building and running a tiny
    engine against a reference, and (with --camera) a camera frame.  Exits 1 if any
    check fails; missing pieces are SKIPs with the reason."""
    from ..selftest import format_report, run_selftest

    def progress(check) -> None:
        if not as_json:
            click.echo("{}: {}".format(check.name, check.status), err=True)

    report = run_selftest(camera=camera, root=root, precision=precision, progress=progress)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(format_report(report))
    if not report["ok"]:
        ctx.exit(1)
