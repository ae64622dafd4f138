"""GPU classify reduction: softmax + top-k of each row of logits in one CUDA kernel.

The torch CUDA executor's per-frame graph ended with ~6 tiny kernels after the network
(``float()``, softmax, topk, id cast, stack, copy into the pinned host buffer): ~25 us on an H200
next to a 340 us ResNet-18, enough to miss the pipeline/network target.  One kernel does the same
and writes the packed ``(2, k)`` result (row 0 probabilities, row 1 class ids as float32) straight
to its destination, which may be a UVA view of the slot's pinned host buffer: no copy-out kernel.

Maths (float32 whatever the logits' dtype), the scores rule of :mod:`.postprocess` (the same on
every path): a row whose values all lie in [0, 1] and sum to 1 within ``PROB_SUM_TOL`` is already
probabilities (a model ending in Softmax) and ``p = x``; any other row gets ``m = max(x)``,
``e = exp(x - m)``, ``s = sum(e)``, ``p = e / s``.  Then k rounds of a block-wide argmax over ``p``.
The ranking is (p descending, index ascending), so ties go to the lowest index like the host
postprocess; round r takes the best element ranked after round r-1's pick, so no set of chosen
indices is kept.  Rows with fewer than k ranked values (N < k, or a NaN or +inf logit: every ``p``
NaN) are padded with score 0 and id -1, which the host reads as "no result".
:func:`softmax_topk_reference` is the same in numpy (the CPU test).
"""
import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .postprocess import PROB_SUM_TOL, looks_like_probs

log = logging.getLogger(__name__)

KERNEL_NAME = "jd_softmax_topk"
#: the kernel's shared arrays hold this many picks
MAX_K = 32
_CTYPE = {"float32": "float", "float16": "__half"}

