#!/usr/bin/env bash
# One call on a lent GPU machine (see ../.library/device): the CUDA tests, the CLI path a user
# takes (convert --export-program, then bench) and the side-by-side runtime benchmark.
# Wheels the machine lacks travel in the git-ignored .gpuwheels/ (pycuda built for it, plus
# jsonschema/pyyaml/cryptography/click/tqdm/pytest/onnx for Python 3.12); results go to $OUT.
#   PARTS="tests single multi compile script" (default: all) picks what runs; ITER sets bench iterations.
set -uo pipefail
export PYTHONUNBUFFERED=1 OUT=${OUT:-out}
PARTS=${PARTS:-tests single multi compile script}
has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
mkdir -p "$OUT" /tmp/pp
python3 -m pip install -q --no-index --no-deps --target /tmp/pp .gpuwheels/*.whl .gpuwheels/extra/*.whl
export PYTHONPATH=/tmp/pp:$PWD
JD="python3 -m jetson_deploy"
nvidia-smi -L
if has tests; then
  python3 -m pytest -q -p no:cacheprovider -rs ${GPU_TESTS:-tests/test_runtime_gpu_preprocess.py tests/test_runtime_gpu_topk.py tests/test_runtime_cuda.py tests/test_runtime_torch.py tests/test_runtime_multi_source.py tests/test_runtime_session.py} 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
fi
# the backend bench picks on its own (torch on CUDA here: no TensorRT), then the pycuda path
# (what runs with TensorRT on a Jetson; the torch engine stands in through enqueue)
summary='import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], d["backend"], d["executor"]["executor"], {k: d.get(k) for k in ("model_fps","engine_fps","pipeline_fps","ratio","ratio_model","single_stream_fps","ratio_single","batch","chunks")}, "host_ms", d["pipeline"]["host_ms_per_frame"], "capture_cpu_ms", d["pipeline"]["capture_cpu_ms_per_frame"])'
bench() {  # bench NAME BUNDLE MEMORY SOURCES...
  local name=$1 bundle=$2 mem=$3; shift 3
  local f="/tmp/jd-bench/$name.json" memflag=""
  mkdir -p /tmp/jd-bench
  [ "$mem" = auto ] || memflag="--memory $mem"
  echo "+ jetson-deploy bench $bundle $* $memflag --iterations ${ITER:-1000} --json" >> "$OUT/commands.txt"
  $JD bench "$bundle" "$@" --iterations ${ITER:-1000} $memflag --json > "$f" 2> /tmp/bench.err || tail -3 /tmp/bench.err
  python3 -c "$summary" "$f" "$name"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["name"]=sys.argv[2]; print(json.dumps(d, sort_keys=True))' "$f" "$name" >> "$OUT/benches.jsonl"
}
if has single; then
  $JD convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o /tmp/jd-demo --export-program
  $JD convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o /tmp/jd-r18-fp16 --precision fp16 --export-program
  for mem in auto pycuda-pinned; do
    bench "demo_$mem" /tmp/jd-demo $mem --source synthetic://1280x720
    bench "r18-fp16_$mem" /tmp/jd-r18-fp16 $mem --source synthetic://1280x720
  done
fi
if has multi; then
  # issue 23: four 720p cameras through one dynamic-batch fp16 bundle, from the CLI
  echo "+ jetson-deploy convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o r18-dyn16 --precision fp16 --dynamic-batch --export-program" >> "$OUT/commands.txt"
  $JD convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o /tmp/jd-r18-dyn16 --precision fp16 --dynamic-batch --export-program
  $JD convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o /tmp/jd-demo-dyn --dynamic-batch --export-program
  S4="--source synthetic://1280x720 --source synthetic://1280x720?seed=2 --source synthetic://1280x720?seed=3 --source synthetic://1280x720?seed=4"
  for mem in auto pycuda-pinned; do
    bench "r18-dyn16-x4_$mem" /tmp/jd-r18-dyn16 $mem $S4
    bench "demo-dyn-x4_$mem" /tmp/jd-demo-dyn $mem $S4
  done
  # a batch-1 bundle and four sources: four engine calls a round (nvinfer's chunks), no refusal
  bench "r18-fp16-x4-chunks_auto" /tmp/jd-r18-fp16 auto $S4
fi
if has compile; then
  # issue 30: the torch path compiled by default on CUDA; a plain torch.compile of the same networks
  # from their factories (scripts/bench_torch_compile.py) is the reference, measured in this call
  python3 scripts/bench_torch_compile.py --model resnet18 --precision fp16 --mode compile --iterations ${ITER:-1000} \
      --out "$OUT/plain_compile.jsonl" | grep '^{'
  python3 scripts/bench_torch_compile.py --model demo --precision fp32 --mode compile --iterations ${ITER:-1000} | \
      grep '^{' | tee -a "$OUT/plain_compile.jsonl"
  [ -d /tmp/jd-r18-fp16 ] || $JD convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o /tmp/jd-r18-fp16 --precision fp16 --export-program
  [ -d /tmp/jd-demo ] || $JD convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o /tmp/jd-demo --export-program
  [ -d /tmp/jd-r18-dyn16 ] || $JD convert scripts/resnet18_plain.py:resnet18 --spec scripts/resnet18.spec.json -o /tmp/jd-r18-dyn16 --precision fp16 --dynamic-batch --export-program
  S4="--source synthetic://1280x720 --source synthetic://1280x720?seed=2 --source synthetic://1280x720?seed=3 --source synthetic://1280x720?seed=4"
  bench "compiled_r18-fp16" /tmp/jd-r18-fp16 auto --source synthetic://1280x720 --load-times
  bench "compiled_demo" /tmp/jd-demo auto --source synthetic://1280x720 --load-times
  bench "compiled_r18-dyn16-x4" /tmp/jd-r18-dyn16 auto $S4
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d=json.loads(l)
    if d["name"].startswith("compiled_"):
        print(d["name"], "model(compiled)", d.get("model_fps"), "model(eager)", d.get("model_fps_eager"), "pipeline", d["pipeline_fps"],
              "pipeline/model", d.get("ratio_model"), "load", d.get("load_times"), "engine", {k: d.get("engine_info", {}).get(k) for k in ("compile", "compile_load_s", "recompiles")})' "$OUT/benches.jsonl"
  python3 -m pytest -q -p no:cacheprovider -rs -s tests/test_runtime_torch_compile.py 2>&1 | grep -v Warning | tail -8
fi
if has script; then
  python3 scripts/bench_host_overhead.py --frames 20000
  python3 scripts/bench_cuda_calls.py --json "$OUT/cuda_calls.json"
  python3 scripts/bench_runtime.py --out "$OUT" --iterations ${ITER:-1000} 2>&1 | tail -60
fi
