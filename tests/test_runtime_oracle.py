"""Runtime preprocessing paths against the independent oracle (tests/support/oracle.py):
the host executor writing into its pooled buffers, and the torch (GPU-capable) preprocessing,
both with per-channel mean/std all different and both layouts."""
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from support import oracle
from test_core_oracle import frame, make_spec

GRID = list(itertools.product(["rgb", "bgr", "gray"], ["nchw", "nhwc"], ["float32", "float16", "uint8"], [False, True]))
IDS = ["-".join(map(str, g)) for g in GRID]


class _Engine:
    """Just enough engine for HostExecutor: one input, and records what it was fed."""

    def __init__(self, spec) -> None:
        from jetson_deploy.preprocess import numpy_dtype

        self.inputs = [SimpleNamespace(name=spec.input_name, shape=tuple(spec.shape), dtype=numpy_dtype(spec))]
        self.fed = []

    def infer(self, feeds):
        self.fed.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return {"output": np.zeros((1, 1), np.float32)}


@pytest.mark.needs("cv2")
@pytest.mark.parametrize("color,layout,dtype,keep", GRID, ids=IDS)
def test_host_executor_feeds_what_the_oracle_says(color, layout, dtype, keep) -> None:
    from jetson_deploy.runtime.executors import HostExecutor

    spec = make_spec(color, layout, dtype, keep_aspect=keep)
    eng = _Engine(spec)
    ex = HostExecutor(eng, spec, pool_size=2)
    for seed in (1, 2, 3):  # pooled buffers are reused: each frame must overwrite all of one
        img = frame(36, 50, seed=seed)
        f = SimpleNamespace(image=img, data=None)
        ex.submit(0, f)
        fed = eng.fed[-1][spec.input_name]
        assert fed.shape == tuple(spec.shape)
        oracle.assert_matches(fed[0], img, spec, lsb=2.0 if color == "gray" else 1.0)


@pytest.mark.needs("torch")
@pytest.mark.parametrize("color,layout,dtype,keep", GRID, ids=IDS)
def test_torch_preprocess_matches_the_oracle(color, layout, dtype, keep) -> None:
    import torch

    from jetson_deploy.runtime.torch_preprocess import TorchPreprocess

    spec = make_spec(color, layout, dtype, keep_aspect=keep)
    pre = TorchPreprocess(spec, torch.device("cpu"))
    for src in [(36, 50), (13, 17), (24, 40)]:
        img = frame(src[0], src[1], seed=sum(src))
        got = pre(torch.from_numpy(img)).float().numpy()
        assert got.shape == tuple(spec.shape)
        oracle.assert_matches(got[0], img, spec, lsb=2.0 if color == "gray" else 1.0, exact_fraction=0.6)
