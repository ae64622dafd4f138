"""Parity never passes an ONNX output holding NaN or infinity (an FP16 overflow, a broken export):
NaN compares as 'not greater' with everything, so without its own check it would look like 0 error."""
import numpy as np
import pytest

from jetson_deploy.convert.parity import compare, failure_line


def _batches(bad_value, where):
    rng = np.random.RandomState(0)
    refs, gots = [], []
    for b in range(2):
        r = rng.standard_normal((2, 5)).astype(np.float32)
        g = r + np.float32(1e-6)
        if b == 1:
            g[where] = bad_value
        refs.append({"logits": r})
        gots.append({"logits": g})
    return refs, gots


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (1, 3)])
def test_a_non_finite_onnx_output_fails_parity(bad, where):
    refs, gots = _batches(bad, where)
    res = compare(refs, gots, ["logits"], "classify", tolerance=1e-3)
    assert res["passed"] is False and res["outputs"]["logits"]["passed"] is False
    assert "logits" in failure_line(res, "ONNX")


def test_the_same_outputs_all_finite_pass():
    refs, gots = _batches(0.0, (0, 0))
    gots[1]["logits"][0, 0] = refs[1]["logits"][0, 0]
    res = compare(refs, gots, ["logits"], "classify", tolerance=1e-3)
    assert res["passed"] is True and res["top1_agreement"] == 1.0
