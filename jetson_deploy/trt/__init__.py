"""TensorRT compatibility layer: one place that knows which TensorRT API to call.

TensorRT is imported lazily (:func:`load_tensorrt`), its version is compared as an
int tuple, and every API difference between TensorRT 8.2 (JetPack 4.6), 8.5
(JetPack 5), 8.6 and 10.x (JetPack 6) is decided by feature detection
(:func:`features`), never by comparing version strings.  See docs/tensorrt.md.
"""
from .compat import (  # noqa: F401
    Features,
    calibration_header,
    calibration_version_int,
    features,
    load_tensorrt,
    trt_version,
    version_tuple,
)
from .logger import ParserIssue, make_logger, parser_issues, format_parser_failure  # noqa: F401
