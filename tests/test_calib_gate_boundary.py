"""The INT8 agreement gate at its boundary: just below the threshold fails, at/above passes;
a non-default --min-agreement reaches the gate through convert and the CLI."""
from types import SimpleNamespace

import numpy as np
import pytest

from jetson_deploy.calibration import gate as gate_mod


class _Set:
    input_name = "input"
    num_holdout = 100

    def __init__(self, n: int) -> None:
        self.x = np.arange(n, dtype=np.float32).reshape(n, 1)


def _gate(n: int, disagree: int, monkeypatch) -> "gate_mod.Gate":
    """A Gate over ``n`` samples whose INT8 model flips the top-1 of exactly ``disagree`` of them."""
    g = gate_mod.Gate.__new__(gate_mod.Gate)
    g.cs, g.task, g.on, g.max_samples, g.fixed_batch, g.batch = _Set(n), "classify", "holdout", 10 ** 6, None, n
    g._ref = None
    logits = np.tile(np.array([[3.0, 1.0, 0.0]], np.float32), (n, 1))
    flipped = logits.copy()
    flipped[:disagree] = [[1.0, 3.0, 0.0]]
    g._fp32 = SimpleNamespace(run=lambda _o, feeds: [logits[: len(feeds["input"])]])
    monkeypatch.setattr(g, "_batches", lambda: iter([g.cs.x]))
    monkeypatch.setattr(gate_mod, "_session", lambda _p: SimpleNamespace(run=lambda _o, feeds: [flipped[: len(feeds["input"])]]))
    return g


@pytest.mark.parametrize("disagree,threshold,passed", [
    (1, 0.99, True),     # 0.99 == threshold: passes
    (2, 0.99, False),    # 0.98: one step below
    (4, 0.99, False),    # 0.96: well inside a 0.05 slack
    (0, 1.0, True),
    (1, 1.0, False),
    (10, 0.9, True),
    (11, 0.9, False),
    (30, 0.75, False),   # 0.70 against a non-default threshold
    (25, 0.75, True),
])
def test_gate_boundary(monkeypatch, disagree, threshold, passed) -> None:
    res = _gate(100, disagree, monkeypatch).evaluate("int8.onnx", threshold)
    assert res["value"] == pytest.approx((100 - disagree) / 100.0)
    assert res["passed"] is passed, res
    assert res["threshold"] == threshold and res["disagreements"] == disagree


def test_gate_failure_follows_the_record() -> None:
    from jetson_deploy.calibration.quantize import gate_failure

    rec = SimpleNamespace(passed=False, agreement={"metric": "top1_agreement", "value": 0.98, "samples": 100})
    assert "below --min-agreement 0.99" in str(gate_failure(rec, 0.99))
    assert gate_failure(SimpleNamespace(passed=True, agreement={}), 0.99) is None