CUDA_SOURCE = r"""
#include <cuda_fp16.h>
// IN_T float | __half (IN_KIND 0 | 1); one block per row; blockDim a multiple of 32, <= 1024
#define JD_MAXK 32
#define JD_FULL 0xffffffffu
#define JD_NEG_INF __int_as_float(0xff800000)
#define JD_POS_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float jd_load(const IN_T* row, int i) {
#if IN_KIND == 1
    return __half2float(row[i]);
#else
    return row[i];
#endif
}

// one definition of p for the ranking and the output: the same value in every round
// (probs: the row already holds probabilities, taken as they are)
__device__ __forceinline__ float jd_prob(const IN_T* row, int i, float m, float s, bool probs) {
    return probs ? jd_load(row, i) : __fdiv_rn(expf(__fsub_rn(jd_load(row, i), m)), s);
}

// (p, i) ranks before (q, j): larger p first, ties to the lower index; i < 0 is "none", NaN never ranks
__device__ __forceinline__ bool jd_before(float p, int i, float q, int j) {
    return i >= 0 && p == p && (j < 0 || p > q || (p == q && i < j));
}

__device__ __forceinline__ float jd_combine(float v, float o, int op) {
    return op == 0 ? fmaxf(v, o) : (op == 2 ? fminf(v, o) : v + o);
}

// sh: 33 floats; returns the block's max (op 0), sum (op 1) or min (op 2) to every thread
// (fmaxf/fminf ignore a NaN; a sum keeps it)
__device__ float jd_block_reduce(float v, int op, float* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) v = jd_combine(v, __shfl_down_sync(JD_FULL, v, off), op);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sh[lane] : (op == 0 ? JD_NEG_INF : (op == 2 ? JD_POS_INF : 0.0f));
        for (int off = 16; off > 0; off >>= 1) v = jd_combine(v, __shfl_down_sync(JD_FULL, v, off), op);
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    v = sh[32];
    __syncthreads();  // sh is reused by the next reduction
    return v;
}

// block-wide best (p, i) under jd_before, to every thread
__device__ void jd_block_argmax(float& p, int& i, float* shp, int* shi) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        float q = __shfl_down_sync(JD_FULL, p, off);
        int j = __shfl_down_sync(JD_FULL, i, off);
        if (jd_before(q, j, p, i)) { p = q; i = j; }
    }
    if (lane == 0) { shp[w] = p; shi[w] = i; }
    __syncthreads();
    if (w == 0) {
        p = lane < nw ? shp[lane] : 0.0f;
        i = lane < nw ? shi[lane] : -1;
        for (int off = 16; off > 0; off >>= 1) {
            float q = __shfl_down_sync(JD_FULL, p, off);
            int j = __shfl_down_sync(JD_FULL, i, off);
            if (jd_before(q, j, p, i)) { p = q; i = j; }
        }
        if (lane == 0) { shp[32] = p; shi[32] = i; }
    }
    __syncthreads();
    p = shp[32];
    i = shi[32];
    __syncthreads();
}

extern "C" __global__ void jd_softmax_topk(unsigned long long in_addr, unsigned long long out_addr,
                                           int n, long long in_stride, int k) {
    __shared__ float shp[33];
    __shared__ int shi[33];
    __shared__ float top_p[JD_MAXK];
    __shared__ int top_i[JD_MAXK];
    const IN_T* row = (const IN_T*)in_addr + (long long)blockIdx.x * in_stride;
    float* out = (float*)out_addr + (long long)blockIdx.x * 2 * k;
    int t = threadIdx.x;
    float m = JD_NEG_INF, lo = JD_POS_INF, raw = 0.0f;
    for (int i = t; i < n; i += blockDim.x) {
        float v = jd_load(row, i);
        m = fmaxf(m, v);
        lo = fminf(lo, v);
        raw += v;
    }
    m = jd_block_reduce(m, 0, shp);
    lo = jd_block_reduce(lo, 2, shp);
    raw = jd_block_reduce(raw, 1, shp);
    // the scores rule (runtime/postprocess.py): values in [0, 1] summing to 1 are probabilities already
    // (a NaN makes the sum NaN: softmax, every p NaN, nothing ranks); the same for every thread
    const bool probs = lo >= 0.0f && m <= 1.0f && fabsf(raw - 1.0f) < JD_PROB_TOL;
    float s = 1.0f;
    if (!probs) {
        s = 0.0f;
        for (int i = t; i < n; i += blockDim.x) s += expf(__fsub_rn(jd_load(row, i), m));
        s = jd_block_reduce(s, 1, shp);
    }
    float last_p = 0.0f;
    int last_i = -1, taken = 0;
    for (int r = 0; r < k; ++r) {
        float bp = 0.0f;
        int bi = -1;
        for (int i = t; i < n; i += blockDim.x) {
            float p = jd_prob(row, i, m, s, probs);
            // eligible: ranked after the previous pick (so not taken yet)
            if ((r == 0 || jd_before(last_p, last_i, p, i)) && jd_before(p, i, bp, bi)) { bp = p; bi = i; }
        }
        jd_block_argmax(bp, bi, shp, shi);
        if (bi < 0) break;  // the same for every thread: nothing ranked is left
        if (t == 0) { top_p[r] = bp; top_i[r] = bi; }
        last_p = bp;
        last_i = bi;
        taken = r + 1;
    }
    __syncthreads();
    // the 2k results written once, by the first 2k threads (one coalesced store to host memory)
    for (int j = t; j < 2 * k; j += blockDim.x) {
        int c = j < k ? j : j - k;
        out[j] = j < k ? (c < taken ? top_p[c] : 0.0f) : (c < taken ? (float)top_i[c] : -1.0f);
    }
}
"""


def kernel_source(in_dtype: str) -> str:
    """The kernel's source for logits of ``in_dtype`` (``float32`` or ``float16``)."""
    if in_dtype not in _CTYPE:
        raise ValueError("softmax/top-k kernel: logits dtype {} is not supported".format(in_dtype))
    head = "#define IN_KIND {}\n#define IN_T {}\n#define JD_PROB_TOL {!r}f\n".format(
        1 if in_dtype == "float16" else 0, _CTYPE[in_dtype], float(PROB_SUM_TOL))
    return head + CUDA_SOURCE


def block_threads(n: int) -> int:
    """Threads per row: ~4 logits each, a whole number of warps, 64..1024."""
    warps = (max(1, int(n)) + 127) // 128
    return 32 * min(32, max(2, warps))


