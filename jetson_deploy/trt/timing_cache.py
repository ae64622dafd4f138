"""Timing cache: loaded into the builder config before a build, written back atomically after.

A corrupted file starts an empty cache rather than failing the build; a cache from another
device (``set_timing_cache`` returns False: its verification header holds the CUDA device
properties -- NvInfer.h 8.2 L8401-8419 / 10.3 L9268-9286) is replaced by a fresh one that the
build fills and saves; TensorRT versions without timing caches ignore the path.
"""
import logging
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from .._files import atomic_write_bytes

log = logging.getLogger(__name__)


def load_timing_cache(feats: Any, config: Any, path: "Optional[Union[str, Path]]") -> "Tuple[Optional[Path], Optional[bool]]":
    """(path to save back to, whether a cache was read); (None, None) when there is nothing to do."""
    if path is None or not feats.timing_cache:
        return None, None
    tc_path = Path(path)
    data = tc_path.read_bytes() if tc_path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None:  # corrupted file: start empty rather than fail the build
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, False):  # bool, never raises (pyCore.cpp 8.2 L805, 10.3 L1482)
        log.warning("timing cache %s was made on another GPU (TensorRT refused it): rebuilding it", tc_path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
        return tc_path, False
    return tc_path, bool(data)


def save_timing_cache(config: Any, path: Path) -> "Optional[str]":
    """Write the config's timing cache to ``path`` atomically; the path written, or None."""
    cache = config.get_timing_cache()
    if cache is None:
        return None
    atomic_write_bytes(path, bytes(cache.serialize()))
    return str(path)
