"""The main job on the embedded default: convert -> bundle -> clip -> run -> report.

This is what ``jetson-deploy demo`` does and what the README's first command shows:
every stage of the real path, on the CPU, with no GPU and no downloads.
"""
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional

from .._files import BUNDLE, atomic_write_json, check_path, is_bundle_dir, prepare_output
from ..errors import BadInput

DEMO_MODEL = "jetson_deploy.demo:load_model"
CLIP_FRAMES = 150
CLIP_SIZE = (320, 240)
CLIP_SEED = 2026  # never used for training

log = logging.getLogger(__name__)


def run_demo(
    workdir: Path,
    backend: str = "auto",
    frames: int = CLIP_FRAMES,
    precision: str = "fp32",
) -> "Dict[str, Any]":
    """Run the whole path and return the report (also written to ``workdir/report.json``).

    Progress lines go to this module's logger; the conversion's own notes are kept
    in its result, not shown (the demo tells the stages, not their details).
    """
    from . import load_spec, write_clip
    from .._messages import collect_messages
    from ..convert.options import BundleOptions, ConvertOptions, Int8Options
    from ..convert.pipeline import MESSAGE_LOGGERS, convert
    from ..runtime.options import OutputOptions, RunOptions
    from ..runtime.session import run_pipeline

    workdir = _check_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = load_spec()
    t0 = time.perf_counter()

    with collect_messages(*MESSAGE_LOGGERS, echo=False):
        calib = _calibration_set(workdir, spec) if precision == "int8" else None
        log.info("[1/3] converting {} -> {} ({})".format(DEMO_MODEL, workdir / "bundle", precision))
        options = ConvertOptions(precision=precision, bundle=BundleOptions(name="shapes-demo", version="1.0.0"),
                                 int8=Int8Options(calib=calib))
        conv = convert(DEMO_MODEL, spec, workdir / "bundle", options)
    t_convert = time.perf_counter() - t0

    log.info("[2/3] generating a {}-frame {}x{} clip".format(frames, *CLIP_SIZE))
    clip = workdir / "clip.mp4"
    truth = write_clip(clip, frames, width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=15, seed=CLIP_SEED)

    log.info("[3/3] running the bundle on the clip ({} backend)".format(backend))
    predictions = workdir / "predictions.jsonl"
    summary = run_pipeline(workdir / "bundle", str(clip), str(workdir / "annotated.mp4"),
                           options=RunOptions(backend=backend), outputs=OutputOptions(jsonl=str(predictions)))
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    labels = spec.labels
    correct = sum(1 for r in rows if r["index"] < len(truth) and r.get("label") == labels[truth[r["index"]]])
    summ = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
    report = {
        "model": DEMO_MODEL,
        "bundle": str(workdir / "bundle"),
        "annotated": str(workdir / "annotated.mp4"),
        "precision": precision,
        "backend": summ.get("backend"),
        "frames": len(rows),
        "fps": summ.get("fps"),
        "latency_ms": summ.get("latency_ms"),
        "accuracy": correct / float(len(rows)) if rows else 0.0,
        "ground_truth_frames": len(truth),
        "parity": _parity_of(conv),
        "int8_agreement": _int8_agreement(workdir / "bundle") if precision == "int8" else None,
        "seconds": {"convert": round(t_convert, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    atomic_write_json(workdir / "report.json", report)
    return report


def _calibration_set(workdir: Path, spec: Any) -> Path:
    """INT8 needs a calibration set: generated frames, never the clip we score on."""
    from . import write_images
    from ..calibration.dataset import build_calibration_set

    log.info("[0/3] building an INT8 calibration set from 480 generated frames (25% held out for the gate)")
    images = workdir / "calib-images"
    write_images(images, 480, width=160, height=120, seed=CLIP_SEED + 1)
    out = workdir / "calib"
    # >= 100 held-out frames: fewer cannot resolve the 0.99 agreement gate (one flip is > 1%)
    build_calibration_set([images], spec, out, num=480, seed=0, holdout=0.25, progress=False)
    return out


def _int8_agreement(bundle: Path) -> "Optional[Any]":
    manifest = json.loads((bundle / "manifest.json").read_text())
    return ((manifest.get("accuracy") or {}).get("int8") or {}).get("agreement")


def _parity_of(conv: Any) -> "Optional[Dict[str, Any]]":
    for attr in ("parity", "accuracy"):
        val = getattr(conv, attr, None)
        if val is not None:
            return val if isinstance(val, dict) else getattr(val, "__dict__", str(val))
    return None


DEMO_FILES = ("bundle", "calib", "calib-images", "clip.mp4", "annotated.mp4", "predictions.jsonl", "report.json")


def _check_workdir(workdir: "Any") -> Path:
    """The demo writes fixed names into ``--workdir``: only a new, empty or earlier demo directory."""
    workdir = check_path(workdir, "--workdir")
    if workdir.exists() and not workdir.is_dir():
        raise BadInput("--workdir {} is not a directory: give a new directory".format(workdir))
    if workdir.is_dir():
        names = set(p.name for p in workdir.iterdir())
        ours = (workdir / "report.json").is_file() or is_bundle_dir(workdir / "bundle")
        if names and not (ours and names <= set(DEMO_FILES)):
            raise BadInput("--workdir {} holds files the demo did not make: give a new or empty directory".format(workdir))
        if (workdir / "bundle").exists():
            prepare_output(workdir / "bundle", BUNDLE, flag="--workdir")
    return workdir
