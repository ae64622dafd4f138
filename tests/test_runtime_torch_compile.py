"""The torch path compiled like an engine (issue #30): torch.compile at load, cached per GPU in the
engine cache, eager with one line when it cannot compile, recompiles counted.  CPU: inductor's CPU
backend for the cold/warm journey (fresh processes), dynamo's eager backend where only counting matters."""
import json
import os
import subprocess
import sys

import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnx")
torch = optional_module("torch")

from jetson_deploy.runtime.torch_compile import (  # noqa: E402
    CompiledModule,
    artifact_fields,
    compile_wanted,
    unique_graphs,
)


def test_the_key_changes_with_everything_a_compiled_model_depends_on():
    from jetson_deploy.bundle.engine_cache import artifact_key

    ident = {"gpu": "NVIDIA H100", "sm": 90, "torch": "2.11.0", "triton": "3.5.0"}
    base = artifact_fields("a" * 64, ident, "fp16", 1, dynamic=False)
    keys = {artifact_key(base)}
    for change in ({"gpu": "Orin"}, {"sm": 87}, {"torch": "2.12.0"}, {"triton": "3.6.0"}):
        keys.add(artifact_key(artifact_fields("a" * 64, dict(ident, **change), "fp16", 1, dynamic=False)))
    keys.add(artifact_key(artifact_fields("b" * 64, ident, "fp16", 1, dynamic=False)))
    keys.add(artifact_key(artifact_fields("a" * 64, ident, "fp32", 1, dynamic=False)))
    keys.add(artifact_key(artifact_fields("a" * 64, ident, "fp16", 4, dynamic=False)))
    assert len(keys) == 8
    # a dynamic program is keyed by its profile: any source count reuses it
    assert artifact_fields("a" * 64, ident, "fp16", 1, True)["batch"] == artifact_fields("a" * 64, ident, "fp16", 4,
                                                                                         True)["batch"] == "1..8"
    assert base["kind"] == "torch-inductor"


def test_compile_defaults_on_cuda_only():
    assert compile_wanted(None, True) and not compile_wanted(None, False)
    assert compile_wanted(True, False) and not compile_wanted(False, True)


class _Cache:
    """The engine cache's interface over a dict (the real one is tested in test_bundle_select)."""

    def __init__(self):
        import contextlib

        self.data, self.removed, self.root = {}, [], "mem"
        self.lock = contextlib.contextmanager(lambda key: iter([None]))

    def get(self, key):
        return self.data.get(key)

    def put(self, key, blob, info):
        self.data[key] = blob

    def remove(self, key):
        self.removed.append(key)
        self.data.pop(key, None)


def _fields():
    return artifact_fields("c" * 64, {"gpu": "cpu", "sm": None, "torch": torch.__version__, "triton": None}, "fp32", 2,
                           False)


def test_a_model_that_does_not_compile_runs_eager_with_one_line(caplog):
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            if float(x.sum()) > 0:  # a host read: no full graph
                return x * 2
            return x

    m = CompiledModule(torch, DataDependent(), torch.ones(2, 3), _fields(), _Cache(), dynamic=False)
    assert m.how == "eager" and m.fn is m.module and "torch.compile failed" in m.note
    assert "\n" not in m.note and m.recompiles() == 0
    assert any("running eager" in r.getMessage() for r in caplog.records)
    assert m.describe()["compile"] == "eager"


def test_recompiles_after_load_are_counted():
    lin = torch.nn.Linear(3, 4).eval()
    m = CompiledModule(torch, lin, torch.zeros(2, 3), _fields(), _Cache(), dynamic=False, backend="eager")
    assert m.how == "compiled" and m.recompiles() == 0
    with torch.inference_mode():
        m(torch.zeros(2, 3))
        assert m.recompiles() == 0  # the shape compiled at load
        m(torch.zeros(5, 3))  # a shape the load did not compile: counted, as a run reports it
    assert m.recompiles() >= 1


def test_the_load_compiles_one_graph_the_callers_use():
    """The warm-up compiles the inference-tensor variant every caller passes, once: compiling an
    ordinary tensor too (dynamo guards on the difference) doubled the first load on an H100."""
    torch._dynamo.reset()
    before = unique_graphs(torch)
    lin = torch.nn.Linear(3, 4).eval()
    m = CompiledModule(torch, lin, torch.zeros(2, 3), _fields(), _Cache(), dynamic=False, backend="eager")
    assert unique_graphs(torch) - before == 1
    with torch.inference_mode():
        m(torch.ones(2, 3))
    assert m.recompiles() == 0


