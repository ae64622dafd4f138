"""``jetson-deploy run`` / ``bench`` through click's CliRunner."""
import json

import pytest

pytestmark = pytest.mark.needs("onnxruntime", "cv2")

from click.testing import CliRunner  # noqa: E402
from support.runtime import make_bundle, write_color_video  # noqa: E402

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.cli import cli  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cli") / "colors-1.0.0")


def _invoke(args):
    return CliRunner(mix_stderr=False).invoke(cli, args) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames \
        else CliRunner().invoke(cli, args)


def test_run_json_on_video_with_jsonl_sink(bundle, tmp_path):
    seq = write_color_video(tmp_path / "c.avi", n=9)
    r = _invoke(["run", str(bundle), "--source", str(tmp_path / "c.avi"), "--sink", str(tmp_path / "p.jsonl"),
                 "--backend", "onnxruntime", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["frames"] == 9 and d["backend"] == "onnxruntime" and d["dropped"] == 0
    assert set(d["latency_ms"]) == {"p50", "p95", "p99"}
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [x["label"] for x in rows] == seq


def test_run_text_summary_and_max_frames(bundle, tmp_path):
    r = _invoke(["run", str(bundle), "--source", "synthetic://64x48", "--sink", "null://", "--backend", "onnxruntime",
                 "--max-frames", "7", "--interval", "0"])
    assert r.exit_code == 0, r.output
    assert "7 frames" in r.stdout and "FPS" in r.stdout


def test_run_bad_inputs_exit_2(bundle, tmp_path):
    r = _invoke(["run", str(bundle), "--source", "nosuch://x", "--backend", "onnxruntime"])
    assert r.exit_code == 2 and "Error:" in r.stderr and "scheme" in r.stderr
    r = _invoke(["run", str(bundle), "--source", "synthetic://64x48", "--sink", str(tmp_path / "a.txt")])
    assert r.exit_code == 2 and "sink" in r.stderr


def test_run_tampered_bundle_exit_1(bundle, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(str(bundle), str(bad))
    (bad / "labels.txt").write_text("x\ny\nz\nw\n")
    r = _invoke(["run", str(bad), "--source", "synthetic://64x48", "--max-frames", "1"])
    assert r.exit_code == 1 and "labels.txt" in r.stderr


def test_bench_json_side_by_side(bundle):
    r = _invoke(["bench", str(bundle), "--backend", "onnxruntime", "--iterations", "40", "--warmup", "5",
                 "--source", "synthetic://128x96", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for k in ("engine_fps", "pipeline_fps", "ratio", "latency_ms"):
        assert k in d
    assert d["engine_fps"] > 0 and d["pipeline_fps"] > 0
    assert d["ratio"] == pytest.approx(d["pipeline_fps"] / d["engine_fps"], rel=1e-3, abs=5e-5)  # ratio is rounded to 4 places
    assert set(d["latency_ms"]) == {"p50", "p95", "p99"}
    assert d["pipeline"]["frames"] == 40
    # the default three pipeline runs, an engine run before and after each
    assert len(d["engine"]["runs_fps"]) == 4 and d["repeat"] == 3 and len(d["pipeline"]["runs_fps"]) == 3


def test_bench_text(bundle):
    r = _invoke(["bench", str(bundle), "--backend", "onnxruntime", "--iterations", "20", "--warmup", "2",
                 "--source", "synthetic://64x48"])
    assert r.exit_code == 0, r.output
    assert "engine-only" in r.stdout and "pipeline" in r.stdout and "ratio" in r.stdout


def test_help_texts():
    for cmd in ("run", "bench"):
        r = _invoke([cmd, "--help"])
        assert r.exit_code == 0 and "--backend" in r.stdout


def test_run_metrics_lines_on_stderr_and_interval_0_silences(bundle):
    args = ["run", str(bundle), "--source", "synthetic://64x48@400", "--backend", "onnxruntime", "--max-frames", "40"]
    r = _invoke(args + ["--interval", "0.02"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("frames ")]
    assert lines and all("FPS | latency p50" in ln and "| dropped" in ln for ln in lines)
    r = _invoke(args + ["--interval", "0"])
    assert r.exit_code == 0 and not [ln for ln in r.stderr.splitlines() if ln.startswith("frames ")]


def test_bench_reports_the_executor_as_the_pipeline_ran_it(bundle, monkeypatch):
    """close() releases what an executor holds (the torch path's slot graphs): bench's ``executor``
    must describe it as it ran, not after it was closed."""
    from jetson_deploy.bench import run_bench
    from jetson_deploy.runtime import executors
    from jetson_deploy.runtime.executors import HostExecutor

    class Closing(HostExecutor):
        closed = False

        def close(self):
            self.closed = True
            super().close()

        def describe(self):
            d = super().describe()
            d["graphs"] = 0 if self.closed else 3
            return d

    monkeypatch.setattr(executors, "make_executor", lambda eng, spec, *a, **kw: Closing(eng, spec))
    res = run_bench(bundle, iterations=10, warmup=2, source="synthetic://64x48", options=RunOptions(backend="onnxruntime"))
    assert res["executor"]["graphs"] == 3


def test_bench_repeats_reports_the_median_and_warns_on_spread(bundle, caplog):
    """Issue #27 item 7: three identical CPU runs once gave ratios 1.20, 0.64, 0.94 with no spread
    shown.  ``bench --repeat N`` runs the pipeline N times between engine runs, reports the median run
    with every run's FPS, and warns when they differ by more than 10% of the median."""
    from jetson_deploy import bench
    from jetson_deploy.runtime.summary import RunSummary

    res = bench.run_bench(bundle, iterations=10, warmup=2, source="synthetic://64x48", repeat=3,
                          options=RunOptions(backend="onnxruntime"))
    assert res["repeat"] == 3 and len(res["pipeline"]["runs_fps"]) == 3 and len(res["engine"]["runs_fps"]) == 4
    runs = sorted(res["pipeline"]["runs_fps"])
    assert res["pipeline_fps"] == runs[1]  # the median run
    assert res["spread"]["pipeline_fps"] == pytest.approx((runs[2] - runs[0]) / runs[1], abs=1e-3)

    class Session:
        backend, why = "onnxruntime", "test"
        executor = bundle_obj = None
        bundle = type("B", (), {"source": "b"})()

    r = bench.Runs()
    r.engine = [{"fps": 100.0, "latency_ms": {}}] * 4
    r.model = list(r.engine)
    r.pipeline = [RunSummary(fps=f, executor={"executor": "host"}) for f in (90.0, 60.0, 92.0)]
    out = bench._report(Session(), "s", 10, None, r)
    assert out["pipeline_fps"] == 90.0 and out["spread"]["pipeline_fps"] == pytest.approx(32 / 90, abs=1e-3)
    assert "differ by 36%" in out["spread_warning"]
    assert any("differ by" in rec.getMessage() for rec in caplog.records)
    r.pipeline = [RunSummary(fps=f, executor={"executor": "host"}) for f in (90.0, 88.0, 92.0)]
    assert "spread_warning" not in bench._report(Session(), "s", 10, None, r)


@pytest.mark.needs("onnx")
def test_onnxruntime_threads_follow_the_call_on_a_small_machine(tmp_path, monkeypatch):
    """Issue #27 item 7: on 2 CPUs a short call (the demo model) ran its pipeline 1.6x faster on one
    intra-op thread, a long one (ResNet-18) 1.6x faster on two: the default picks by the call.  The
    clock the choice reads is the test's (each call "takes" what the test says), so load cannot sway it."""
    from support.runtime import make_bundle

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine, onnxruntime as ortb

    class Clock:
        def __init__(self, call_s):
            self.t, self.call_s, self.reads = 0.0, call_s, 0

        def __call__(self):
            self.reads += 1
            if self.reads % 2 == 0:  # every second read ends a call
                self.t += self.call_s
            return self.t

    monkeypatch.setattr(ortb.os, "cpu_count", lambda: 2)
    b = open_bundle(make_bundle(tmp_path / "b"))
    monkeypatch.setattr(ortb.time, "perf_counter", Clock(0.0002))
    with create_engine(b, RunOptions(backend="onnxruntime")) as e:
        assert e.threads == 1 and e.describe()["threads_chosen"].startswith("1 thread: a 0.20 ms call")
    monkeypatch.setattr(ortb.time, "perf_counter", Clock(0.005))
    with create_engine(b, RunOptions(backend="onnxruntime")) as e:
        assert e.threads == 2 and e.describe()["threads_chosen"].startswith("2 threads: a 5.0 ms call")
    with create_engine(b, RunOptions(backend="onnxruntime", threads=2)) as e:  # asked for: kept
        assert e.threads == 2 and e.describe()["threads_chosen"] == ""
    monkeypatch.setattr(ortb.os, "cpu_count", lambda: 16)
    with create_engine(b, RunOptions(backend="onnxruntime")) as e:  # a big machine: all but two
        assert e.threads == 14
