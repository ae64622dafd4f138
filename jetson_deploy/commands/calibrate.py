"""``jetson-deploy calibrate``: build a calibration set, optionally INT8 ranges + gate."""
import json
from typing import Any, Optional, Tuple

import click

from ._options import global_quiet, json_option


@click.command(
    help=(
        "Build an INT8 calibration set from images, folders of images and videos "
        "(seeded sampling, near-duplicates dropped, preprocessed with the model's spec), "
        "and with --model compute INT8 ranges in ONNX Runtime on the CPU: ranges.json, "
        "TensorRT calibration caches, a Q/DQ model and INT8-vs-FP32 agreement on held-out "
        "frames.  Without SOURCE, -o must already hold a set and only --model work is done.\n\n"
        "\b\nExamples:\n"
        "  jetson-deploy calibrate frames/ clip.avi --spec jetson_deploy/demo/spec.json -o calib --num 500 --holdout 0.25\n"
        "  jetson-deploy calibrate -o calib --model shapes-1.0.0 --method percentile --auto-exclude"
    )
)
@click.argument("sources", nargs=-1, type=click.Path())
@click.option("--spec", "spec_path", type=click.Path(), help="ModelSpec file (YAML/JSON); needed when building a set.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(), help="Calibration directory to write (replaced atomically).")
@click.option("--num", default=500, show_default=True, type=click.IntRange(min=1), help="Samples to take (calibration + held-out).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for sampling; same seed, same set.")
@click.option("--holdout", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.9), help="Fraction held out for the accuracy gate.")
@click.option("--dedupe-bits", default=5, show_default=True, type=click.IntRange(-1, 64), help="Near-duplicate threshold (Hamming bits of a 64-bit pHash); -1 keeps duplicates.")
@click.option("--model", "model", type=click.Path(), help="ONNX file or bundle: compute INT8 ranges, caches, Q/DQ model and agreement.")
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]), default="entropy", show_default=True, help="Range calibration method.")
@click.option("--trt-version", "trt_versions", multiple=True, help="TensorRT version to write a cache for (repeatable). Default: 8.2.1, 8.5.2, 8.6.2.")
@click.option("--min-agreement", default=0.99, show_default=True, type=click.FloatRange(0.0, 1.0), help="Gate threshold: top-1 agreement (classifiers) or cosine (others).")
@click.option("--auto-exclude", is_flag=True, help="When the gate fails, leave the layers that cost the most agreement in float.")
@click.option("--exclude-budget", default=5, show_default=True, type=click.IntRange(min=0), help="Most layer groups --auto-exclude may leave in float.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes on stderr (as jetson-deploy --quiet calibrate).")
@json_option()
def calibrate(
    sources: "Tuple[str, ...]",
    spec_path: "Optional[str]",
    out_dir: str,
    num: int,
    seed: int,
    holdout: float,
    dedupe_bits: int,
    model: "Optional[str]",
    method: str,
    trt_versions: "Tuple[str, ...]",
    min_agreement: float,
    auto_exclude: bool,
    exclude_budget: int,
    quiet: bool,
    as_json: bool,
) -> None:
    from .._messages import collect_messages
    from ..bundle import onnx_model
    from ..calibration.workflow import QuantizeOptions, SetOptions, calibrate as run_calibrate

    # --quiet: notes are still collected for --json, but not printed
    quiet = quiet or global_quiet()
    with collect_messages("jetson_deploy.calibration", echo=not quiet):
        result = run_calibrate(
            sources,
            out_dir,
            spec=spec_path,
            model=onnx_model(model) if model else None,
            set_options=SetOptions(num=num, seed=seed, holdout=holdout, dedupe_bits=dedupe_bits),
            quantize=QuantizeOptions(
                method=method, trt_versions=trt_versions, min_agreement=min_agreement, auto_exclude=auto_exclude, exclude_budget=exclude_budget
            ),
            progress=not quiet,
        )
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
    else:
        s = result.set_summary()
        click.echo(
            "calibration set: {} ({} calibration + {} held-out samples of shape {}; {} skipped, {} near-duplicates dropped)".format(
                s["path"], s["samples"], s["holdout"], "x".join(str(d) for d in s["shape"]), s["skipped"], s["duplicates"]
            )
        )
        if result.int8 is not None:
            _print_int8(result.int8)
    result.enforce_gate()


def _print_int8(r: Any) -> None:
    a = r.agreement
    click.echo("INT8 ranges ({}): {}{}".format(r.method, r.ranges_path, " (reused)" if r.reused != "none" else ""))
    click.echo("  TensorRT caches: " + ", ".join("{} -> {}".format(v, p) for v, p in sorted(r.cache_paths.items())))
    click.echo("  Q/DQ model: {}".format(r.qdq_path))
    if r.agreement_before is not None and r.excluded:
        b = r.agreement_before
        click.echo("  before auto-exclude: {} {:.4f}".format(b["metric"], b["value"]))
        click.echo("  left in float: {}".format(", ".join(g["name"] for g in r.excluded_groups)))
    click.echo(
        "  agreement INT8 vs FP32 on {} {} samples: {} {:.4f}, cosine {:.5f} (min {:.5f}), max abs error {:.4g} -> {}".format(
            a["samples"],
            "held-out" if a.get("on") == "holdout" else "calibration",
            a["metric"],
            a["value"],
            a["cosine_mean"],
            a["cosine_min"],
            a["max_abs_error"],
            "PASS" if r.passed else "FAIL (< {})".format(a["threshold"]),
        )
    )
    if a.get("note"):
        click.echo("  note: " + a["note"], err=True)