def test_inductor_cache_is_kept_in_the_engine_cache_unless_the_user_chose(monkeypatch, tmp_path):
    from jetson_deploy.bundle.engine_cache import EngineCache
    from jetson_deploy.runtime.torch_compile import keep_inductor_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cache = EngineCache(tmp_path / "engines")
    d = keep_inductor_cache(cache)
    assert d == str(tmp_path / "engines" / "inductor") and os.environ["TORCHINDUCTOR_CACHE_DIR"] == d
    assert keep_inductor_cache(cache) is None  # set now: left alone, as a user's choice is
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert keep_inductor_cache(EngineCache(tmp_path / "other")) is None
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine") and not (tmp_path / "other").exists()
    # a link where the directory would be is not followed: inductor keeps its default
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    (tmp_path / "c").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "c" / "inductor"))
    assert keep_inductor_cache(EngineCache(tmp_path / "c")) is None and "TORCHINDUCTOR_CACHE_DIR" not in os.environ


def test_cache_clear_removes_only_the_inductor_directory_it_made(tmp_path):
    from jetson_deploy.bundle.engine_cache import INDUCTOR_DIR, EngineCache

    made = EngineCache(tmp_path / "a")
    (made.tool_dir(INDUCTOR_DIR) / "kernel.so").write_bytes(b"x")
    made.clear()
    assert not (tmp_path / "a" / INDUCTOR_DIR).exists()
    theirs = tmp_path / "b" / INDUCTOR_DIR  # a directory of that name the tool did not make
    theirs.mkdir(parents=True)
    (theirs / "keep.txt").write_text("mine")
    EngineCache(tmp_path / "b").clear()
    assert (theirs / "keep.txt").read_text() == "mine"


def test_artifacts_that_do_not_load_are_removed_and_rebuilt(monkeypatch, tmp_path, caplog):
    cache = _Cache()
    blob = tmp_path / "x.engine"
    blob.write_bytes(b"not an artifact")
    m = CompiledModule.__new__(CompiledModule)
    m.torch, m.cache, m.key = torch, cache, "k"
    cache.data["k"] = blob
    assert m._load_artifacts() is False
    assert cache.removed == ["k"] and any("compiling again" in r.getMessage() for r in caplog.records)


