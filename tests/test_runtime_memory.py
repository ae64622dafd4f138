"""Memory paths and the pycuda executor, on the pycuda double (no GPU).

The double's ``driver._double.syncs`` counts every host synchronisation it sees (event, stream
and context ``synchronize``); the executor's :class:`SyncCounter` must account for all of them,
and inside the loop only waits on the oldest in-flight frame may happen.
"""
import ctypes
import json
from typing import Any, Dict

import numpy as np
import pytest

pytestmark = pytest.mark.needs("onnxruntime", "cv2")

from support.runtime import PointerEngine, make_bundle, write_color_video  # noqa: E402
from doubles import pycuda_double  # noqa: E402

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.runtime.engine import Engine, TensorInfo  # noqa: E402
from jetson_deploy.runtime.memory import (  # noqa: E402
    NumpyAllocator,
    PycudaAllocator,
    SyncCounter,
    allocator_for,
    make_context,
)


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "b")


def _engine(bundle):
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    return PointerEngine(create_engine(open_bundle(bundle), RunOptions(backend="onnxruntime")))


def _run(bundle, tmp_path, memory, busy_gpu=False, monkeypatch=None, integrated=True):
    drv = pycuda_double.install(monkeypatch, integrated=integrated)
    if busy_gpu:  # events never report done by themselves: the ring fills and the loop must wait
        monkeypatch.setattr(drv.Event, "query", lambda self: False)
    htod = []
    real = drv.memcpy_htod_async
    drv.memcpy_htod_async = lambda d, s, stream=None: (htod.append(1), real(d, s, stream))
    ctx = make_context(cuda=drv)
    from jetson_deploy.runtime.session import run_pipeline

    seq = write_color_video(tmp_path / "c.avi", n=12)
    eng = _engine(bundle)
    try:
        s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), engine=eng, options=RunOptions(memory=memory, depth=3))
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    return s, rows, seq, drv, eng, htod


def test_pycuda_pinned_path_results_and_no_syncs_when_gpu_keeps_up(bundle, tmp_path, monkeypatch):
    s, rows, seq, drv, eng, htod = _run(bundle, tmp_path, "pycuda-pinned", monkeypatch=monkeypatch, integrated=False)
    assert [r["label"] for r in rows] == seq and s.frames == 12
    assert s.executor["executor"] == "pycuda" and s.executor["memory"] == "pycuda-pinned"
    assert len(htod) == 12  # one async H2D per frame on the copy stream
    assert s.syncs["in_loop"] == {}  # events were always done when queried: nothing blocked
    assert drv._double.syncs == s.syncs["total"]  # every sync the driver saw went through the counter


def test_pycuda_loop_waits_only_on_oldest_frame_when_ring_full(bundle, tmp_path, monkeypatch):
    s, rows, seq, drv, eng, htod = _run(bundle, tmp_path, "pycuda-pinned", busy_gpu=True, monkeypatch=monkeypatch,
                                        integrated=False)
    assert [r["label"] for r in rows] == seq
    in_loop = s.syncs["in_loop"]
    assert set(in_loop) == {"event.synchronize"}
    assert in_loop["event.synchronize"] == 12 - 3  # one wait per frame once the 3-deep ring is full
    assert s.syncs["total"] == 12  # + the drain of the last 3 after the loop
    assert drv._double.syncs == 12  # no stream/context synchronisation anywhere


def test_pycuda_mapped_zero_copy(bundle, tmp_path, monkeypatch):
    s, rows, seq, drv, eng, htod = _run(bundle, tmp_path, "pycuda", monkeypatch=monkeypatch, integrated=True)
    assert [r["label"] for r in rows] == seq
    assert s.executor["memory"] == "pycuda-mapped"  # auto on an integrated GPU
    assert htod == []  # zero copy: no H2D at all, the engine read the mapped host buffers
    assert len(set(eng.pointers)) >= 2  # pooled input buffers rotate


def test_allocators(monkeypatch):
    drv = pycuda_double.install(monkeypatch)
    ctx = make_context(cuda=drv)
    try:
        m = PycudaAllocator(mapped=True, cuda=drv).empty((2, 3), np.float32)
        assert m.mapped and m.pinned and isinstance(m.device_ptr, int) and m.array.shape == (2, 3)
        m.array[...] = 5
        assert np.frombuffer((ctypes.c_float * 6).from_address(m.device_ptr), np.float32).tolist() == [5.0] * 6
        p = PycudaAllocator(mapped=False, cuda=drv).empty((4,), np.uint8)
        assert p.pinned and not p.mapped and p.device_ptr is None
    finally:
        ctx.pop()
    n = NumpyAllocator().empty((3, 2), np.uint8)
    assert not n.pinned and n.array.shape == (3, 2)
    assert allocator_for("numpy").kind == "numpy"
    with pytest.raises(Exception, match="memory kind"):
        allocator_for("bogus")


@pytest.mark.needs("torch")
def test_torch_pinned_allocator():
    import torch
    from jetson_deploy.runtime.memory import TorchPinnedAllocator

    if not torch.cuda.is_available():
        pytest.skip("pinned memory needs a CUDA driver")
    b = TorchPinnedAllocator().empty((2, 2), np.uint8)
    assert b.tensor.is_pinned() and np.shares_memory(b.array, b.tensor.numpy())


def test_sync_counter_windows():
    c = SyncCounter()
    c.hit("event.synchronize")
    c.inside_loop = True
    c.hit("event.synchronize")
    c.hit("stream.synchronize")
    c.inside_loop = False
    assert c.total == 3 and c.loop_total == 2 and c.to_dict()["in_loop"] == {"event.synchronize": 1, "stream.synchronize": 1}

