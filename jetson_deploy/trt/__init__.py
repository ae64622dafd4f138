"""TensorRT compatibility layer: one place that knows which TensorRT API to call.

TensorRT is imported lazily (:func:`load_tensorrt`), its version is compared as an
int tuple, and every API difference between TensorRT 8.2 (JetPack 4.6), 8.5
(JetPack 5), 8.6 and 10.x (JetPack 6) is decided by feature detection
(:func:`features`), never by comparing version strings.  See docs/tensorrt.md.
"""
from .compat import (
    Features,
    calibration_header,
    calibration_version_int,
    features,
    load_tensorrt,
    trt_version,
    version_tuple,
)
from .logger import ParserIssue, format_parser_failure, make_logger, parser_issues

# The package's public names (docs/tensorrt.md: ``jetson_deploy.trt.features()``, ``version_tuple``).
__all__ = [
    "Features", "ParserIssue", "calibration_header", "calibration_version_int", "features", "format_parser_failure",
    "load_tensorrt", "make_logger", "parser_issues", "trt_version", "version_tuple",
]
