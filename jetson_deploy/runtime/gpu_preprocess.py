"""GPU preprocessing: one fused CUDA kernel from the captured uint8 frame to the engine's input.

The frame goes to the GPU as captured (uint8 HxWxC at source resolution, BGR or gray); one
kernel does resize (or letterbox), colour order, ``x*scale-mean)/std``, layout and output dtype,
and writes straight into the engine's input buffer on the engine's stream.  Unfused torch ops
cost ~55 us (10-15 small launches); one kernel does the same in a few.

The maths is :func:`jetson_deploy.preprocess.preprocess`'s: exact bilinear (half-pixel centres,
edge clamp), each channel rounded half up to a uint8 level, letterbox fill 114, OpenCV's
fixed-point BGR->gray weights, then ``level*mul + off`` in float32 (no FMA, so the result is
bit-identical to :func:`numpy_kernel`).  The host path's ``INTER_LINEAR_EXACT`` quantises its
weights to 16-bit fixed point, so host and GPU levels differ by one in ~10% of values, in both
directions (no bias: tests/test_runtime_oracle.py checks every path against a float64 oracle).

Why not a uint8 preprocessing head folded into the engine: TensorRT 8.2 (JetPack 4.6, the Nano)
has no UINT8 network I/O (it arrived in 8.5), and one head per source resolution means one
engine build per resolution on the device.

Launchers, chosen by :func:`~jetson_deploy.runtime.torch_preprocess.torch_preprocessor` / :func:`pycuda_kernel`:

* pycuda ``SourceModule`` (the TensorRT / pycuda path; needs nvcc, which JetPack ships);
* cupy ``RawKernel`` (NVRTC) on torch's stream (torch CUDA path);
* torch ops (:class:`~jetson_deploy.runtime.torch_preprocess.TorchPreprocess`), the fallback.

One compiled function per :class:`KernelSpec` (output colour, layout, dtype), cached; the source
size is a kernel parameter (:class:`Plan`), so a new frame size needs new arguments only -- and a
re-captured CUDA graph where the launch is inside one.
"""
import logging
import math
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import BadInput
from ..preprocess import LETTERBOX_FILL, letterbox_params, normalize_constants
from ..spec import ModelSpec

log = logging.getLogger(__name__)

KERNEL_NAME = "jd_preprocess"
BLOCK = (32, 8, 1)
#: OpenCV's BGR->gray weights (cv2.cvtColor, uint8, 14-bit fixed point): B, G, R
GRAY_WEIGHTS = (1868, 9617, 4899)
_COLOR = {"bgr": 0, "rgb": 1, "gray": 2}
_LAYOUT = {"nchw": 0, "nhwc": 1}
_CTYPE = {"float32": "float", "float16": "__half", "uint8": "unsigned char"}

