"""``jetson-deploy calibrate``: build a calibration set, optionally INT8 ranges + gate."""
import json
from typing import Any, Dict, List, Optional, Tuple

import click

from ._options import json_option

DEFAULT_TRT = ("8.2.1", "8.5.2", "8.6.2")


@click.command(
    help=(
        "Build an INT8 calibration set from images, folders of images and videos "
        "(seeded sampling, near-duplicates dropped, preprocessed with the model's spec), "
        "and with --model compute INT8 ranges in ONNX Runtime on the CPU: ranges.json, "
        "TensorRT calibration caches, a Q/DQ model and INT8-vs-FP32 agreement on held-out "
        "frames.  Without SOURCE, -o must already hold a set and only --model work is done."
    )
)
@click.argument("sources", nargs=-1, type=click.Path())
@click.option("--spec", "spec_path", type=click.Path(), help="ModelSpec file (YAML/JSON); needed when building a set.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(), help="Calibration directory to write (replaced atomically).")
@click.option("--num", default=500, show_default=True, type=click.IntRange(min=1), help="Samples to take (calibration + held-out).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for sampling; same seed, same set.")
@click.option("--holdout", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.9), help="Fraction held out for the accuracy gate.")
@click.option("--dedupe-bits", default=5, show_default=True, type=int, help="Near-duplicate threshold (Hamming bits of a 64-bit pHash); -1 keeps duplicates.")
@click.option("--model", "model", type=click.Path(), help="ONNX file or bundle: compute INT8 ranges, caches, Q/DQ model and agreement.")
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]), default="entropy", show_default=True, help="Range calibration method.")
@click.option("--trt-version", "trt_versions", multiple=True, help="TensorRT version to write a cache for (repeatable). Default: 8.2.1, 8.5.2, 8.6.2.")
@click.option("--min-agreement", default=0.99, show_default=True, type=click.FloatRange(0.0, 1.0), help="Gate threshold: top-1 agreement (classifiers) or cosine (others).")
@click.option("--auto-exclude", is_flag=True, help="When the gate fails, leave the layers that cost the most agreement in float.")
@click.option("--exclude-budget", default=5, show_default=True, type=click.IntRange(min=0), help="Most layer groups --auto-exclude may leave in float.")
@click.option("--quiet", is_flag=True, help="No progress bars or notes on stderr.")
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
    from ..calibration.dataset import build_calibration_set, is_calibration_set, load_calibration_set
    from ..errors import BadInput, CheckFailed

    progress = not quiet
    notes: "List[str]" = []

    def log(msg: str) -> None:
        notes.append(msg)
        if not quiet:
            click.echo(msg, err=True)

    if sources:
        if not spec_path:
            raise BadInput("--spec is required to build a calibration set: pass the model's ModelSpec file")
        cs = build_calibration_set(
            list(sources), spec_path, out_dir, num=num, seed=seed, holdout=holdout, progress=progress, dedupe_bits=dedupe_bits, log=log
        )
    else:
        if not model:
            raise BadInput("give SOURCE files/folders/videos to build a set, or --model to compute INT8 ranges for the set in -o")
        if not is_calibration_set(out_dir):
            raise BadInput("{} holds no calibration set: give SOURCE files and --spec to build one first".format(out_dir))
        cs = load_calibration_set(out_dir)

    out: "Dict[str, Any]" = {"calibration_set": _set_summary(cs), "notes": notes}
    if not as_json:
        s = out["calibration_set"]
        click.echo(
            "calibration set: {} ({} calibration + {} held-out samples of shape {}; {} skipped, {} near-duplicates dropped)".format(
                s["path"], s["samples"], s["holdout"], "x".join(str(d) for d in s["shape"]), s["skipped"], s["duplicates"]
            )
        )
    result = None
    if model:
        from ..calibration.api import compute_int8

        result = compute_int8(
            model,
            out_dir,
            method=method,
            trt_versions=trt_versions or DEFAULT_TRT,
            min_agreement=min_agreement,
            auto_exclude=auto_exclude,
            exclude_budget=exclude_budget,
            progress=progress,
            log=log,
        )
        out["int8"] = result.to_dict()
        if not as_json:
            _print_int8(result)
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
    if result is not None and not result.passed:
        a = result.agreement
        raise CheckFailed(
            "INT8 {} {:.4f} on {} held-out samples is below --min-agreement {}; try --auto-exclude, --method percentile/minmax or more calibration data".format(
                a["metric"], a["value"], a["samples"], min_agreement
            )
        )


def _set_summary(cs: Any) -> "Dict[str, Any]":
    m = cs.manifest
    return {
        "path": str(cs.path),
        "samples": len(cs),
        "holdout": cs.num_holdout,
        "shape": list(cs.shape),
        "dtype": str(cs.dtype),
        "set_sha256": cs.sha256,
        "spec_sha256": cs.spec_sha256,
        "skipped": len(m.get("skipped", [])),
        "duplicates": int(m.get("dedupe", {}).get("dropped", 0)),
        "stats": {"mean": m.get("stats", {}).get("mean"), "std": m.get("stats", {}).get("std")},
    }


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
