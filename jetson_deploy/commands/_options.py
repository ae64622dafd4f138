"""Option groups shared by several commands (sqlite-utils style decorators)."""
import click

BACKENDS = ["auto", "onnxruntime", "torch", "tensorrt"]


def backend_option(default: str = "auto"):
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=default,
        show_default=True,
        help="Inference backend; auto picks TensorRT when present, else torch CUDA, else ONNX Runtime.",
    )


def json_option():
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout and nothing else there.")
