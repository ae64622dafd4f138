"""The torch CUDA path's preprocessing: the fused kernel (:mod:`.gpu_preprocess`) through cupy on
torch's stream (:class:`TorchKernelPreprocess`), or the same maths in torch operators
(:class:`TorchPreprocess`); :func:`torch_preprocessor` picks one."""
import logging
from typing import Any, Dict, Optional, Tuple

from ..preprocess import LETTERBOX_FILL, letterbox_params, normalize_constants
from ..spec import ModelSpec
from .gpu_preprocess import BLOCK, GRAY_WEIGHTS, Plan, cupy_kernel, kernel_spec, make_plan

log = logging.getLogger(__name__)


class TorchKernelPreprocess:
    """Torch CUDA path: the fused kernel through cupy on torch's current stream.

    ``__call__(frame)`` takes a uint8 HxWxC CUDA tensor (or a UVA view of a pinned/mapped frame)
    and returns the model input (1,C,H,W) / (1,H,W,C); ``out=`` writes into a given tensor.
    """

    kind = "cuda-kernel (cupy)"

    def __init__(self, spec: "ModelSpec", device: Any, out_dtype: "Optional[str]" = None,
                 channels_last: bool = False) -> None:
        import importlib

        self.torch = importlib.import_module("torch")
        self.cupy = importlib.import_module("cupy")
        self.spec = spec
        self.device = device
        self.channels_last = bool(channels_last and spec.layout == "nchw" and spec.color != "gray")
        self.kspec = kernel_spec(spec, out_dtype, layout="nhwc" if self.channels_last else None)
        self.kernel = cupy_kernel(self.kspec)
        self._plans: "Dict[Tuple[int, ...], Plan]" = {}

    def plan(self, frame: Any) -> "Plan":
        key = tuple(int(s) for s in frame.shape) + (int(frame.stride(0)),)
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = make_plan(self.spec, tuple(frame.shape), self.kspec, pitch=int(frame.stride(0)))
        return p

    def empty(self, plan: "Plan") -> Any:
        torch = self.torch
        out = torch.empty((1,) + plan.out_shape, dtype=getattr(torch, self.kspec.out_dtype), device=self.device)
        return out.permute(0, 3, 1, 2) if self.channels_last else out

    def __call__(self, frame: Any, out: Any = None) -> Any:
        p = self.plan(frame)
        if out is None:
            out = self.empty(p)
        stream = self.torch.cuda.current_stream(self.device)
        with self.cupy.cuda.ExternalStream(stream.cuda_stream):
            self.kernel(p.grid, BLOCK, p.args(frame.data_ptr(), out.data_ptr()))
        return out


class TorchPreprocess:
    """GPU (or CPU) preprocessing with torch ops: the fused kernel's maths (:mod:`.gpu_preprocess`).

    uint8 HxW[xC] frame tensor (BGR, BGRA or gray) -> the model input (1,C,H,W) (or NHWC): bilinear
    resize (or letterbox) rounded half up to uint8 levels (``floor(x + 0.5)``, as the kernel and the
    host path round -- ``torch.round`` rounds half to even), alpha dropped, OpenCV's fixed-point gray
    weights, colour order, ``x*scale-mean)/std``.
    """

    kind = "torch-ops"

    def __init__(self, spec: "ModelSpec", device: Any, out_dtype: "Optional[str]" = None,
                 channels_last: bool = False) -> None:
        from .._lazy import require

        torch = require("torch", "GPU preprocessing")
        self.torch = torch
        self.spec = spec
        self.out_dtype = out_dtype or spec.dtype
        self.channels_last = bool(channels_last and spec.layout == "nchw")
        mul, off = normalize_constants(spec)
        self.mul = torch.from_numpy(mul).to(device).view(1, -1, 1, 1)
        self.off = torch.from_numpy(off).to(device).view(1, -1, 1, 1)
        # cv2.cvtColor(BGR2GRAY) on uint8: (B*1868 + G*9617 + R*4899 + 8192) >> 14, exact in float32
        self.gray_w = torch.tensor([float(v) for v in GRAY_WEIGHTS], device=device).view(1, 3, 1, 1)

    def __call__(self, frame_u8: Any, out: Any = None) -> Any:
        x = self._run(frame_u8)
        if out is None:
            return x
        out.copy_(x)
        return out

    def _resized(self, x: Any, w: int, h: int) -> Any:
        """(1,C,h,w) float levels -> the model size (letterboxed with the fill), rounded half up."""
        torch = self.torch
        F = torch.nn.functional
        spec = self.spec
        dst_w, dst_h = spec.resize_wh
        if (w, h) == (dst_w, dst_h):
            return x
        if not spec.keep_aspect:
            x = F.interpolate(x, size=(dst_h, dst_w), mode="bilinear", align_corners=False)
            return torch.floor(x + 0.5).clamp_(0, 255)
        r, px, py = letterbox_params(w, h, spec)
        nw, nh = int(round(w * r)), int(round(h * r))
        x = torch.floor(F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False) + 0.5).clamp_(0, 255)
        return F.pad(x, (px, dst_w - nw - px, py, dst_h - nh - py), value=float(LETTERBOX_FILL))

    def _run(self, frame_u8: Any) -> Any:
        torch = self.torch
        spec = self.spec
        if frame_u8.dim() == 2:
            frame_u8 = frame_u8.unsqueeze(-1)
        h, w, c = int(frame_u8.shape[0]), int(frame_u8.shape[1]), int(frame_u8.shape[2])
        x = frame_u8.permute(2, 0, 1).unsqueeze(0).float()  # 1,C,H,W in source order (BGR[A] or gray)
        if c == 4:
            x = x[:, :3]  # BGRA: alpha dropped, as the kernel and the host path do
        x = self._resized(x, w, h)
        if spec.color == "gray":
            if x.shape[1] == 3:
                x = torch.floor(((x * self.gray_w).sum(1, keepdim=True) + 8192.0) / 16384.0)
        else:
            if x.shape[1] == 1:  # a gray frame feeds a colour model as three equal channels
                x = x.expand(-1, 3, -1, -1)
            if spec.color == "rgb":
                x = x.flip(1)
        if self.out_dtype == "uint8":
            x = x.to(torch.uint8)
        else:
            x = x * self.mul + self.off
            if self.out_dtype == "float16":
                x = x.half()
        if spec.layout == "nhwc":
            x = x.permute(0, 2, 3, 1)
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()


def torch_preprocessor(spec: "ModelSpec", device: Any, out_dtype: "Optional[str]" = None,
                       channels_last: bool = False, prefer: str = "auto") -> Any:
    """The GPU preprocessor for the torch CUDA path: ``prefer`` ``auto`` takes the fused kernel
    through cupy when it imports and compiles, else torch ops; ``kernel`` the kernel or BadInput;
    ``torch-ops`` the torch ops.  ``.kind`` says which ran (``run`` prints it)."""
    from .._lazy import has_module
    from ..errors import BadInput

    if prefer in ("auto", "kernel"):
        why = "cupy is not installed"
        if has_module("cupy"):
            try:
                return TorchKernelPreprocess(spec, device, out_dtype=out_dtype, channels_last=channels_last)
            except Exception as exc:  # no NVRTC, unsupported device: the torch ops do the same maths
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if prefer == "kernel":
            raise BadInput("gpu_preprocess 'kernel' on the torch CUDA path needs the fused kernel through cupy: {}".format(why))
        if has_module("cupy"):
            log.warning("GPU preprocessing kernel unavailable through cupy (%s); using torch ops", why)
    return TorchPreprocess(spec, device, out_dtype=out_dtype, channels_last=channels_last)