def _run(bundle, tmp_path, *flags, inductor=None):
    """One ``run`` in a fresh process; ``inductor``: a fresh inductor directory of that name (the
    portable artifacts alone), None: the one the engine cache keeps."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    env["JETSON_DEPLOY_CACHE"] = str(tmp_path / "engines")
    if inductor:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / ("inductor-" + inductor))
    out = subprocess.run([sys.executable, "-m", "jetson_deploy", "run", str(bundle), "--source", "synthetic://32x24?pool=2",
                          "--backend", "torch", "--device", "cpu", "--max-frames", "5", "--interval", "0", "--json"]
                         + list(flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["engine"], out.stderr


@pytest.mark.slow
def test_run_compiles_once_then_loads_from_the_engine_cache(tmp_path):
    """``run --compile`` (asked for on the CPU, inductor's C++ backend; on CUDA it is the default): the
    first process compiles and stores the artifacts in the engine cache, a fresh process with an empty
    inductor cache loads them (a cache hit), and neither recompiles in the loop.  Without the flag the
    CPU runs the program uncompiled."""
    from support.runtime import make_bundle

    b = make_bundle(tmp_path / "b", pt2=True)
    cold, err = _run(b, tmp_path, "--compile")
    assert cold["compile"] == "compiled" and cold["recompiles"] == 0
    assert "compiling for cpu (first load" in err
    entries = [json.loads(p.read_text()) for p in (tmp_path / "engines").glob("*.json")]
    assert [e["kind"] for e in entries] == ["torch-inductor"] and entries[0]["batch"] == 1
    # inductor's own caches were kept in the engine cache (its default, /tmp, a reboot empties)
    kept = tmp_path / "engines" / "inductor"
    built = {p: p.stat().st_mtime_ns for p in kept.rglob("*.so")}
    assert built and (kept / ".made-by-jetson-deploy").is_file()
    # the portable artifacts alone, in a fresh inductor directory: a hit (the kernels built again there)
    art, err = _run(b, tmp_path, "--compile", inductor="fresh")
    assert art["compile"] == "cache-hit" and art["recompiles"] == 0 and "compiling for" not in err
    assert list((tmp_path / "inductor-fresh").rglob("*.so"))
    # a reboot: the kept directory serves the compiled kernels, nothing is built again
    warm, err = _run(b, tmp_path, "--compile")
    assert warm["compile"] == "cache-hit" and warm["recompiles"] == 0 and "compiling for" not in err
    assert {p: p.stat().st_mtime_ns for p in kept.rglob("*.so")} == built
    assert _run(b, tmp_path)[0]["compile"] == "off"  # the CPU's default
    # `bundle cache clear` removes the directory it made with the entries
    r = subprocess.run([sys.executable, "-m", "jetson_deploy", "bundle", "cache", "clear", "--cache-dir",
                        str(tmp_path / "engines")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    assert not kept.exists() and not list((tmp_path / "engines").glob("*.json"))


class _SizeChange:
    """``n`` frames of one colour-coded sequence, the frame size changing half way (a camera switching
    mode): the compiled model's input is the spec's size, so nothing may recompile."""

    @staticmethod
    def make(n, sizes):
        import numpy as np

        from jetson_deploy.media.sources import Frame, Source

        colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]

        class Src(Source):
            scheme = "sizechange"

            def __init__(self):
                super().__init__("sizechange://", {"width": sizes[0][0], "height": sizes[0][1]})
                self.i = 0
                self.frames = [np.full((h, w, 3), c, np.uint8) for (w, h) in sizes for c in colours]

            def open_impl(self):
                pass

            def read_impl(self, timeout):
                if self.i >= n:
                    self.end("done")
                    return None
                half = 0 if self.i < n // 2 else 1
                img = self.frames[half * 3 + (self.i // 7) % 3]
                self.i += 1
                return Frame(img, truth=None)

        return Src()


@pytest.mark.needs("cuda", "cv2")
def test_ten_thousand_frames_with_a_size_change_never_recompile(tmp_path):
    """Issue #30 must-show: compiled by default on CUDA, 0 recompiles over a 10,000-frame run whose
    frame size changes mid-run; labels as the eager path gives them."""
    from support.runtime import make_bundle

    from jetson_deploy.runtime.options import OutputOptions, RunOptions
    from jetson_deploy.runtime.session import run_pipeline

    b = make_bundle(tmp_path / "b", pt2=True)
    outs = {}
    for mode in (True, False):
        p = tmp_path / "{}.jsonl".format(mode)
        s = run_pipeline(b, _SizeChange.make(10000, [(1280, 720), (640, 480)]), str(p),
                         options=RunOptions(backend="torch", device="cuda", compile=None if mode else False,
                                            cache_dir=str(tmp_path / "engines")),
                         outputs=OutputOptions(metrics_interval=0))
        assert s.frames == 10000
        outs[mode] = [json.loads(x)["label"] for x in p.read_text().splitlines()]
        if mode:
            assert s.engine["compile"] in ("compiled", "cache-hit") and s.engine["recompiles"] == 0
    assert outs[True] == outs[False]


@pytest.mark.needs("cuda", "cv2", "onnxruntime")
def test_demo_compiled_agrees_with_eager_on_every_frame(tmp_path, capsys):
    """Issue #30 must-show: top-1 agreement with the eager path 1.000 on the demo clip, accuracy against
    the generator's truth unchanged; the largest score difference is printed for the notes."""
    from jetson_deploy.convert.pipeline import convert
    from jetson_deploy.demo import load_spec, write_clip
    from jetson_deploy.runtime.options import OutputOptions, RunOptions
    from jetson_deploy.runtime.session import run_pipeline

    convert("jetson_deploy.demo:load_model", load_spec(), tmp_path / "b", name="shapes", version="1.0.0",
            export_program=True, build_engine=False)
    truth = write_clip(tmp_path / "clip.mp4", 150, width=320, height=240, fps=15, seed=2026)
    labels = load_spec().labels
    rows = {}
    for mode in (True, False):
        p = tmp_path / "{}.jsonl".format(mode)
        s = run_pipeline(tmp_path / "b", str(tmp_path / "clip.mp4"), str(p),
                         options=RunOptions(backend="torch", device="cuda", compile=mode, cache_dir=str(tmp_path / "e")),
                         outputs=OutputOptions(metrics_interval=0))
        rows[mode] = [json.loads(x) for x in p.read_text().splitlines()]
        assert s.engine["compile"] == ("off" if not mode else s.engine["compile"]) and s.engine.get("recompiles", 0) == 0
    assert len(rows[True]) == len(rows[False]) == 150
    agree = sum(a["label"] == b["label"] for a, b in zip(rows[True], rows[False])) / 150.0
    acc = {m: sum(r["label"] == labels[truth[r["index"]]] for r in rows[m]) / 150.0 for m in rows}
    diff = max(abs(a["score"] - b["score"]) for a, b in zip(rows[True], rows[False]))
    with capsys.disabled():
        print("\ndemo compiled vs eager: top-1 agreement {:.3f}, accuracy {:.3f} vs {:.3f}, max score diff {:.2e}".format(
            agree, acc[True], acc[False], diff))
    assert agree == 1.0 and acc[True] == acc[False]
