#!/usr/bin/env bash
# One lean call on a lent GPU (about 8 minutes): the GPU-faithfulness must-show test first, the
# torch-compile figures from the CLI (issue 30), then the CUDA test files, each part time-boxed so a
# slow part cannot eat the others.  Results to $OUT (benches.jsonl, plain_compile.jsonl, logs).
set -uo pipefail
export PYTHONUNBUFFERED=1 OUT=${OUT:-out}
mkdir -p "$OUT" /tmp/pp
python3 -m pip install -q --no-index --no-deps --target /tmp/pp .gpuwheels/*.whl .gpuwheels/extra/*.whl 2>/dev/null
export PYTHONPATH=/tmp/pp:$PWD
JD="python3 -m jetson_deploy"
ITER=${ITER:-500}
nvidia-smi -L
echo "== issue 28 must-show: same top-5 on host, torch CUDA and pycuda"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -x \
  "tests/test_runtime_gpu_topk.py::test_host_torch_cuda_and_pycuda_paths_give_the_same_scores" 2>&1 | grep -v Warn | tail -4
echo "== issue 30: plain torch.compile references (cold, fresh inductor cache)"
timeout 70 python3 scripts/bench_torch_compile.py --model resnet18 --precision fp16 --mode compile --iterations $ITER \
  --out "$OUT/plain_compile.jsonl" | grep '^{'
timeout 50 python3 scripts/bench_torch_compile.py --model demo --precision fp32 --mode compile --iterations $ITER | grep '^{' \
  | tee -a "$OUT/plain_compile.jsonl"
$JD convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o /tmp/jd-r18-fp16 --precision fp16 --export-program >/dev/null 2>&1
$JD convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o /tmp/jd-demo --export-program >/dev/null 2>&1
$JD convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o /tmp/jd-r18-dyn16 --precision fp16 --dynamic-batch --export-program >/dev/null 2>&1
S4="--source synthetic://1280x720 --source synthetic://1280x720?seed=2 --source synthetic://1280x720?seed=3 --source synthetic://1280x720?seed=4"
bench() {  # bench NAME LIMIT_S BUNDLE ARGS...
  local name=$1 limit=$2 bundle=$3; shift 3
  echo "+ jetson-deploy bench $bundle $* --iterations $ITER --repeat 2 --json" >> "$OUT/commands.txt"
  timeout "$limit" $JD bench "$bundle" "$@" --iterations $ITER --repeat 2 --json > /tmp/b.json 2> /tmp/b.err || tail -3 /tmp/b.err
  python3 -c 'import json,sys
d = json.load(open("/tmp/b.json")); d["name"] = sys.argv[1]
print(json.dumps(d, sort_keys=True), file=open(sys.argv[2], "a"))
e = d.get("engine_info") or {}
print(sys.argv[1], d["backend"], d["executor"].get("executor"), "model", d.get("model_fps"), "eager", d.get("model_fps_eager"),
      "engine", d["engine_fps"], "pipeline", d["pipeline_fps"], "runs", d["pipeline"]["runs_fps"], "pipe/model", d.get("ratio_model"),
      "single", d.get("single_stream_fps"), "x", d.get("ratio_single"), "load", d.get("load_times"),
      {k: e.get(k) for k in ("compile", "compile_load_s", "recompiles", "precision")})' "$name" "$OUT/benches.jsonl" || true
}
echo "== issue 30: the CLI (compiled by default on CUDA)"
bench compiled_r18-fp16 120 /tmp/jd-r18-fp16 --source synthetic://1280x720 --load-times
bench compiled_demo 60 /tmp/jd-demo --source synthetic://1280x720
bench compiled_r18-dyn16-x4 150 /tmp/jd-r18-dyn16 $S4
echo "== CUDA tests"
timeout ${TEST_LIMIT:-180} python3 -m pytest -q -p no:cacheprovider -rs -s \
  tests/test_runtime_torch_compile.py tests/test_runtime_gpu_topk.py tests/test_runtime_gpu_capture.py \
  tests/test_runtime_cuda.py tests/test_runtime_gpu_preprocess.py tests/test_runtime_session.py 2>&1 | \
  tee "$OUT/gpu_tests.log" | grep -v "Warn\|^  \|^$\|warnings$" | tail -25