CUDA_SOURCE = r"""
#include <cuda_fp16.h>
// COLOR 0 bgr, 1 rgb, 2 gray; LAYOUT 0 nchw, 1 nhwc; OUT_T float | __half | unsigned char
__device__ __forceinline__ float jd_level(const unsigned char* src, int pitch, int c, int x0, int x1, int y0,
                                          int y1, float fx, float fy) {
    float p00 = (float)src[y0 * pitch + x0 * c], p01 = (float)src[y0 * pitch + x1 * c];
    float p10 = (float)src[y1 * pitch + x0 * c], p11 = (float)src[y1 * pitch + x1 * c];
    float gx = __fsub_rn(1.0f, fx), gy = __fsub_rn(1.0f, fy);
    float top = __fadd_rn(__fmul_rn(p00, gx), __fmul_rn(p01, fx));
    float bot = __fadd_rn(__fmul_rn(p10, gx), __fmul_rn(p11, fx));
    float v = __fadd_rn(__fmul_rn(top, gy), __fmul_rn(bot, fy));
    v = floorf(__fadd_rn(v, 0.5f));
    return fminf(fmaxf(v, 0.0f), 255.0f);
}

__device__ __forceinline__ void jd_store(OUT_T* dst, long i, float level, float m, float o) {
#if OUT_KIND == 2
    dst[i] = (unsigned char)level;
#elif OUT_KIND == 1
    dst[i] = __float2half_rn(__fadd_rn(__fmul_rn(level, m), o));
#else
    dst[i] = __fadd_rn(__fmul_rn(level, m), o);
#endif
}

extern "C" __global__ void jd_preprocess(
    unsigned long long src_addr, unsigned long long dst_addr,
    int src_w, int src_h, int src_c, int src_pitch, int dst_w, int dst_h,
    int rx0, int ry0, int rw, int rh, float scale_x, float scale_y,
    float m0, float m1, float m2, float o0, float o1, float o2, int fill) {
    int dx = blockIdx.x * blockDim.x + threadIdx.x;
    int dy = blockIdx.y * blockDim.y + threadIdx.y;
    if (dx >= dst_w || dy >= dst_h) return;
    const unsigned char* src = (const unsigned char*)src_addr;
    OUT_T* dst = (OUT_T*)dst_addr;
    float v0 = (float)fill, v1 = (float)fill, v2 = (float)fill;   // source channel order
    int lx = dx - rx0, ly = dy - ry0;
    if (lx >= 0 && ly >= 0 && lx < rw && ly < rh) {
        float sx = __fadd_rn(__fmul_rn(__fadd_rn((float)lx, 0.5f), scale_x), -0.5f);
        float sy = __fadd_rn(__fmul_rn(__fadd_rn((float)ly, 0.5f), scale_y), -0.5f);
        int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
        float fx = __fsub_rn(sx, (float)x0), fy = __fsub_rn(sy, (float)y0);
        if (x0 < 0) { x0 = 0; fx = 0.0f; }
        if (x0 >= src_w - 1) { x0 = src_w - 1; fx = 0.0f; }
        if (y0 < 0) { y0 = 0; fy = 0.0f; }
        if (y0 >= src_h - 1) { y0 = src_h - 1; fy = 0.0f; }
        int x1 = min(x0 + 1, src_w - 1), y1 = min(y0 + 1, src_h - 1);
        v0 = jd_level(src, src_pitch, src_c, x0, x1, y0, y1, fx, fy);
        if (src_c >= 3) {
            v1 = jd_level(src + 1, src_pitch, src_c, x0, x1, y0, y1, fx, fy);
            v2 = jd_level(src + 2, src_pitch, src_c, x0, x1, y0, y1, fx, fy);
        } else {
            v1 = v0; v2 = v0;
        }
    }
    long hw = (long)dst_h * dst_w, p = (long)dy * dst_w + dx;
#if COLOR == 2
    float g = v0;
    if (src_c >= 3) g = (float)(((int)v0 * 1868 + (int)v1 * 9617 + (int)v2 * 4899 + 8192) >> 14);
    jd_store(dst, p, g, m0, o0);
#else
#if COLOR == 1
    float c0 = v2, c2 = v0;
#else
    float c0 = v0, c2 = v2;
#endif
#if LAYOUT == 1
    jd_store(dst, p * 3, c0, m0, o0);
    jd_store(dst, p * 3 + 1, v1, m1, o1);
    jd_store(dst, p * 3 + 2, c2, m2, o2);
#else
    jd_store(dst, p, c0, m0, o0);
    jd_store(dst, hw + p, v1, m1, o1);
    jd_store(dst, 2 * hw + p, c2, m2, o2);
#endif
#endif
}
"""


@dataclass(frozen=True)
class KernelSpec:
    """What a compiled kernel is specialised for (one compile each)."""

    color: str = "rgb"
    layout: str = "nchw"
    out_dtype: str = "float32"

    @property
    def out_channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def source(self) -> str:
        kind = {"float32": 0, "float16": 1, "uint8": 2}[self.out_dtype]
        head = "#define COLOR {}\n#define LAYOUT {}\n#define OUT_KIND {}\n#define OUT_T {}\n".format(
            _COLOR[self.color], _LAYOUT[self.layout], kind, _CTYPE[self.out_dtype])
        return head + CUDA_SOURCE