def softmax_topk_reference(logits: "np.ndarray", k: int) -> "np.ndarray":
    """The kernel's maths in numpy: ``(B, 2, k)`` float32, row 0 probabilities, row 1 class ids.

    ``logits`` is (N,) or (B, N), any float dtype (read as float32).  A row that already holds
    probabilities (``postprocess.looks_like_probs``) is ranked as it is; otherwise ``exp`` is evaluated
    in float64 and rounded to float32 (a correctly rounded float32 exp, the same on every machine);
    max, sum and division are float32.  Ties go to the lowest index; missing places are (0, -1).
    """
    x = np.asarray(logits)
    x = (x[None] if x.ndim == 1 else x).astype(np.float32)
    k = int(k)
    out = np.zeros((x.shape[0], 2, k), np.float32)
    out[:, 1, :] = -1.0
    for b, row in enumerate(x):
        with np.errstate(invalid="ignore"):  # NaN / +inf logits: every p NaN, the row padded (as the kernel)
            if looks_like_probs(row):
                p = row
            else:
                e = np.exp((row - row.max()).astype(np.float64)).astype(np.float32)
                p = e / e.sum(dtype=np.float32)
        ranked = np.flatnonzero(~np.isnan(p))
        ids = ranked[np.argsort(-p[ranked], kind="stable")][:k]  # stable: equal p keep index order
        out[b, 0, :ids.size] = p[ids]
        out[b, 1, :ids.size] = ids
    return out


# ---------------------------------------------------------------------------------------------
# launcher (cupy RawKernel on torch's current stream)
# ---------------------------------------------------------------------------------------------
_COMPILED: "Dict[Tuple[Any, ...], Any]" = {}


def available() -> bool:
    """cupy is importable (the kernel may still fail to compile: :class:`TorchSoftmaxTopk` says)."""
    from .._lazy import has_module

    return has_module("cupy")


def cupy_kernel(in_dtype: str) -> Any:
    """The compiled cupy RawKernel (NVRTC) for logits of ``in_dtype``, cached per device."""
    import importlib

    cupy = importlib.import_module("cupy")
    key = ("cupy", cupy.cuda.runtime.getDevice(), in_dtype)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = cupy.RawKernel(kernel_source(in_dtype), KERNEL_NAME)
        fn.compile()
        _COMPILED[key] = fn
    return fn


class TorchSoftmaxTopk:
    """Softmax + top-k of ``rows`` rows of ``n_classes`` logits, one kernel on torch's current stream.

    ``__call__(logits, out=None)`` -> float32 ``(2, k)`` (``rows == 1``) or ``(rows, 2, k)``: the
    packed layout ``Postprocessor.classify`` reads.  ``out`` may be any contiguous float32 tensor of
    that many elements on the GPU, or a UVA view of pinned host memory (the result lands there with
    no copy).  Safe inside CUDA graph capture (one launch, nothing allocated unless ``out`` is None).
    Construction compiles, and raises when cupy or NVRTC is missing or ``k`` is out of range.
    """

    kind = "cuda-kernel (cupy)"

    def __init__(self, device: Any, dtype: Any, k: int, n_classes: int, rows: int = 1) -> None:
        import importlib

        self.torch = importlib.import_module("torch")
        self.cupy = importlib.import_module("cupy")
        self.device = device
        self.in_dtype = str(dtype).replace("torch.", "")
        self.k, self.n, self.rows = int(k), int(n_classes), int(rows)
        if not 1 <= self.k <= MAX_K or self.n < 1 or self.rows < 1:
            raise ValueError("softmax/top-k kernel: needs 1 <= k <= {} and N, rows >= 1 (k={}, N={}, rows={})".format(
                MAX_K, self.k, self.n, self.rows))
        self.kernel = cupy_kernel(self.in_dtype)
        self.out_shape = (2, self.k) if self.rows == 1 else (self.rows, 2, self.k)
        self.threads = block_threads(self.n)

    def __call__(self, logits: Any, out: Any = None) -> Any:
        torch = self.torch
        if tuple(logits.shape) != (self.rows, self.n) or str(logits.dtype).replace("torch.", "") != self.in_dtype:
            raise ValueError("softmax/top-k kernel built for ({}, {}) {}, got {} {}".format(
                self.rows, self.n, self.in_dtype, tuple(logits.shape), logits.dtype))
        if logits.stride(1) != 1:
            logits = logits.contiguous()
        if out is None:
            out = torch.empty(self.out_shape, dtype=torch.float32, device=logits.device)
        elif out.dtype != torch.float32 or not out.is_contiguous() or out.numel() != self.rows * 2 * self.k:
            raise ValueError("softmax/top-k kernel: out must be contiguous float32 of {} elements, got {} {}".format(
                self.rows * 2 * self.k, tuple(out.shape), out.dtype))
        args = (np.uint64(logits.data_ptr()), np.uint64(out.data_ptr()), np.int32(self.n),
                np.int64(logits.stride(0)), np.int32(self.k))
        stream = torch.cuda.current_stream(self.device)
        with self.cupy.cuda.ExternalStream(stream.cuda_stream):
            self.kernel((self.rows, 1, 1), (self.threads, 1, 1), args)
        return out


