"""``jetson-deploy convert``: a PyTorch/ONNX model + ModelSpec -> a bundle."""
import json
from typing import Any, Optional, Tuple

import click

from ..vocab import PRECISIONS
from ._options import global_quiet, json_option, warn_renamed


def _build_choice(value: "Optional[bool]") -> Any:
    return "auto" if value is None else bool(value)


@click.command()
@click.argument("model")
@click.option("--spec", "spec", required=True, type=click.Path(dir_okay=False), help="ModelSpec file (YAML or JSON): input, preprocessing, task, outputs, labels.")
@click.option("-o", "out", type=click.Path(), default=None, metavar="BUNDLE",
              help="Bundle directory to write (replaced atomically if it exists), or a .tar/.jdb file for a packed bundle.")
@click.option("--output", "output_long", multiple=True, metavar="BUNDLE", help="Same as -o.")
@click.option("--out", "out_old", type=click.Path(), default=None, hidden=True, help="Old spelling of -o/--output (goes in 0.3.0).")
@click.option("--name", default=None, help="Bundle name (default: from the model file or module).")
@click.option("--version", "version", default="0.1.0", show_default=True, help="Bundle version, semantic (X.Y.Z).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True, help="Engine precision the bundle is for.")
@click.option("--calib", type=click.Path(exists=True), default=None, help="Calibration set directory (from 'jetson-deploy calibrate'); needed for --precision int8.")
@click.option("--converter", type=click.Choice(["onnx", "torch2trt"]), default="onnx", show_default=True, help="Engine path: TensorRT's ONNX parser, or torch2trt (needs torch2trt and TensorRT here).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="State dict to load strictly into a file.py:factory / module:factory model.")
@click.option(
    "--build-engine/--no-build-engine",
    "build_engine",
    default=None,
    help="Build a TensorRT engine now (needs TensorRT here) or never; default: build when TensorRT is importable, else the device builds it at first load.",
)
@click.option("--select-output", "outputs", multiple=True, metavar="NAME_OR_INDEX",
              help="Model output to keep, by name (dict key, dataclass field, dotted path) or index; repeat for several. Default: all.")
@click.option("--opset", type=int, default=None, help="ONNX opset. Default: chosen, the lowest from 13 up that exports and passes parity "
              "(13: TensorRT 8.2+ / JetPack 4.6; 14-17: 8.5+ / JetPack 5; 18: 10+ / JetPack 6); the manifest records it.")
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch axis (engines get an optimization profile).")
@click.option("--export-program", is_flag=True, help="Also write model.pt2 (torch.export): 'run'/'bench' then take the torch CUDA path on a GPU without TensorRT.")
@click.option("--fold-preprocess", is_flag=True, help="Fold normalisation and layout change into the graph: the engine takes uint8 NHWC BGR camera frames.")
@click.option("--fold-postprocess", is_flag=True, help="Fold softmax/top-k (classify) or an argmax mask (segment) into the graph.")
@click.option("--top-k", type=int, default=None, help="k for --fold-postprocess on classifiers (default min(5, classes)).")
@click.option("--tolerance", type=float, default=1e-3, show_default=True, help="Parity tolerance: fail (exit 1) when |onnx - torch| > tol * (1 + |torch|) anywhere.")
@click.option("--min-agreement", type=float, default=0.99, show_default=True, help="INT8: minimum top-1 agreement with FP32 (exit 1 below it unless --force).")
@click.option("--force", is_flag=True, help="Write the bundle even when parity or the INT8 agreement gate fails (recorded in the manifest).")
@click.option("--auto-exclude", is_flag=True, help="INT8: keep layers that hurt agreement in higher precision.")
@click.option("--exclude-budget", default=5, show_default=True, type=click.IntRange(min=0),
              help="INT8: most layer groups --auto-exclude may leave in float.")
@click.option("--samples", "parity_samples", type=int, default=4, show_default=True, help="Number of input batches for the parity check.")
@click.option("--workspace-mb", type=int, default=1024, show_default=True, help="TensorRT builder workspace limit in MiB.")
@click.option("--dla-core", type=int, default=None, help="Build for this DLA core (Xavier/Orin), with GPU fallback for layers DLA lacks.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None, help="TensorRT timing cache file: read when present, written back after the build.")
@json_option()
def convert(
    model: str,
    spec: str,
    out: "Optional[str]",
    output_long: "Tuple[str, ...]",
    out_old: "Optional[str]",
    name: "Optional[str]",
    version: str,
    precision: str,
    calib: "Optional[str]",
    converter: str,
    weights: "Optional[str]",
    build_engine: "Optional[bool]",
    outputs: "Tuple[str, ...]",
    opset: "Optional[int]",
    dynamic_batch: bool,
    export_program: bool,
    fold_preprocess: bool,
    fold_postprocess: bool,
    top_k: "Optional[int]",
    tolerance: float,
    min_agreement: float,
    force: bool,
    auto_exclude: bool,
    exclude_budget: int,
    parity_samples: int,
    workspace_mb: int,
    dla_core: "Optional[int]",
    timing_cache: "Optional[str]",
    as_json: bool,
) -> None:
    """Convert MODEL into a bundle: ONNX export, parity check against PyTorch in ONNX
    Runtime, optional folding and INT8 data, and a TensorRT engine when TensorRT is here.

    MODEL is path/to/file.py:factory, package.module:factory, a TorchScript file,
    a torch.export .pt2 file or an .onnx file.

    \b
    Examples:
      jetson-deploy convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o shapes-1.0.0 \\
          --name shapes --version 1.0.0
      jetson-deploy convert models/net.py:build --spec spec.yaml -o net-1.0.0 --precision int8 --calib calib
      jetson-deploy convert net.onnx --spec spec.yaml -o net.jdb --select-output logits
    """
    from ..convert.options import (
        BundleOptions, CheckOptions, ConvertOptions, EngineOptions, ExportOptions, FoldOptions, Int8Options,
    )
    from ..convert.pipeline import convert as run_convert

    out, outputs = _out_and_outputs(out, output_long, out_old, outputs)

    options = ConvertOptions(
        precision=precision,
        bundle=BundleOptions(name=name, version=version),
        export=ExportOptions(weights=weights, outputs=list(outputs) or None, opset=opset, dynamic_batch=dynamic_batch,
                             program=export_program),
        check=CheckOptions(tolerance=tolerance, samples=parity_samples, force=force),
        fold=FoldOptions(preprocess=fold_preprocess, postprocess=fold_postprocess, top_k=top_k),
        int8=Int8Options(calib=calib, min_agreement=min_agreement, auto_exclude=auto_exclude, exclude_budget=exclude_budget,
                         progress=not global_quiet()),
        engine=EngineOptions(
            converter=converter, build=_build_choice(build_engine), workspace_mb=workspace_mb, dla_core=dla_core, timing_cache=timing_cache
        ),
    )
    result = run_convert(model, spec, out, options)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        click.echo("wrote {} ({})".format(result.bundle, result.engine_note))


def _out_and_outputs(short: "Optional[str]", long: "Tuple[str, ...]", old: "Optional[str]",
                     selected: "Tuple[str, ...]") -> "Tuple[str, Tuple[str, ...]]":
    """The bundle path and the kept outputs, from -o/--output and this release's old spellings.

    Until 0.3.0 ``--out`` still names the bundle and ``--output NAME`` still selects a model output
    when the bundle is named by -o/--out (every old command line did that); each says it is renamed.
    """
    if old is not None:
        warn_renamed("convert", "--out", "-o/--output")
    path = short if short is not None else old
    if path is not None and long:
        warn_renamed("convert", "--output NAME (keep a model output)", "--select-output")
        return path, tuple(selected) + tuple(long)
    if len(long) > 1:
        raise click.UsageError("--output names the bundle to write, once; keep model outputs with --select-output")
    path = path if path is not None else (long[0] if long else None)
    if path is None:
        raise click.UsageError("Missing option '-o' / '--output': the bundle directory (or .jdb file) to write")
    return path, tuple(selected)