@dataclass(frozen=True)
class Plan:
    """Kernel arguments for one (spec, source size): everything but the two pointers."""

    kspec: KernelSpec
    src_w: int
    src_h: int
    src_c: int
    src_pitch: int
    dst_w: int
    dst_h: int
    rx0: int
    ry0: int
    rw: int
    rh: int
    scale_x: float
    scale_y: float
    mul: "Tuple[float, float, float]"
    off: "Tuple[float, float, float]"
    fill: int = LETTERBOX_FILL

    @property
    def out_shape(self) -> "Tuple[int, int, int]":
        c = self.kspec.out_channels
        return (c, self.dst_h, self.dst_w) if self.kspec.layout == "nchw" else (self.dst_h, self.dst_w, c)

    @property
    def grid(self) -> "Tuple[int, int, int]":
        return (int(math.ceil(self.dst_w / float(BLOCK[0]))), int(math.ceil(self.dst_h / float(BLOCK[1]))), 1)

    def scalars(self) -> "Tuple[Any, ...]":
        """The kernel's arguments after the two pointers, as plain Python numbers (prepared calls)."""
        m, o = self.mul, self.off
        return (self.src_w, self.src_h, self.src_c, self.src_pitch, self.dst_w, self.dst_h, self.rx0, self.ry0,
                self.rw, self.rh, float(self.scale_x), float(self.scale_y), float(m[0]), float(m[1]), float(m[2]),
                float(o[0]), float(o[1]), float(o[2]), self.fill)

    def args(self, src_ptr: int, dst_ptr: int) -> "Tuple[Any, ...]":
        """The kernel's arguments, typed as its C signature (numpy scalars)."""
        i, f = np.int32, np.float32
        m, o = self.mul, self.off
        return (np.uint64(src_ptr), np.uint64(dst_ptr), i(self.src_w), i(self.src_h), i(self.src_c),
                i(self.src_pitch), i(self.dst_w), i(self.dst_h), i(self.rx0), i(self.ry0), i(self.rw), i(self.rh),
                f(self.scale_x), f(self.scale_y), f(m[0]), f(m[1]), f(m[2]), f(o[0]), f(o[1]), f(o[2]),
                i(self.fill))


def kernel_spec(spec: "ModelSpec", out_dtype: "Optional[str]" = None, layout: "Optional[str]" = None) -> "KernelSpec":
    """The kernel specialisation for a spec; ``out_dtype``/``layout`` override the spec's (the torch
    backend runs fp16 bundles in half, and may want channels-last)."""
    dt = out_dtype or spec.dtype
    if dt == "int8":
        dt = "float32"
    if dt not in _CTYPE:
        raise BadInput("GPU preprocessing: input dtype {} is not supported".format(dt))
    return KernelSpec(color=spec.color, layout=layout or spec.layout, out_dtype=dt)


