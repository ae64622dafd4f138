"""One definition of each word the CLI and the library share: precisions, backends, file kinds.

Every module and every click ``Choice`` imports these, so a new value appears everywhere at once
(three copies of the image suffixes once disagreed: ``run frames/`` read ``.tif`` files that
``calibrate frames/`` ignored).
"""

#: numeric precisions of a converted model / engine
PRECISIONS = ("fp32", "fp16", "int8")

#: inference backends; ``auto`` picks TensorRT, else torch on CUDA, else ONNX Runtime
BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")

#: still-image suffixes OpenCV reads (image folders for ``run`` and ``calibrate``)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: video-file suffixes read as videos (``calibrate`` folders, ``run`` sources)
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")

#: where a run keeps frames and model inputs (``run --memory``): ``auto`` picks per backend and GPU
MEMORY = ("auto", "numpy", "torch", "pycuda", "pycuda-pinned", "pycuda-mapped")

#: who preprocesses on a GPU path: ``auto`` (the fused kernel where it compiles, else the path's
#: fallback), ``kernel`` (the fused kernel or an error), ``torch-ops`` (torch path: torch operators),
#: ``host`` (pycuda path: numpy on the capture thread)
GPU_PREPROCESS = ("auto", "kernel", "torch-ops", "host")

#: the largest batch of a ``--dynamic-batch`` bundle (TensorRT profile maximum, torch.export
#: ``Dim`` maximum) unless its input shape asks for more: enough for 8 cameras through one engine
DYNAMIC_BATCH_MAX = 8

#: where bundles live on a board (``deploy``, ``agent``, ``service``: ``--root``)
DEFAULT_ROOT = "/opt/jetson-deploy"
