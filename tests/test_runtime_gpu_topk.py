"""The fused softmax + top-k kernel (runtime/gpu_topk.py).

CPU: its numpy reference against an independent float64 brute force (ties planted where index
order decides) and against the host ``Postprocessor``; the torch CUDA executor's reduction
routing with torch on the CPU.  CUDA (skipped without a GPU and cupy): the kernel against the
reference, writing into a pinned-host UVA view, inside a CUDA graph replayed with new logits, and
the executor end to end against its torch-ops path and the raw logits.
"""
from typing import Any, List, Optional

import numpy as np
import pytest

from support import optional_module

torch = optional_module("torch")

from jetson_deploy.runtime.gpu_topk import (  # noqa: E402
    MAX_K,
    block_threads,
    kernel_source,
    softmax_topk_reference,
)
from jetson_deploy.runtime.postprocess import Postprocessor  # noqa: E402
from jetson_deploy.spec import ModelSpec  # noqa: E402

NS = (1, 4, 10, 1000, 1001)
KS = (1, 5)
DTYPES = ("float16", "float32")
BATCHES = (1, 3)
GRID = [(n, k, d, b) for n in NS for k in KS for d in DTYPES for b in BATCHES]


def _logits(n: int, rows: int, dtype: str, seed: int) -> "np.ndarray":
    """Random logits with ties planted where index order decides: the row max three times (k=1
    must take the lowest of them) and the third value twice (for k=5 the pair straddles rank 5)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(rows, n).astype(np.float32) * np.float32(3)
    for r in range(rows):
        if n < 4:
            continue
        order = np.argsort(-x[r], kind="stable")
        if n < 8:
            x[r, order[1:3]] = x[r, order[0]]
            continue
        spots = rs.choice(np.setdiff1d(np.arange(n), order[:3]), size=3, replace=False)
        x[r, spots[:2]] = x[r, order[0]]
        x[r, spots[2]] = x[r, order[2]]
    return x.astype(dtype)


def _brute_force(logits: "np.ndarray", k: int) -> "np.ndarray":
    """Top-k of a float64 softmax, ranked by (probability descending, index ascending)."""
    x = np.asarray(logits, dtype=np.float64).reshape(-1, np.asarray(logits).shape[-1])
    out = np.zeros((x.shape[0], 2, k), np.float64)
    out[:, 1] = -1
    for b, row in enumerate(x):
        p = np.exp(row - row.max())
        p /= p.sum()
        ids = np.lexsort((np.arange(row.size), -p))[:k]
        out[b, 0, :ids.size], out[b, 1, :ids.size] = p[ids], ids
    return out


def _assert_same_topk(got: "np.ndarray", want: "np.ndarray", rtol: float = 1e-6) -> None:
    """Exact class ids (padding -1 included), probabilities within ``rtol``."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got[:, 1], want[:, 1])
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=rtol, atol=0)


def _spec(n: int, batch: int = 1) -> "ModelSpec":
    return ModelSpec.from_dict({
        "task": "classify",
        "input": {"name": "input", "shape": [batch, 3, 16, 16], "dtype": "float32", "color": "bgr"},
        "preprocess": {"resize": [16, 16], "keep_aspect": False, "scale": 1 / 255.0, "mean": [0.5] * 3,
                       "std": [0.25] * 3},
        "outputs": ["logits"], "labels": ["c{}".format(i) for i in range(n)]})


# ---------------------------------------------------------------------------------------------
# CPU: the reference maths
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,dtype,rows", GRID)
def test_reference_matches_float64_brute_force(n, k, dtype, rows):
    x = _logits(n, rows, dtype, seed=n * 10 + k + rows)
    ref = softmax_topk_reference(x, k)
    want = _brute_force(x, k)
    assert ref.dtype == np.float32 and ref.shape == (rows, 2, k)
    _assert_same_topk(ref, want)
    real = min(n, k)
    assert (ref[:, 1, :real] >= 0).all() and (ref[:, 0, :real] > 0).all()
    assert (ref[:, 0, real:] == 0).all() and (ref[:, 1, real:] == -1).all()  # N < k: padding
    if n >= 4:  # the data really has ties at the top, so index order is what is tested
        assert ((x == x.max(axis=1, keepdims=True)).sum(axis=1) >= 3).all()