def torch_softmax_topk(device: Any, dtype: Any, k: int, n_classes: int, rows: int = 1) -> "Optional[TorchSoftmaxTopk]":
    """The fused kernel for these logits, or None (said once in the log) when cupy is missing or it
    does not compile here; the caller then runs torch ops."""
    if not available():
        return None
    try:
        return TorchSoftmaxTopk(device, dtype, k, n_classes, rows)
    except Exception as exc:  # no NVRTC, unsupported dtype or k: torch ops do the same maths
        log.warning("softmax/top-k kernel unavailable through cupy (%s); using torch ops",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None


# ---------------------------------------------------------------------------------------------
# launcher (pycuda SourceModule on the pycuda/TensorRT path)
# ---------------------------------------------------------------------------------------------
#: struct format of the kernel's C signature for pycuda's prepared calls:
#: (unsigned long long in, unsigned long long out, int n, long long in_stride, int k)
PYCUDA_ARG_FORMAT = "QQiqi"


class PycudaSoftmaxTopk:
    """Softmax + top-k of ``rows`` rows of ``n_classes`` logits on the pycuda path: one launch on a
    pycuda stream, from the engine's device output to the packed ``(rows, 2, k)`` float32 result
    (a mapped host buffer's device address: no copy-out).  Captured into the slot graph after the
    engine, so a TensorRT classifier's frame costs no host-side softmax (27-80 us of numpy for 1000
    classes, the pycuda path's bottleneck at four cameras on an H100 host).  Construction compiles
    (nvcc, as the preprocessing kernel) and raises when it cannot.
    """

    kind = "cuda-kernel (pycuda)"

    def __init__(self, in_dtype: str, k: int, n_classes: int, rows: int = 1, cuda: Any = None) -> None:
        self.in_dtype, self.k, self.n, self.rows = str(in_dtype), int(k), int(n_classes), int(rows)
        if not 1 <= self.k <= MAX_K or self.n < 1 or self.rows < 1:
            raise ValueError("softmax/top-k kernel: needs 1 <= k <= {} and N, rows >= 1 (k={}, N={}, rows={})".format(
                MAX_K, self.k, self.n, self.rows))
        from .gpu_preprocess import pycuda_function

        # compiled once per context (keyed by its handle, whatever wrapper get_current() returns)
        self.fn = pycuda_function(kernel_source(self.in_dtype), KERNEL_NAME, cuda=cuda)[0]
        if getattr(self.fn, "arg_format", None) != PYCUDA_ARG_FORMAT:
            self.fn.prepare(PYCUDA_ARG_FORMAT)
        self.threads = block_threads(self.n)
        self.out_shape = (2, self.k) if self.rows == 1 else (self.rows, 2, self.k)

    def launch(self, in_ptr: int, out_ptr: int, stream: Any) -> None:
        """Enqueue on ``stream`` (a pycuda Stream); never synchronises the host."""
        self.fn.prepared_async_call((self.rows, 1, 1), (self.threads, 1, 1), stream, int(in_ptr), int(out_ptr),
                                    self.n, self.n, self.k)


def pycuda_softmax_topk(in_dtype: str, k: int, n_classes: int, rows: int = 1,
                        cuda: Any = None) -> "Tuple[Optional[PycudaSoftmaxTopk], str]":
    """(the fused kernel, "") or (None, why) when it cannot compile here (host postprocessing then)."""
    try:
        return PycudaSoftmaxTopk(in_dtype, k, n_classes, rows, cuda=cuda), ""
    except Exception as exc:  # no pycuda.compiler, no nvcc, unsupported dtype or k
        return None, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
