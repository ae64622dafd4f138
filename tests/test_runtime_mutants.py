"""These tests kill mutmut survivors in jetson_deploy/runtime/ (run kept in /tmp/jd-mutmut-runtime-100).

Each test names the mutant(s) it kills in its docstring. They are fast, CPU-only and use no
wall-clock assumptions: what they check is the behaviour the mutant changed, on data made here.
Survivors that are recorded rather than killed are listed in docs/mutmut_equivalents.txt.
"""
from typing import Any

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.runtime.batching import SourceState, engine_batch, resolve_batch, split_rows
from jetson_deploy.runtime.engine import Engine, TensorInfo
from jetson_deploy.runtime.metrics import Metrics
from jetson_deploy.runtime.options import RunOptions
from jetson_deploy.runtime.postprocess import Postprocessor
from jetson_deploy.spec import ModelSpec

LABELS = ["a", "b", "c"]


def _spec(task: str = "classify", size=(64, 64), keep_aspect: bool = False, **extra: Any) -> ModelSpec:
    d = {
        "task": task,
        "input": {"name": "input", "shape": [1, 3, size[1], size[0]], "dtype": "float32", "color": "rgb"},
        "preprocess": {"resize": list(size), "keep_aspect": keep_aspect},
        "outputs": ["out"],
        "labels": LABELS,
    }
    d.update(extra)
    return ModelSpec.from_dict(d)


# ---- batching ------------------------------------------------------------------------------
def test_split_rows_shares_an_output_whose_leading_dim_is_not_the_batch():
    """Kills batching.x_split_rows__mutmut_7 (``and`` -> ``or``: every array would be sliced)."""
    outs = {"logits": np.arange(8, dtype=np.float32).reshape(2, 4), "anchors": np.arange(5, dtype=np.float32)}
    per = split_rows(outs, rows=2, batch=2)
    assert per[1]["logits"].tolist() == [[4.0, 5.0, 6.0, 7.0]]
    # (5,) has no batch axis: each row gets all of it, not a one-element slice
    assert per[0]["anchors"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert per[1]["anchors"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


class _ProfiledEngine:
    """A dynamic-batch engine whose optimization profile allows at most 4 rows."""

    def __init__(self) -> None:
        self.inputs = [TensorInfo("input", (-1, 3, 8, 8), np.dtype(np.float32))]
        self.asked = []

    def profile_shapes(self, name: str):
        self.asked.append(name)
        return ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))


def test_dynamic_batch_is_capped_at_the_profile_maximum():
    """Kills batching.x_engine_batch__mutmut_32 (the profile is never asked: 8 sources -> 8 rows)."""
    eng = _ProfiledEngine()
    assert engine_batch(eng) == (0, True, 4)
    assert eng.asked == ["input"]
    assert resolve_batch(eng, 8) == (4, True)
    assert resolve_batch(eng, 3) == (3, True)


def test_source_state_to_dict_without_a_capture_thread():
    """Kills batching.xǁSourceStateǁto_dict__mutmut_33 (``cap.captured`` read when cap is None)."""

    class _Src:
        uri = "file:///clip.mp4"

    d = SourceState(2, _Src()).to_dict()
    assert (d["index"], d["source"], d["frames"], d["captured"], d["dropped"], d["end_reason"]) == (
        2, "file:///clip.mp4", 0, 0, 0, "")


# ---- engine --------------------------------------------------------------------------------
def test_engine_describe_names_inputs_and_outputs():
    """Kills engine.xǁEngineǁdescribe__mutmut_6 (the inputs' "name" key renamed "NAME")."""
    e = Engine()
    e.inputs = [TensorInfo("input", (1, 3, 8, 8), np.dtype(np.float32))]
    e.outputs = [TensorInfo("logits", (1, 4), np.dtype(np.float16))]
    d = e.describe()
    assert d["inputs"] == [{"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert d["outputs"] == [{"name": "logits", "shape": [1, 4], "dtype": "float16"}]


# ---- metrics -------------------------------------------------------------------------------
def test_metrics_summary_before_any_frame():
    """Kills metrics.xǁMetricsǁ__init____mutmut_15 (t_last None: elapsed fails before the first frame)."""
    m = Metrics(interval=0.0)
    s = m.summary()
    assert (s["frames"], s["fps"], s["seconds"], s["dropped"]) == (0, 0.0, 0.0, 0)


def test_metrics_summary_seconds_to_four_decimals():
    """Kills metrics.xǁMetricsǁsummary__mutmut_16 (seconds rounded to 5 decimals)."""
    m = Metrics(interval=0.0)
    m.add(5.0, now=m.t_start + 0.123456)
    s = m.summary()
    assert s["frames"] == 1 and s["seconds"] == 0.1235


# ---- options -------------------------------------------------------------------------------
def test_depth_one_is_allowed_and_zero_is_not():
    """Kills options.xǁRunOptionsǁ__post_init____mutmut_39 (``< 1`` -> ``<= 1``: depth 1 refused)."""
    assert RunOptions(depth=1).depth == 1
    with pytest.raises(BadInput, match="at least 1 frame in flight"):
        RunOptions(depth=0)


# ---- postprocess ---------------------------------------------------------------------------
def test_detect_boxes_clipped_to_the_source_width():
    """Kills postprocess.xǁPostprocessorǁ_to_source__mutmut_52 (x no longer clipped at the frame width)."""
    pp = Postprocessor(_spec("detect"))
    boxes = np.array([[-8.0, -4.0, 80.0, 70.0], [10.0, 10.0, 20.0, 20.0]], np.float32)
    out = pp._to_source(boxes, (128, 32))  # 64x64 input -> 2x wider, half as tall source
    assert out.tolist() == [[0.0, 0.0, 128.0, 32.0], [20.0, 5.0, 40.0, 10.0]]
