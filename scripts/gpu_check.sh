#!/usr/bin/env bash
# One call on a lent GPU machine (see ../.library/device): the CUDA tests, the CLI path a user
# takes (convert --export-program, then bench) and the side-by-side runtime benchmark.
# Wheels the machine lacks travel in the git-ignored .gpuwheels/ (pycuda built for it, plus
# jsonschema/pyyaml/cryptography/click/tqdm/pytest/onnx for Python 3.12); results go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 OUT=${OUT:-out}
mkdir -p "$OUT" /tmp/pp
python3 -m pip install -q --no-index --no-deps --target /tmp/pp .gpuwheels/*.whl .gpuwheels/extra/*.whl
export PYTHONPATH=/tmp/pp:$PWD
JD="python3 -m jetson_deploy"
nvidia-smi -L
python3 -m pytest -q -p no:cacheprovider -rs ${GPU_TESTS:-tests/test_gpu_preprocess.py tests/test_runtime_cuda.py tests/test_runtime_torch.py} 2>&1 | tee "$OUT/gpu_tests.log"
# the CLI path: convert (with the exported program), then bench on a 720p source
$JD convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o /tmp/jd-demo --export-program
python3 - <<'PY'
import json
spec = {"task": "classify", "input": {"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32", "color": "rgb"},
        "preprocess": {"resize": [224, 224], "keep_aspect": False, "scale": 1 / 255.0,
                       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": ["logits"], "labels": ["class{}".format(i) for i in range(1000)]}
json.dump(spec, open("/tmp/jd-r18.spec.json", "w"))
PY
$JD convert scripts/resnet18_plain.py:resnet18 --spec /tmp/jd-r18.spec.json -o /tmp/jd-r18-fp16 --precision fp16 --export-program
for b in /tmp/jd-demo /tmp/jd-r18-fp16; do
  $JD bench "$b" --source synthetic://1280x720 --iterations ${ITER:-1000} --json > "$OUT/bench_$(basename $b).json"
  echo "$b: $(cat "$OUT/bench_$(basename $b).json")"
done
[ -n "${SKIP_BENCH_SCRIPT:-}" ] || python3 scripts/bench_runtime.py --out "$OUT" --iterations ${ITER:-1000} 2>&1 | tail -60