def test_reference_ties_go_to_the_lowest_index():
    x = np.array([[0.5, 2.0, 1.0, 2.0, 2.0, 1.0]], np.float32)
    ref = softmax_topk_reference(x, 5)
    assert ref[0, 1].tolist() == [1.0, 3.0, 4.0, 2.0, 5.0]
    assert ref[0, 0, 0] == ref[0, 0, 1] == ref[0, 0, 2] and ref[0, 0, 3] == ref[0, 0, 4] < ref[0, 0, 0]


def test_reference_one_dimensional_padding_and_nan():
    ref = softmax_topk_reference(np.array([3.0, -1.0], np.float16), 4)
    assert ref.shape == (1, 2, 4)
    assert ref[0, 1].tolist() == [0.0, 1.0, -1.0, -1.0] and ref[0, 0, 2:].tolist() == [0.0, 0.0]
    assert abs(float(ref[0, 0, :2].sum()) - 1.0) < 1e-6
    # a NaN or +inf logit makes every probability NaN: no result rather than a made-up one (the
    # kernel too); -inf is just probability 0
    bad = softmax_topk_reference(np.array([[1.0, np.nan, 0.0], [1.0, 0.0, 2.0], [np.inf, 0.0, 1.0],
                                           [-np.inf, 0.0, -np.inf]], np.float32), 3)
    for row in (0, 2):
        assert bad[row, 1].tolist() == [-1.0] * 3 and bad[row, 0].tolist() == [0.0] * 3
    assert bad[1, 1].tolist() == [2.0, 0.0, 1.0]
    assert bad[3, 1].tolist() == [1.0, 0.0, 2.0] and bad[3, 0].tolist() == [1.0, 0.0, 0.0]


def test_reference_ids_are_exact_as_float32():
    x = np.zeros((1, 21843), np.float32)
    x[0, 21842], x[0, 16777] = 5.0, 4.0
    assert softmax_topk_reference(x, 2)[0, 1].tolist() == [21842.0, 16777.0]


@pytest.mark.parametrize("n,k", [(4, 5), (4, 2), (1000, 5), (1000, 1)])
def test_reference_agrees_with_the_host_postprocessor(n, k):
    """The packed (2, k) result through ``Postprocessor.classify``'s ``topk`` branch gives the
    labels and scores the host computes from the raw logits (no ties here: the host's large-N
    path uses argpartition, whose order among equal values is not defined)."""
    x = np.random.RandomState(n + k).randn(1, n).astype(np.float32) * np.float32(3)
    assert len(np.unique(x)) == n
    pp = Postprocessor(_spec(n), topk=k)
    packed = softmax_topk_reference(x, min(k, n))[0]
    folded, host = pp.classify({"topk": packed}), pp.classify({"logits": x})
    assert [l for l, _ in folded.topk] == [l for l, _ in host.topk]
    assert len(folded.topk) == min(k, n) and folded.class_id == host.class_id and folded.label == host.label
    np.testing.assert_allclose([s for _, s in folded.topk], [s for _, s in host.topk], rtol=0, atol=1e-6)


def test_kernel_source_and_block_size():
    for dt, kind, ctype in (("float16", 1, "__half"), ("float32", 0, "float")):
        src = kernel_source(dt)
        assert "#define IN_KIND {}\n#define IN_T {}\n".format(kind, ctype) in src and "jd_softmax_topk" in src
    with pytest.raises(ValueError, match="bfloat16"):
        kernel_source("bfloat16")
    assert [block_threads(n) for n in (1, 4, 256, 1000, 1001, 4096, 21843)] == [64, 64, 64, 256, 256, 1024, 1024]
    assert MAX_K == 32


# ---------------------------------------------------------------------------------------------
# CPU: the torch CUDA executor's reduction routing (torch on the CPU: torch ops run)
# ---------------------------------------------------------------------------------------------
class _CpuEngine:
    """Just what TorchCudaExecutor's constructor and ``_post`` read."""

    device = "cpu"
    inputs: "List[Any]" = []


