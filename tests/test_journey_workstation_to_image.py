"""Journey (issue #27): a workstation user's way to a flashed board, every step through the CLI.

calibrate on frames and a clip -> INT8 convert with that set -> keygen, sign, pack -> deploy the
packed bundle into a root filesystem (an SD card image) with the signature required -> install the
service unit into the image (enabled for boot) -> run what the unit runs, as the board will see it:
the unit's own ``run`` arguments, paths resolved inside the image, the signature checked again.
"""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "jetson_deploy" / "demo" / "spec.json"


def jd(*args, cwd, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    p = subprocess.run([sys.executable, "-m", "jetson_deploy"] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, cwd=str(cwd), env=e, timeout=300)
    assert p.returncode == 0, "jetson-deploy {} exited {}:\n{}\n{}".format(" ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p


def _unit_run_args(unit_text: str) -> "list":
    """The ``jetson-deploy run ...`` arguments of the unit's ExecStart (after the interpreter and ``run``)."""
    line = [ln for ln in unit_text.splitlines() if ln.startswith("ExecStart=")][0]
    argv = shlex.split(line[len("ExecStart="):])
    return argv[argv.index("run") + 1:]


@pytest.mark.slow
@pytest.mark.needs("torch", "onnx", "onnxruntime", "cv2", "cryptography")
def test_workstation_calibration_to_a_flashed_image_and_its_first_run(tmp_path):
    from jetson_deploy import demo

    w = tmp_path
    demo.write_images(str(w / "frames"), 300, 160, 120, seed=1)
    demo.write_clip(str(w / "clip.avi"), 300, 320, 240, seed=2)
    jd("calibrate", "frames", "clip.avi", "--spec", SPEC, "-o", "calib", "--num", "500", "--seed", "0", "--holdout", "0.25", cwd=w)
    r = jd("convert", "jetson_deploy.demo:load_model", "--spec", SPEC, "-o", "shapes-1.0.0", "--name", "shapes",
           "--version", "1.0.0", "--precision", "int8", "--calib", "calib", "--json", cwd=w)
    assert json.loads(r.stdout)["bundle"].endswith("shapes-1.0.0")
    m = json.loads((w / "shapes-1.0.0" / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["quantization"]["passed"] is True and m["requires"]["tensorrt_min"] == "8.0"
    jd("bundle", "keygen", "-o", "signing", cwd=w)
    jd("bundle", "sign", "shapes-1.0.0", "--key", "signing", cwd=w)
    jd("bundle", "pack", "shapes-1.0.0", "-o", "shapes-1.0.0.jdb", cwd=w)

    image = w / "sdcard"
    (image / "etc").mkdir(parents=True)
    # JetPack 4.6.1 in the image: an opset-13 bundle is fine for its TensorRT 8.2 (checked, not refused)
    (image / "etc" / "nv_tegra_release").write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref\n")
    r = jd("deploy", "shapes-1.0.0.jdb", "--rootfs", image, "--key", "signing.pub", "--json", cwd=w)
    res = json.loads(r.stdout)["results"][0]
    assert (res["result"], res["active"]) == ("deployed", "1.0.0")
    active = image / "opt" / "jetson-deploy" / "active" / "shapes"
    assert os.readlink(str(active)) == "../bundles/shapes/1.0.0"  # relative: right on the booted board too

    from support.deploy import board_venv

    python = board_venv(image)  # the board's venv with jetson-deploy, where the README installs it
    jd("service", "install", "shapes", "--source", "synthetic://320x240@30", "--sink", "null://", "--user", "nvidia",
       "--rootfs", image, "--python", python, cwd=w)
    unit = image / "etc" / "systemd" / "system" / "jetson-deploy-shapes.service"
    wants = image / "etc" / "systemd" / "system" / "multi-user.target.wants" / "jetson-deploy-shapes.service"
    assert unit.is_file() and wants.is_symlink() and Path(os.readlink(str(wants))).name == unit.name  # enabled for boot
    args = _unit_run_args(unit.read_text())
    assert args[0] == "/opt/jetson-deploy/active/shapes" and args[args.index("--source") + 1] == "synthetic://320x240@30"
    r = jd("deploy", "shapes-1.0.0.jdb", "--rootfs", image, "--restart-service", "shapes", cwd=w)
    assert "unchanged" in r.stdout

    # The board's first start, seen from inside the image: the unit's bundle path resolved there, its
    # source, a signature check with the key, a bounded run writing what it saw.
    args[0] = str(image) + args[0]
    r = jd("run", *args, "--key", "signing.pub", "--max-frames", "30", "--sink", "seen.jsonl", "--json", cwd=w)
    summary = json.loads(r.stdout)
    assert summary["frames"] == 30 and summary["accuracy"] >= 0.9, summary
    rows = [json.loads(ln) for ln in (w / "seen.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {row["label"] for row in rows} <= {"circle", "square", "triangle", "none"}
