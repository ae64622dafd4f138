"""``jetson-deploy info``: the first command to run on a new board."""
import json

import click

from ._options import json_option


@click.command()
@json_option()
@click.option("--root", default="/", show_default=True, hidden=True, help="Filesystem root to probe (tests).")
@click.option("--no-gpu", is_flag=True, help="Skip probing the GPU (no CUDA context is created).")
def info(as_json: bool, root: str, no_gpu: bool) -> None:
    """Describe this machine: Jetson model, L4T/JetPack, Python, TensorRT, CUDA,
    pycuda, torch, onnxruntime, OpenCV (GStreamer?), GPU name, SM, integrated or discrete.

    \b
    Examples:
      jetson-deploy info
      jetson-deploy info --json --no-gpu      # what deploy asks a board for (its TensorRT)
    """
    from ..machine import format_info, probe

    data = probe(root=root, with_gpu=not no_gpu)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(format_info(data))