def _cpu_executor(n: int, batch: int = 1) -> Any:
    from jetson_deploy.runtime.executors.torch_cuda import TorchCudaExecutor

    ex = TorchCudaExecutor(_CpuEngine(), _spec(n, batch), topk=5, mapped_in=False, batch=batch)
    ex._topk_ops, ex._post_into = {}, None  # what setup() starts from
    return ex


@pytest.mark.needs("torch")
@pytest.mark.parametrize("dtype,batch", [("float32", 1), ("float16", 1), ("float32", 3)])
def test_executor_torch_ops_fallback_has_the_kernel_layout(dtype, batch):
    x = np.random.RandomState(batch).randn(batch, 1000).astype(dtype) * 3
    ex = _cpu_executor(1000, batch)
    got = ex._post({"logits": torch.from_numpy(x)})["topk"].numpy()
    assert got.dtype == np.float32 and got.shape == ((2, 5) if batch == 1 else (batch, 2, 5))
    _assert_same_topk(got.reshape(batch, 2, 5), softmax_topk_reference(x, 5), rtol=2e-6)
    assert ex.describe()["post"] == "torch-ops"


class _RecordingOp:
    """Stands in for TorchSoftmaxTopk: the reference maths, recording where it was asked to write."""

    kind = "stand-in kernel"

    def __init__(self) -> None:
        self.outs: "List[Optional[Any]]" = []

    def __call__(self, logits: Any, out: Any = None) -> Any:
        self.outs.append(out)
        res = torch.from_numpy(softmax_topk_reference(logits.float().numpy(), 5)[0])
        if out is None:
            return res
        out.copy_(res)
        return out


@pytest.mark.needs("torch")
def test_executor_routes_classify_through_the_kernel_and_into_the_host_view():
    ex = _cpu_executor(1000)
    x = torch.from_numpy(np.random.RandomState(0).randn(1, 1000).astype(np.float32))
    op = _RecordingOp()
    ex._topk_ops[(str(x.dtype), tuple(x.shape), str(x.device))] = op
    first = ex._post({"logits": x})["topk"]
    host = torch.zeros((2, 5), dtype=torch.float32)
    ex._post_into = {"topk": host}  # as _capture sets it for a slot graph with mapped_out
    second = ex._post({"logits": x})["topk"]
    assert len(op.outs) == 2 and op.outs[0] is None and op.outs[1] is host and second is host
    _assert_same_topk(host.numpy()[None], first.numpy()[None])
    assert ex.describe()["post"] == "stand-in kernel"
    ex.fold_post = False
    assert ex.describe()["post"] == "none"


# ---------------------------------------------------------------------------------------------
# CUDA: the kernel itself (a GPU session; CI has no GPU)
# ---------------------------------------------------------------------------------------------
def _uva_view(host: Any) -> Any:
    """A device tensor over pinned host memory, as TorchCudaExecutor._capture makes them."""
    from jetson_deploy.runtime.backends.torch import _DevicePointer

    return torch.as_tensor(_DevicePointer(host.data_ptr(), tuple(host.shape), np.float32), device="cuda")


@pytest.mark.needs("cuda", "cupy", "torch")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_kernel_matches_reference(dtype):
    from jetson_deploy.runtime.gpu_topk import TorchSoftmaxTopk

    dev = torch.device("cuda")
    for n in NS + (21843,):
        for k in KS + (MAX_K,):
            for rows in BATCHES:
                x = _logits(n, rows, dtype, seed=n * 10 + k + rows)
                op = TorchSoftmaxTopk(dev, getattr(torch, dtype), k, n, rows)
                got = op(torch.from_numpy(x).to(dev))
                assert got.dtype == torch.float32 and tuple(got.shape) == ((2, k) if rows == 1 else (rows, 2, k))
                _assert_same_topk(got.cpu().numpy().reshape(rows, 2, k), softmax_topk_reference(x, k))
    # a NaN / +inf logit: that row has no result, the others are untouched; -inf is probability 0
    x = _logits(10, 4, dtype, seed=1)
    x[1, 4], x[2, 7], x[3, [0, 5]] = np.nan, np.inf, -np.inf
    got = TorchSoftmaxTopk(dev, getattr(torch, dtype), 5, 10, 4)(torch.from_numpy(x).to(dev)).cpu().numpy()
    want = softmax_topk_reference(x, 5)
    assert (want[1:3, 1] == -1).all() and (want[3, 1] >= 0).all()
    _assert_same_topk(got, want)
    # rows that already hold probabilities (a model ending in Softmax) are ranked as they are
    for n in (3, 1000):
        z = _logits(n, 3, "float32", seed=n).astype(np.float64)
        pr = np.exp(z - z.max(axis=1, keepdims=True))
        pr = (pr / pr.sum(axis=1, keepdims=True)).astype(dtype)
        pr[0, :] = 0
        pr[0, :3] = [0.7, 0.2, 0.1]
        want = softmax_topk_reference(pr, 3)
        assert want[0, 0, 0] == np.float32(np.asarray(0.7, dtype))  # not softmax(0.7, 0.2, 0.1) = 0.464
        got = TorchSoftmaxTopk(dev, getattr(torch, dtype), 3, n, 3)(torch.from_numpy(pr).to(dev)).cpu().numpy()
        _assert_same_topk(got, want)


