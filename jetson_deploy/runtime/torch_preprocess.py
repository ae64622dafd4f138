"""The torch CUDA path's preprocessing: the fused kernel (:mod:`.gpu_preprocess`) through cupy on
torch's stream (:class:`TorchKernelPreprocess`), or the same maths in torch operators
(:class:`TorchPreprocess`); :func:`torch_preprocessor` picks one."""
import logging
from typing import Any, Dict, Optional, Tuple

from ..preprocess import LETTERBOX_FILL, letterbox_params, normalize_constants
from ..spec import ModelSpec
from .gpu_preprocess import BLOCK, Plan, cupy_kernel, kernel_spec, make_plan

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
    """GPU (or CPU) preprocessing with torch: the maths of :func:`jetson_deploy.preprocess.preprocess`.

    uint8 HxWx3 BGR frame tensor -> the model input (1,C,H,W) (or NHWC): bilinear resize (or
    letterbox) rounded to uint8 levels like the host path, colour order, ``x*scale-mean)/std``.
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
        self.gray_w = torch.tensor([0.114, 0.587, 0.299], device=device).view(1, 3, 1, 1)

    def __call__(self, frame_u8: Any, out: Any = None) -> Any:
        x = self._run(frame_u8)
        if out is None:
            return x
        out.copy_(x)
        return out

    def _run(self, frame_u8: Any) -> Any:
        torch = self.torch
        F = torch.nn.functional
        spec = self.spec
        h, w = int(frame_u8.shape[0]), int(frame_u8.shape[1])
        x = frame_u8.permute(2, 0, 1).unsqueeze(0).float()  # 1,3,H,W (BGR)
        dst_w, dst_h = spec.resize_wh
        if (w, h) != (dst_w, dst_h):
            if spec.keep_aspect:
                r, px, py = letterbox_params(w, h, spec)
                nw, nh = int(round(w * r)), int(round(h * r))
                x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False).round_().clamp_(0, 255)
                x = F.pad(x, (px, dst_w - nw - px, py, dst_h - nh - py), value=float(LETTERBOX_FILL))
            else:
                x = F.interpolate(x, size=(dst_h, dst_w), mode="bilinear", align_corners=False).round_().clamp_(0, 255)
        if spec.color == "rgb":
            x = x.flip(1)
        elif spec.color == "gray":
            x = (x * self.gray_w).sum(1, keepdim=True).round_()
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
