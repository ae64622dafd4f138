"""Bundles: the versioned, verifiable, signable unit that users flash and devices trust.

Format: docs/bundle-format.md.  Reading and verifying needs only the standard
library plus ``jsonschema`` (and ``cryptography`` for signatures): no torch, no onnx.

::

    from jetson_deploy.bundle import BundleWriter, open_bundle, add_engine, engine_filename

    with BundleWriter("out/demo-0.1.0", name="demo", version="0.1.0") as w:
        w.add_file("model.onnx", "model.onnx", kind="onnx")
        w.manifest["spec"] = spec.to_dict()
    b = open_bundle("out/demo-0.1.0")          # verifies sizes + sha256 of every artifact
    onnx_path = b.path("onnx")
"""
from .manifest import (
    KINDS,
    SCHEMA_VERSION,
    calib_cache_filename,
    engine_filename,
    load_schema,
    manifest_bytes,
    normalize_trt_version,
    validate_manifest,
)
from .reader import Bundle, check_files, onnx_model, open_bundle
from .archive import pack_bundle, unpack_archive
from .writer import BundleWriter, add_engine

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleWriter",
    "add_engine",
    "calib_cache_filename",
    "check_files",
    "engine_filename",
    "load_schema",
    "manifest_bytes",
    "normalize_trt_version",
    "onnx_model",
    "open_bundle",
    "pack_bundle",
    "unpack_archive",
    "validate_manifest",
]

from .engine_cache import EngineCache, default_cache_dir  # noqa: E402
from .report import inspect_bundle, verify_bundle  # noqa: E402
from .select import device_target, find_engine, resolve_engine  # noqa: E402
from .sign import keygen, sign_bundle, signature_state, verify_signature  # noqa: E402

__all__ += [
    "EngineCache",
    "default_cache_dir",
    "inspect_bundle",
    "keygen",
    "resolve_engine",
    "find_engine",
    "device_target",
    "sign_bundle",
    "signature_state",
    "verify_bundle",
    "verify_signature",
]
