"""What am I running on: Jetson model, L4T/JetPack, TensorRT, CUDA, GPU.

Every probe is defensive: a missing or broken piece reads "not installed" (or
None), never a traceback, because ``info`` is the first thing a user runs on a
half-set-up board.  ``root`` lets tests point at fake ``/proc`` and ``/etc`` trees.
"""
import importlib
import json
import platform as _pyplatform
import re
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

NOT_INSTALLED = "not installed"
NANO_NOTE = "SM 5.3 (Jetson Nano/TX1) has fast FP16 and no fast INT8: build FP16 engines"

# L4T release -> JetPack (NVIDIA's JetPack archive); keys are (major, minor, patch)
_L4T_TO_JETPACK = [
    ((32, 6, 1), "4.6"),
    ((32, 7, 1), "4.6.1"),
    ((32, 7, 2), "4.6.2"),
    ((32, 7, 3), "4.6.3"),
    ((32, 7, 4), "4.6.4"),
    ((32, 7, 5), "4.6.5"),
    ((32, 7, 6), "4.6.6"),
    ((35, 1, 0), "5.0.2"),
    ((35, 2, 1), "5.1"),
    ((35, 3, 1), "5.1.1"),
    ((35, 4, 1), "5.1.2"),
    ((35, 5, 0), "5.1.3"),
    ((35, 6, 0), "5.1.4"),
    ((35, 6, 1), "5.1.5"),
    ((36, 2, 0), "6.0 DP"),
    ((36, 3, 0), "6.0"),
    ((36, 4, 0), "6.1"),
    ((36, 4, 3), "6.2"),
    ((36, 4, 4), "6.2.1"),
]

# Jetson family (matched in /proc/device-tree/model) -> compute capability
_FAMILY_SM = [
    ("orin", 87),
    ("xavier", 72),
    ("tx2", 62),
    ("nano", 53),  # after "orin": "Orin Nano" is SM 8.7
    ("tx1", 53),
    ("thor", 110),
]


def parse_version(text: "Optional[str]") -> "Tuple[int, ...]":
    """'8.6.2.3' -> (8, 6, 2, 3); compare versions as tuples, never as strings."""
    if not text:
        return ()
    nums = re.findall(r"\d+", str(text).split("+")[0])
    return tuple(int(n) for n in nums)


def _read(root: Path, rel: str) -> "Optional[str]":
    try:
        return (root / rel.lstrip("/")).read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def jetson_model(root: Path) -> "Optional[str]":
    model = _read(root, "/proc/device-tree/model")
    if model and ("jetson" in model.lower() or "nvidia" in model.lower()):
        return model
    return None


def l4t_release(root: Path) -> "Optional[str]":
    """'# R35 (release), REVISION: 4.1, ...' -> '35.4.1'."""
    text = _read(root, "/etc/nv_tegra_release")
    if not text:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    rev = m.group(2).strip(".")
    parts = rev.split(".")
    if len(parts) == 1:
        parts.append("0")
    return "{}.{}".format(m.group(1), ".".join(parts))


def jetpack_for_l4t(l4t: "Optional[str]") -> "Optional[str]":
    v = parse_version(l4t)
    if not v:
        return None
    v3 = (v + (0, 0, 0))[:3]
    best = None
    for key, jp in _L4T_TO_JETPACK:
        if key[:2] == v3[:2] and key <= v3:
            best = jp
    return best


def sm_for_model(model: "Optional[str]") -> "Optional[int]":
    if not model:
        return None
    low = model.lower()
    for family, sm in _FAMILY_SM:
        if family in low:
            return sm
    return None


def _module_version(name: str) -> "Tuple[str, Optional[Any]]":
    """(version or 'not installed', module or None); import errors of any kind are absorbed."""
    try:
        mod = importlib.import_module(name)
    except (Exception, SystemExit) as exc:  # broken installs (e.g. PyPI tensorrt stubs) raise anything, or exit
        if isinstance(exc, ImportError):
            return NOT_INSTALLED, None
        return "broken ({}: {})".format(type(exc).__name__, str(exc).splitlines()[0][:80] if str(exc) else ""), None
    version = getattr(mod, "__version__", None) or getattr(mod, "VERSION_TEXT", None) or getattr(mod, "VERSION", None)
    if isinstance(version, (tuple, list)):  # pycuda: VERSION = (2026, 1)
        version = ".".join(str(v) for v in version)
    return str(version or "unknown"), mod


def _opencv_info() -> "Dict[str, Any]":
    version, cv2 = _module_version("cv2")
    out: "Dict[str, Any]" = {"version": version, "gstreamer": None, "cuda": None}
    if cv2 is not None:
        try:
            build = cv2.getBuildInformation()
            m = re.search(r"GStreamer:\s*(\S+)", build)
            out["gstreamer"] = bool(m and m.group(1).upper().startswith(("YES", "1")))
            out["cuda"] = bool(re.search(r"NVIDIA CUDA:\s*YES", build))
        except Exception:
            pass
    return out