@pytest.mark.needs("cuda", "cupy", "torch")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_kernel_writes_into_pinned_host_memory(dtype):
    """The UVA view of a pinned buffer as ``out``: the result lands in host memory, exactly the
    2k floats per row (a guard band after them stays as it was)."""
    from jetson_deploy.runtime.gpu_topk import TorchSoftmaxTopk

    for n, k, rows in ((1000, 5, 1), (1001, 5, 3), (4, 5, 1), (21843, MAX_K, 3)):
        buf = torch.full((rows * 2 * k + 16,), 7.0, dtype=torch.float32, pin_memory=True)
        host = buf[:rows * 2 * k].view((2, k) if rows == 1 else (rows, 2, k))
        x = _logits(n, rows, dtype, seed=n + k)
        op = TorchSoftmaxTopk(torch.device("cuda"), getattr(torch, dtype), k, n, rows)
        res = op(torch.from_numpy(x).cuda(), out=_uva_view(host))
        assert res.data_ptr() == host.data_ptr()
        torch.cuda.synchronize()
        _assert_same_topk(host.numpy().reshape(rows, 2, k), softmax_topk_reference(x, k))
        assert (buf[rows * 2 * k:].numpy() == 7.0).all()


@pytest.mark.needs("cuda", "cupy", "torch")
@pytest.mark.parametrize("dtype,rows", [("float16", 1), ("float32", 1), ("float16", 3)])
def test_cuda_kernel_in_a_cuda_graph_replays_with_new_logits(dtype, rows):
    """Captured once (into a pinned host view and into a device tensor of the graph's pool),
    replayed on new logits copied into the static input: each replay's result is the new one."""
    from jetson_deploy.runtime.gpu_topk import TorchSoftmaxTopk

    n, k = 1000, 5
    dev = torch.device("cuda")
    op = TorchSoftmaxTopk(dev, getattr(torch, dtype), k, n, rows)
    static = torch.zeros((rows, n), dtype=getattr(torch, dtype), device=dev)
    host = torch.zeros((rows, 2, k), dtype=torch.float32, pin_memory=True)
    view = _uva_view(host)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch's graph docs ask
        op(static, out=view)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        op(static, out=view)
        dev_res = op(static)
    for seed in (11, 12, 13):
        x = _logits(n, rows, dtype, seed=seed)
        static.copy_(torch.from_numpy(x))
        g.replay()
        torch.cuda.synchronize()
        want = softmax_topk_reference(x, k)
        _assert_same_topk(host.numpy(), want)
        _assert_same_topk(dev_res.cpu().numpy().reshape(rows, 2, k), want)


