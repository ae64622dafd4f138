#!/usr/bin/env python3
"""Peak RSS of building a calibration set from N images of 1920x1080.

Writes N distinct 1080p JPEGs (smooth random blobs + shapes, so none is a
near-duplicate of another), then builds a calibration set from them in a fresh
child process for N/2 and for N images and reports each child's peak RSS
(ru_maxrss) and the growth per image between the two.  The target (issue 3) is a
peak under 1 GB for 10,000 images::

    python scripts/bench_calibrate_memory.py                 # N=300 (quick)
    python scripts/bench_calibrate_memory.py --num 10000     # the 1 GB target (~2 GB of JPEGs, minutes)

Prints one JSON object on stdout.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from jetson_deploy.calibration.dataset import build_calibration_set
src, spec, out, num = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import cv2, numpy  # what the build imports anyway, so 'base' is the floor
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
cs = build_calibration_set([src], spec, out, num=num, seed=0, progress=False)
dt = time.time() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"samples": len(cs) + cs.num_holdout, "seconds": round(dt, 2),
                  "rss_floor_mb": round(floor / 1024.0, 1), "rss_peak_mb": round(peak / 1024.0, 1)}))
"""


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = folder / "{:06d}.jpg".format(i)
        if p.exists():
            continue
        rng = np.random.default_rng([seed, i])  # image i is the same whether or not others exist
        small = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
        img = cv2.resize(small, (1920, 1080), interpolation=cv2.INTER_CUBIC)
        for _ in range(3):
            c = tuple(int(x) for x in rng.integers(0, 256, 3))
            cv2.circle(img, (int(rng.integers(0, 1920)), int(rng.integers(0, 1080))), int(rng.integers(40, 300)), c, -1)
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 85])


def run_child(src: Path, spec: Path, out: Path, num: int) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, str(src), str(spec), str(out), str(num)], capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit("child failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=300, help="images of 1920x1080 (default 300)")
    ap.add_argument("--size", type=int, default=224, help="model input side (square), default 224")
    ap.add_argument("--images", type=Path, default=None, help="folder to keep/reuse the generated JPEGs")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="jd-bench-") as td:
        td_p = Path(td)
        imgs = args.images or td_p / "imgs"
        t = time.time()
        write_images(imgs, args.num)
        gen_s = time.time() - t
        spec = td_p / "spec.json"
        spec.write_text(json.dumps({
            "task": "classify",
            "input": {"name": "input", "shape": [1, 3, args.size, args.size], "dtype": "float32", "color": "rgb"},
            "preprocess": {"resize": [args.size, args.size], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "outputs": ["logits"],
        }))
        small_n = max(1, args.num // 2)
        small = run_child(imgs, spec, td_p / "set_small", small_n)
        full = run_child(imgs, spec, td_p / "set_full", args.num)
        growth_kb = (full["rss_peak_mb"] - small["rss_peak_mb"]) * 1024.0 / max(1, full["samples"] - small["samples"])
        set_mb = sum(f.stat().st_size for f in (td_p / "set_full").iterdir()) / 1e6
        print(json.dumps({
            "images": args.num,
            "image_size": "1920x1080",
            "model_input": "3x{0}x{0} float32".format(args.size),
            "generate_seconds": round(gen_s, 1),
            "small": dict(small, images=small_n),
            "full": dict(full, images=args.num),
            "rss_growth_kb_per_image": round(growth_kb, 2),
            "set_size_mb": round(set_mb, 1),
            "projected_peak_mb_10000": round(full["rss_peak_mb"] + growth_kb * max(0, 10000 - full["samples"]) / 1024.0, 1),
            "target_mb_10000": 1024,
        }, indent=2))


if __name__ == "__main__":
    main()