def make_plan(spec: "ModelSpec", frame_shape: "Tuple[int, ...]", kspec: "Optional[KernelSpec]" = None,
              pitch: "Optional[int]" = None) -> "Plan":
    """Kernel arguments for frames of ``frame_shape`` (H, W[, C]) uint8, rows ``pitch`` bytes apart."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    c = int(frame_shape[2]) if len(frame_shape) > 2 else 1
    if c not in (1, 3, 4) or h < 1 or w < 1:
        raise BadInput("GPU preprocessing: frames must be HxW, HxWx1, HxWx3 or HxWx4 uint8, got {}".format(frame_shape))
    dst_w, dst_h = spec.resize_wh
    if spec.keep_aspect and (w, h) != (dst_w, dst_h):
        r, px, py = letterbox_params(w, h, spec)
        rw, rh = int(round(w * r)), int(round(h * r))
    else:
        rw, rh, px, py = dst_w, dst_h, 0, 0
    mul, off = normalize_constants(spec)
    if mul.size == 1:
        mul, off = np.repeat(mul, 3), np.repeat(off, 3)
    mul3 = tuple(float(x) for x in mul[:3]) + (1.0,) * (3 - min(mul.size, 3))
    off3 = tuple(float(x) for x in off[:3]) + (0.0,) * (3 - min(off.size, 3))
    return Plan(kspec=kspec or kernel_spec(spec), src_w=w, src_h=h, src_c=c, src_pitch=int(pitch or w * c),
                dst_w=dst_w, dst_h=dst_h, rx0=px, ry0=py, rw=rw, rh=rh,
                scale_x=float(np.float32(w / float(rw))), scale_y=float(np.float32(h / float(rh))),
                mul=mul3, off=off3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the same maths in numpy: the CPU test of the kernel
# ---------------------------------------------------------------------------------------------
def _axis(n_out: int, start: int, n_src: int, scale: float) -> "Tuple[np.ndarray, np.ndarray, np.ndarray]":
    f32 = np.float32
    s = (np.arange(n_out, dtype=np.int64) - start).astype(f32)
    s = (s + f32(0.5)) * f32(scale) + f32(-0.5)
    i0 = np.floor(s).astype(np.int64)
    fr = (s - i0.astype(f32)).astype(f32)
    lo = i0 < 0
    i0[lo], fr[lo] = 0, 0
    hi = i0 >= n_src - 1
    i0[hi], fr[hi] = n_src - 1, 0
    return i0, np.minimum(i0 + 1, n_src - 1), fr


def numpy_kernel(frame: "np.ndarray", plan: "Plan") -> "np.ndarray":
    """The kernel, step for step, in float32 numpy: (C,H,W) or (H,W,C) in the plan's dtype."""
    f32 = np.float32
    img = frame if frame.ndim == 3 else frame[:, :, None]
    if img.shape[:2] != (plan.src_h, plan.src_w) or img.shape[2] != plan.src_c or img.dtype != np.uint8:
        raise BadInput("frame {} {} does not match the plan ({}x{}x{})".format(
            img.shape, img.dtype, plan.src_h, plan.src_w, plan.src_c))
    x0, x1, fx = _axis(plan.dst_w, plan.rx0, plan.src_w, plan.scale_x)
    y0, y1, fy = _axis(plan.dst_h, plan.ry0, plan.src_h, plan.scale_y)
    fx, fy = fx[None, :], fy[:, None]
    gx, gy = f32(1) - fx, f32(1) - fy
    nsrc = 3 if plan.src_c >= 3 else 1
    levels = []
    for c in range(nsrc):
        ch = img[:, :, c].astype(f32)
        p00, p01 = ch[y0][:, x0], ch[y0][:, x1]
        p10, p11 = ch[y1][:, x0], ch[y1][:, x1]
        top = p00 * gx + p01 * fx
        bot = p10 * gx + p11 * fx
        v = np.floor(top * gy + bot * fy + f32(0.5))
        levels.append(np.clip(v, 0, 255).astype(f32))
    if nsrc == 1:
        levels = levels * 3
    xs = np.arange(plan.dst_w)[None, :] - plan.rx0
    ys = np.arange(plan.dst_h)[:, None] - plan.ry0
    inside = (xs >= 0) & (ys >= 0) & (xs < plan.rw) & (ys < plan.rh)
    levels = [np.where(inside, v, f32(plan.fill)).astype(f32) for v in levels]
    ks = plan.kspec
    if ks.color == "gray":
        if nsrc == 3:
            b, g, r = (v.astype(np.int64) for v in levels)
            chans = [((b * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + r * GRAY_WEIGHTS[2] + 8192) >> 14).astype(f32)]
        else:
            chans = [levels[0]]
    elif ks.color == "rgb":
        chans = [levels[2], levels[1], levels[0]]
    else:
        chans = levels
    if ks.out_dtype == "uint8":
        out = np.stack([c.astype(np.uint8) for c in chans])
    else:
        vals = [c * f32(plan.mul[i]) + f32(plan.off[i]) for i, c in enumerate(chans)]
        out = np.stack(vals).astype(np.float16 if ks.out_dtype == "float16" else np.float32)
    return np.ascontiguousarray(out if ks.layout == "nchw" else out.transpose(1, 2, 0))


def preprocess_like_kernel(frame: "np.ndarray", spec: "ModelSpec", out_dtype: "Optional[str]" = None) -> "np.ndarray":
    """Convenience: :func:`numpy_kernel` for one frame and a spec (no batch axis)."""
    return numpy_kernel(frame, make_plan(spec, frame.shape, kernel_spec(spec, out_dtype)))


# ---------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------
_COMPILED: "Dict[Tuple[Any, ...], Any]" = {}