def _cuda_version(root: Path) -> "Optional[str]":
    text = _read(root, "/usr/local/cuda/version.json")
    if text:
        try:
            return json.loads(text)["cuda"]["version"]
        except (ValueError, KeyError, TypeError):
            pass
    text = _read(root, "/usr/local/cuda/version.txt")
    if text:
        m = re.search(r"([\d.]+)", text)
        if m:
            return m.group(1)
    return None


def _gpu_from_pycuda() -> "Optional[Dict[str, Any]]":
    try:
        import pycuda.driver as cuda  # noqa: F401  (lazy: only when probing)

        cuda.init()
        if cuda.Device.count() < 1:
            return None
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        return {
            "name": dev.name(),
            "sm": major * 10 + minor,
            "integrated": bool(dev.get_attribute(cuda.device_attribute.INTEGRATED)),
            "memory_mb": dev.total_memory() // (1 << 20),
            "via": "pycuda",
            "driver": str(cuda.get_driver_version()),
        }
    except Exception:
        return None


def _gpu_from_torch(torch: Any) -> "Optional[Dict[str, Any]]":
    try:
        if not torch.cuda.is_available():
            return None
        p = torch.cuda.get_device_properties(0)
        return {
            "name": p.name,
            "sm": p.major * 10 + p.minor,
            "integrated": bool(getattr(p, "is_integrated", False)),
            "memory_mb": int(p.total_memory) // (1 << 20),
            "via": "torch",
        }
    except Exception:
        return None


def probe(root: str = "/", with_gpu: bool = True) -> "Dict[str, Any]":
    """Everything ``info`` prints, as a JSON-serialisable dict."""
    rootp = Path(root)
    model = jetson_model(rootp)
    l4t = l4t_release(rootp)
    trt_version, _ = _module_version("tensorrt")
    pycuda_version, _ = _module_version("pycuda")
    torch_version, torch = _module_version("torch")
    ort_version, ort = _module_version("onnxruntime")
    info: "Dict[str, Any]" = {
        "jetson": {
            "model": model,
            "l4t": l4t,
            "jetpack": jetpack_for_l4t(l4t),
        },
        "python": {"version": _pyplatform.python_version(), "executable": sys.executable},
        "machine": _pyplatform.machine(),
        "tensorrt": trt_version,
        "cuda": _cuda_version(rootp) or (getattr(getattr(torch, "version", None), "cuda", None) if torch else None),
        "pycuda": pycuda_version,
        "torch": torch_version,
        "onnxruntime": ort_version,
        "onnxruntime_providers": list(ort.get_available_providers()) if ort is not None else [],
        "opencv": _opencv_info(),
        "gpu": None,
    }
    gpu = None
    if with_gpu:
        gpu = _gpu_from_pycuda() if pycuda_version != NOT_INSTALLED else None
        if gpu is None and torch is not None:
            gpu = _gpu_from_torch(torch)
    if gpu is None and model is not None:
        gpu = {"name": model, "sm": sm_for_model(model), "integrated": True, "via": "device-tree"}
    info["gpu"] = gpu
    if info["cuda"] is None:
        info["cuda"] = NOT_INSTALLED
    return info


def format_info(info: "Dict[str, Any]") -> str:
    """Human-readable, aligned, one fact a line."""
    j = info["jetson"]
    gpu = info.get("gpu")
    cv = info["opencv"]
    if cv["version"] == NOT_INSTALLED or cv["version"].startswith("broken"):
        cv_text = cv["version"]
    else:
        cv_text = "{} (GStreamer: {}, CUDA: {})".format(
            cv["version"], _yn(cv.get("gstreamer")), _yn(cv.get("cuda"))
        )
    if gpu:
        gpu_text = "{} (SM {}, {}{})".format(
            gpu.get("name"),
            _sm_text(gpu.get("sm")),
            "integrated" if gpu.get("integrated") else "discrete",
            ", {} MiB".format(gpu["memory_mb"]) if gpu.get("memory_mb") else "",
        )
    else:
        gpu_text = "none found"
    rows = [
        ("Jetson", j["model"] or "not a Jetson"),
        ("L4T", j["l4t"] or "-"),
        ("JetPack", j["jetpack"] or ("unknown for this L4T" if j["l4t"] else "-")),
        ("Python", "{} ({})".format(info["python"]["version"], info["machine"])),
        ("TensorRT", info["tensorrt"]),
        ("CUDA", info["cuda"]),
        ("pycuda", info["pycuda"]),
        ("torch", info["torch"]),
        ("onnxruntime", "{}{}".format(info["onnxruntime"], " [" + ", ".join(info["onnxruntime_providers"]) + "]" if info["onnxruntime_providers"] else "")),
        ("OpenCV", cv_text),
        ("GPU", gpu_text),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["{}  {}".format(k.ljust(width), v) for k, v in rows]
    if gpu and gpu.get("sm") == 53:
        lines.append("note: {}".format(NANO_NOTE))
    return "\n".join(lines)


def _yn(v: "Optional[bool]") -> str:
    return "unknown" if v is None else ("yes" if v else "no")


def _sm_text(sm: "Optional[int]") -> str:
    return "?" if sm is None else "{}.{}".format(sm // 10, sm % 10)
