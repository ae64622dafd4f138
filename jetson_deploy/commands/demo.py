"""``jetson-deploy demo``: the whole path on the embedded demo model."""
import json
from pathlib import Path

import click

from ..vocab import PRECISIONS
from ._options import backend_option


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="Where to write bundle/, clip.mp4, annotated.mp4, predictions.jsonl and report.json.")
@backend_option()
@click.option("--frames", type=click.IntRange(1, 100000), default=150, show_default=True, help="Frames in the generated clip.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Bundle precision (int8 calibrates on generated frames first).")
def demo(workdir: Path, backend: str, frames: int, precision: str) -> None:
    """Run the whole path on the embedded demo model (no GPU, no downloads):
    convert the shipped shapes classifier into a bundle, generate a clip, run it,
    and write an annotated video and report.json with accuracy against ground truth.

    \b
    Examples:
      jetson-deploy demo --workdir demo-out
      jetson-deploy demo --workdir demo-int8 --precision int8 --frames 60
    """
    from ..demo.job import run_demo

    report = run_demo(workdir, backend=backend, frames=frames, precision=precision)
    click.echo(json.dumps({k: report[k] for k in ("backend", "frames", "fps", "accuracy")}, sort_keys=True))
    click.echo("wrote {}".format(Path(workdir) / "report.json"), err=True)
