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
python3 -m pytest -q -p no:cacheprovider -rs ${GPU_TESTS:-tests/test_gpu_preprocess.py tests/test_gpu_topk.py tests/test_runtime_cuda.py tests/test_runtime_torch.py tests/test_runtime_multi_source.py} 2>&1 | tee "$OUT/gpu_tests.log"
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
$JD convert scripts/resnet18_plain.py:resnet18 --spec /tmp/jd-r18.spec.json -o /tmp/jd-r18 --export-program
# the backend bench picks on its own (torch on CUDA here: no TensorRT), then the pycuda path
# (what runs with TensorRT on a Jetson; the torch engine stands in through enqueue)
summary='import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], d["backend"], d["executor"]["executor"], {k: d.get(k) for k in ("model_fps","engine_fps","pipeline_fps","ratio","ratio_model")}, "host_ms", d["pipeline"]["host_ms_per_frame"], "capture_cpu_ms", d["pipeline"]["capture_cpu_ms_per_frame"])'
for run in "demo auto" "demo pycuda-pinned" "r18-fp16 auto" "r18-fp16 pycuda-pinned" "r18 pycuda-pinned"; do
  set -- $run
  mem=""; [ "$2" = auto ] || mem="--memory $2"
  f="$OUT/bench_$1_$2.json"
  $JD bench /tmp/jd-$1 --source synthetic://1280x720 --iterations ${ITER:-1000} $mem --json > "$f" 2> /tmp/bench.err || tail -3 /tmp/bench.err
  python3 -c "$summary" "$f" "$1 $2"
done
python3 scripts/bench_host_overhead.py --frames 20000
python3 scripts/bench_cuda_calls.py --json "$OUT/cuda_calls.json"
[ -n "${SKIP_BENCH_SCRIPT:-}" ] || python3 scripts/bench_runtime.py --out "$OUT" --iterations ${ITER:-1000} 2>&1 | tail -60