def find_nvcc() -> "Optional[str]":
    """nvcc for pycuda's SourceModule: PATH, $CUDA_HOME, then JetPack's /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def pycuda_function(source: str, name: str, cuda: Any = None) -> Any:
    """``name`` from ``source`` compiled with pycuda's SourceModule into the current context, once per
    context: (the function, its module).  Raises why not (no pycuda.compiler, no nvcc, a compile error).

    Keyed by the context's ``handle`` (its CUcontext), not by the wrapper object: pycuda hands out a
    new ``Context`` wrapper from every ``get_current()`` unless the context was pushed from Python,
    and its ``__hash__`` mixes in the C++ object's address (``src/cpp/cuda.hpp`` L622-635), so two
    wrappers of one context may differ in identity and hash -- a recompile (nvcc, ~0.4 s) per
    executor.  The entry keeps the context and the compiler alive, so neither handle nor id is
    reused while it exists.  pycuda's on-disk cache also keeps the cubin across restarts.
    """
    import importlib

    compiler = importlib.import_module("pycuda.compiler")
    cuda = cuda if cuda is not None else importlib.import_module("pycuda.driver")
    ctx = cuda.Context.get_current() if hasattr(cuda, "Context") else None
    key = ("pycuda", id(compiler), getattr(ctx, "handle", None), source, name)
    hit = _COMPILED.get(key)
    if hit is None:
        kw: "Dict[str, Any]" = {"no_extern_c": True}
        nvcc = find_nvcc()
        if nvcc is not None:
            kw["nvcc"] = nvcc
        mod = compiler.SourceModule(source, **kw)
        hit = _COMPILED[key] = (mod.get_function(name), mod, ctx, compiler)
    return hit[0], hit[1]


def pycuda_kernel(kspec: "KernelSpec", cuda: Any = None) -> Any:
    """The compiled pycuda function for ``kspec`` (once per context: :func:`pycuda_function`), or raise why not."""
    return pycuda_function(kspec.source(), KERNEL_NAME, cuda=cuda)[0]


# struct format of the kernel's C signature for pycuda's prepared calls: two 64-bit pointers,
# ten ints, eight floats, one int (see KERNEL_SOURCE)
ARG_FORMAT = "QQ" + "i" * 10 + "f" * 8 + "i"
_LAUNCH: "Dict[int, Tuple[Any, Tuple[int, int, int], Tuple[Any, ...]]]" = {}


def launch_pycuda(fn: Any, plan: "Plan", src_ptr: int, dst_ptr: int, stream: Any) -> None:
    """One launch on ``stream`` (a pycuda Stream); never synchronises the host.

    pycuda's plain ``Function.__call__`` inspects every argument on every call (tens of
    microseconds for 21 arguments, as much as the demo network itself on an H200): the function
    is prepared once and launched with ``prepared_async_call`` and the plan's cached scalars.
    """
    prepared = getattr(fn, "prepared_async_call", None)
    if prepared is None:  # a stand-in without pycuda's prepared-call API
        fn(*plan.args(src_ptr, dst_ptr), block=BLOCK, grid=plan.grid, stream=stream)
        return
    hit = _LAUNCH.get(id(plan))
    if hit is None or hit[0] is not plan:
        if getattr(fn, "arg_format", None) != ARG_FORMAT:
            fn.prepare(ARG_FORMAT)
        hit = _LAUNCH[id(plan)] = (plan, plan.grid, plan.scalars())
        if len(_LAUNCH) > 64:  # plans of sizes no longer seen
            for k in list(_LAUNCH)[:32]:
                _LAUNCH.pop(k, None)
    prepared(hit[1], BLOCK, stream, int(src_ptr), int(dst_ptr), *hit[2])


def cupy_kernel(kspec: "KernelSpec") -> Any:
    """The cupy RawKernel (NVRTC, no nvcc needed) for ``kspec``, cached."""
    import importlib

    cupy = importlib.import_module("cupy")
    key = ("cupy", cupy.cuda.runtime.getDevice(), kspec)
    k = _COMPILED.get(key)
    if k is None:
        k = cupy.RawKernel(kspec.source(), KERNEL_NAME)
        k.compile()
        _COMPILED[key] = k
    return k