# ---------------------------------------------------------------------------------------------
# CUDA: the torch CUDA executor end to end
# ---------------------------------------------------------------------------------------------
def _pointwise_model(n: int) -> Any:
    """(B,3,H,W) -> (B,n) logits from the top-left pixel by pointwise ops only, so every
    executor computes bit-identical logits (no reduction order to differ)."""

    class Pointwise(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.w = torch.nn.Parameter(torch.randn(3, n, generator=g) * 4)
            self.b = torch.nn.Parameter(torch.randn(n, generator=g))

        def forward(self, x: Any) -> Any:
            c = x[:, :, 0, 0]
            return c[:, 0:1] * self.w[0] + c[:, 1:2] * self.w[1] + c[:, 2:3] * self.w[2] + self.b

    return Pointwise().eval()


def _run_executor(engine: Any, n: int, batch: int, frames: "List[Any]", **kw: Any) -> "Any":
    """Every frame through a fresh executor; returns (per-submission outputs, describe())."""
    from jetson_deploy.runtime.executors.torch_cuda import TorchCudaExecutor

    post_impl = kw.pop("post_impl", None)
    ex = TorchCudaExecutor(engine, _spec(n, batch), depth=3, topk=5, mapped_in=False, batch=batch, **kw)
    if post_impl:
        ex.post_impl = post_impl
    ex.setup(tuple(frames[0].image.shape))
    got = []
    for i in range(0, len(frames), batch):
        slot = (i // batch) % ex.depth
        if batch > 1:
            ex.submit_batch(slot, frames[i:i + batch])
        else:
            ex.submit(slot, frames[i])
        ex.wait(slot)
        got.append({name: v.copy() for name, v in ex.outputs(slot).items()})
    d = ex.describe()
    if d["mapped_out"] and post_impl != "torch-ops" and kw.get("fold_post", True):
        # the kernel's output in each slot graph is the slot's pinned host buffer: no copy kernel after it
        assert all(ex._slot_outs[s]["topk"].data_ptr() == ex.host_out[s]["topk"].data_ptr() for s in range(ex.depth))
    ex.close()
    return got, d


@pytest.mark.needs("cuda", "cupy", "torch")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("graph,mapped_out", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("batch", [1, 3])
def test_torch_cuda_executor_kernel_agrees_with_torch_ops(precision, graph, mapped_out, batch):
    from jetson_deploy.media.sources import Frame
    from jetson_deploy.runtime.backends.torch import TorchEngine

    n = 1000
    rs = np.random.RandomState(3)
    frames = [Frame(rs.randint(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(9)]
    engine = TorchEngine(_pointwise_model(n), device="cuda", input_shape=(batch, 3, 16, 16),
                         output_names=["logits"], precision=precision).activate()
    assert engine.precision == precision
    common = dict(graph=graph, mapped_out=mapped_out)
    kern, dk = _run_executor(engine, n, batch, frames, **common)
    ops, do = _run_executor(engine, n, batch, frames, post_impl="torch-ops", **common)
    raw, _ = _run_executor(engine, n, batch, frames, fold_post=False, **common)
    assert dk["post"] == "cuda-kernel (cupy)" and do["post"] == "torch-ops"
    assert dk["cuda_graph"] is graph and dk["mapped_out"] is mapped_out
    for a, b, r in zip(kern, ops, raw):
        logits = r["logits"]
        assert logits.dtype == (np.float16 if precision == "fp16" else np.float32) and logits.shape == (batch, n)
        got = a["topk"].reshape(batch, 2, 5)
        # the kernel: exactly the reference on the very logits the model produced
        _assert_same_topk(got, softmax_topk_reference(logits, 5))
        # torch ops: the same scores; the same ids except among equal logits (torch.topk's choice)
        want = b["topk"].reshape(batch, 2, 5)
        np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-5, atol=0)
        gi, wi = got[:, 1].astype(np.int64), want[:, 1].astype(np.int64)
        assert (np.take_along_axis(logits, gi, axis=1) == np.take_along_axis(logits, wi, axis=1)).all()


@pytest.mark.needs("cuda", "pycuda.driver")
@pytest.mark.parametrize("dtype,rows", [("float16", 1), ("float32", 1), ("float16", 4)])
def test_pycuda_kernel_matches_reference_into_mapped_host_memory(dtype, rows):
    """The pycuda path's launcher (nvcc through SourceModule, a prepared call): device logits in, the
    packed result written through a mapped page-locked buffer's device address, equal to the reference."""
    import pycuda.driver as cuda

    from jetson_deploy.runtime.gpu_topk import PycudaSoftmaxTopk
    from jetson_deploy.runtime.memory import make_context

    ctx = make_context()
    try:
        x = _logits(1000, rows, dtype, seed=11).astype(dtype)
        if rows > 1:  # a row of probabilities (kept as they are) and a NaN row (no result)
            e = np.exp(x[1].astype(np.float64) - x[1].max())
            x[1] = (e / e.sum()).astype(dtype)
            x[2, 7] = np.nan
        dev = cuda.mem_alloc(x.nbytes)
        cuda.memcpy_htod(dev, x)
        op = PycudaSoftmaxTopk(dtype, 5, 1000, rows)
        host = cuda.pagelocked_empty(op.out_shape, np.float32, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
        stream = cuda.Stream()
        op.launch(int(dev), int(host.base.get_device_pointer()), stream)
        stream.synchronize()
        want = softmax_topk_reference(x, 5)
        got = host.reshape(rows, 2, 5)
        assert np.array_equal(got[:, 1], want[:, 1])
        np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=2e-6, atol=1e-7)
        assert PycudaSoftmaxTopk(dtype, 5, 1000, rows).fn is op.fn  # compiled once per context and dtype
    finally:
        ctx.pop()


# ---------------------------------------------------------------------------------------------
# CPU: one scores rule on every path (issue #28 item 1)
# ---------------------------------------------------------------------------------------------
def _rows(n: int) -> "List[Any]":
    """(name, one row of n outputs): a Softmax-ending model's probabilities, plain logits, exact ties,
    a NaN logit, a +inf logit and all -inf."""
    rs = np.random.RandomState(n)
    logits = rs.randn(n).astype(np.float32) * np.float32(3)
    e = np.exp(logits.astype(np.float64))
    probs = (e / e.sum()).astype(np.float32)
    small = np.zeros(n, np.float32)
    small[:3] = [0.7, 0.2, 0.1]
    ties = np.round(logits).astype(np.float32)  # many equal logits
    ties[[1, n - 1]] = ties.max() + 1  # the best score twice: the lower index first
    ptie = np.zeros(n, np.float32)
    ptie[[n - 1, 1, 0]] = [0.4, 0.4, 0.2]  # tied probabilities, listed out of index order
    bad = logits.copy()
    bad[n // 2] = np.nan
    inf = logits.copy()
    inf[1] = np.inf
    return [("softmax-ending", probs), ("0.7/0.2/0.1", small), ("logits", logits), ("tied logits", ties),
            ("tied probabilities", ptie), ("nan", bad), ("+inf", inf),
            ("all -inf", np.full(n, -np.inf, np.float32))]


def _paths(row: "np.ndarray", k: int) -> "Any":
    """The same row through each path, as the Result each gives: host (raw outputs), the kernel's
    maths (its reference, packed), and the torch CUDA executor's torch-ops fallback (torch on the CPU)."""
    n = row.size
    pp = Postprocessor(_spec(n), topk=k)
    out = {"host": pp.classify({"logits": row[None]}),
           "kernel": pp.classify({"topk": softmax_topk_reference(row, min(k, MAX_K))[0]})}
    if torch is not None:
        ex = _cpu_executor(n)
        ex.topk = k
        packed = ex._post({"logits": torch.from_numpy(row[None])})["topk"].numpy()
        # the kernel's very layout: padding (0, -1) where it pads, ids in its order
        _assert_same_topk(packed[None], softmax_topk_reference(row, min(k, n))[:, :, :packed.shape[1]], rtol=2e-6)
        out["torch-ops"] = pp.classify({"topk": packed})
    return out


@pytest.mark.parametrize("n", [3, 10, 64, 65, 1000])
def test_one_scores_rule_on_every_path(n):
    """A model ending in Softmax keeps its probabilities (0.7 stays 0.7, not softmax(0.7, 0.2, 0.1)
    = 0.464); ties go to the lowest index; a NaN or +inf logit gives no result (no label, no made-up
    class) -- on the host's small- and large-N paths, the kernel's maths and the torch-ops fallback."""
    for name, row in _rows(n):
        got = _paths(row, 5)
        want = got["host"]
        for path, r in got.items():
            assert [l for l, _ in r.topk] == [l for l, _ in want.topk], (name, path, r.topk, want.topk)
            np.testing.assert_allclose([s for _, s in r.topk], [s for _, s in want.topk], rtol=2e-6, atol=1e-7,
                                       err_msg="{} on the {} path".format(name, path))
            assert (r.label, r.class_id) == (want.label, want.class_id), (name, path)
        host = want
        if n <= 64:
            from jetson_deploy.runtime.postprocess import _topk_small

            assert _topk_small(row, 5)[0] == [int(l[1:]) for l, _ in host.topk], name  # NaN rows: nothing
        if name in ("nan", "+inf", "all -inf"):
            assert host.topk == [] and host.label is None and host.score is None and host.class_id is None, name
            assert host.to_json()["label"] is None and host.to_json()["topk"] == []
        elif name == "0.7/0.2/0.1":
            assert host.label == "c0" and host.score == pytest.approx(0.7) and len(host.topk) == min(5, n)
            assert [l for l, _ in host.topk[:3]] == ["c0", "c1", "c2"]
        elif name == "softmax-ending":
            order = np.lexsort((np.arange(n), -row))[:5]
            assert [l for l, _ in host.topk] == ["c{}".format(i) for i in order]
            np.testing.assert_allclose([s for _, s in host.topk], row[order], rtol=1e-6)
        elif name == "tied logits":
            order = np.lexsort((np.arange(n), -row))[:5]  # equal logits: ascending index
            assert host.class_id == 1 and [l for l, _ in host.topk] == ["c{}".format(i) for i in order]
        elif name == "tied probabilities":
            assert [l for l, _ in host.topk[:3]] == ["c1", "c{}".format(n - 1), "c0"]


@pytest.mark.parametrize("n", [4, 64, 1000])
def test_tied_logits_come_out_lowest_index_first(n):
    """Every logit equal but a few: k equal best scores must be the k lowest indices, in order, on
    every path (a reversed tie order is as wrong as a wrong class)."""
    row = np.zeros(n, np.float32)
    row[[n - 1, 0]] = -1.0
    k = min(5, n - 2)
    want = ["c{}".format(i) for i in range(1, 1 + k)]
    for path, r in _paths(row, k).items():
        assert [l for l, _ in r.topk] == want, (path, r.topk)


def _frames_at_model_size(folder: Any, n: int, seed: int) -> str:
    """``n`` PNG frames of 16x16 (the test models' input size: no resize, so every path's
    preprocessing gives the same input and only the postprocessing can differ), each a random
    colour with noise, so scores vary frame to frame."""
    import cv2

    folder.mkdir()
    rs = np.random.RandomState(seed)
    for i in range(n):
        f = np.clip(rs.randint(0, 256, 3)[None, None, :] + rs.randint(-40, 41, (16, 16, 3)), 0, 255)
        cv2.imwrite(str(folder / "{:03d}.png".format(i)), f.astype(np.uint8))
    return str(folder)


def _results(path: Any) -> "List[Any]":
    import json

    return [json.loads(x) for x in open(str(path)).read().splitlines()]


def _assert_same_results(got: "List[Any]", want: "List[Any]", tol: float, what: str) -> None:
    """Same labels and top-5 labels per frame, scores within ``tol`` (None where there is no result)."""
    assert len(got) == len(want) > 0, what
    for i, (g, w) in enumerate(zip(got, want)):
        assert g["label"] == w["label"], (what, i, g["label"], w["label"])
        assert [t[0] for t in g["topk"]] == [t[0] for t in w["topk"]], (what, i, g["topk"], w["topk"])
        if w["score"] is None:
            assert g["score"] is None, (what, i)
            continue
        np.testing.assert_allclose([g["score"]] + [t[1] for t in g["topk"]], [w["score"]] + [t[1] for t in w["topk"]],
                                   rtol=0, atol=tol, err_msg="{} frame {}".format(what, i))


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
@pytest.mark.parametrize("classes", [10, 100], ids=["host-topk", "gpu-topk"])
@pytest.mark.parametrize("model", ["softmax", "nan"])
def test_pycuda_path_gives_the_host_scores(tmp_path, monkeypatch, classes, model):
    """The pycuda/TensorRT frame path (TensorRT, pycuda and libcuda doubles; the fused kernel's maths
    through the compiler stand-in, in the slot graphs) against ONNX Runtime's host path on a model
    ending in Softmax and on one that gives NaN for half the frames: same labels, top-5 and scores.
    100 classes run the GPU reduction, 10 the host's small-class top-k."""
    from doubles import cuda_driver_double, pycuda_double, tensorrt_double
    from support.runtime import make_many_class_bundle
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.runtime.options import OutputOptions, RunOptions
    from jetson_deploy.runtime.session import run_pipeline

    frames = _frames_at_model_size(tmp_path / "f", 24, seed=classes)
    b = make_many_class_bundle(tmp_path / "b", classes, softmax=model == "softmax",
                               nan_below=0.5 if model == "nan" else None)
    quiet = OutputOptions(metrics_interval=0)
    run_pipeline(b, frames, str(tmp_path / "host.jsonl"), options=RunOptions(backend="onnxruntime"), outputs=quiet)
    drv = pycuda_double.install(monkeypatch, integrated=False)
    tensorrt_double.install(monkeypatch, "10.x")
    driver = cuda_driver_double.install(monkeypatch)
    install_compiler(monkeypatch, [])
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(b, frames, str(tmp_path / "gpu.jsonl"),
                         options=RunOptions(backend="tensorrt", cache_dir=str(tmp_path / "eng")), outputs=quiet)
    finally:
        ctx.pop()
    assert s.executor["post"] == ("cuda-kernel (pycuda)" if classes > 64 else "host")
    assert s.executor["cuda_graph"] is True and driver.captures == 3
    want = _results(tmp_path / "host.jsonl")
    if model == "nan":
        assert 0 < sum(r["label"] is None for r in want) < len(want)  # NaN rows: no result, the rest classified
    else:
        assert min(r["score"] for r in want) > 0.05 and max(r["score"] for r in want) < 0.999
    _assert_same_results(_results(tmp_path / "gpu.jsonl"), want, 1e-5, "pycuda path")


@pytest.mark.needs("cuda", "torch", "pycuda.driver", "pycuda.compiler", "onnxruntime", "cv2")
@pytest.mark.parametrize("classes", [10, 1000])
@pytest.mark.parametrize("model", ["softmax", "nan"])
def test_host_torch_cuda_and_pycuda_paths_give_the_same_scores(tmp_path, classes, model):
    """Issue #28's must-show on a GPU: a Softmax-ending (and a NaN-giving) classifier over 50 frames on
    the host path (ONNX Runtime), the torch CUDA path (fused kernel through cupy, or torch ops) and the
    pycuda path (torch engine behind device pointers; the pycuda top-k kernel past 64 classes): the
    same top-5 classes and scores to 1e-4 (before the fix the torch CUDA path was off by up to 0.127)."""
    from support.runtime import make_many_class_bundle

    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.runtime.options import OutputOptions, RunOptions
    from jetson_deploy.runtime.session import run_pipeline

    frames = _frames_at_model_size(tmp_path / "f", 50, seed=classes + 1)
    b = make_many_class_bundle(tmp_path / "b", classes, softmax=model == "softmax",
                               nan_below=0.5 if model == "nan" else None, pt2=True)
    quiet = OutputOptions(metrics_interval=0)
    run_pipeline(b, frames, str(tmp_path / "host.jsonl"), options=RunOptions(backend="onnxruntime"), outputs=quiet)
    want = _results(tmp_path / "host.jsonl")
    t = run_pipeline(b, frames, str(tmp_path / "torch.jsonl"), options=RunOptions(backend="torch", device="cuda"),
                     outputs=quiet)
    assert t.executor["executor"] == "torch-cuda"
    _assert_same_results(_results(tmp_path / "torch.jsonl"), want, 1e-4, "torch CUDA ({})".format(t.executor["post"]))
    ctx = make_context()
    try:
        p = run_pipeline(b, frames, str(tmp_path / "pycuda.jsonl"),
                         options=RunOptions(backend="torch", device="cuda", memory="pycuda-pinned"), outputs=quiet)
    finally:
        ctx.pop()
    assert p.executor["executor"] == "pycuda"
    if classes > 64:
        assert p.executor["post"] == "cuda-kernel (pycuda)", p.executor
    _assert_same_results(_results(tmp_path / "pycuda.jsonl"), want, 1e-4, "pycuda ({})".format(p.executor["post"]))
    if model == "nan":
        assert 0 < sum(r["label"] is None for r in want) < len(want)
