"""Test doubles for TensorRT, pycuda and torch2trt.

They are *doubles*, not TensorRT: they mirror the documented Python APIs of
TensorRT 8.2 / 8.5 / 8.6 / 10.x (names, signatures, return conventions) and
compute real outputs with ONNX Runtime over host memory, so code written against
the real API can be exercised on a CPU-only machine.  See ``tensorrt_double``.
"""
