"""Loaders: a MODEL string -> something we can export (Polygraphy's ``XFromY`` style).

MODEL is one of (DESIGN.md, command-line contract):

- ``path/to/file.py:factory``  a Python file and a callable in it returning an ``nn.Module``
- ``package.module:factory``    the same, imported by module name
- a TorchScript file (``torch.jit.save``; any suffix but ``.pt2``/``.onnx``)
- a ``torch.export`` program (``.pt2``, ``torch.export.save``)
- an ONNX file (``.onnx``)

``--weights`` (a state dict) applies to the factory forms only and is loaded
strictly: a missing/unexpected key or a shape mismatch is an error listing them.
"""
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .._files import sha256_file
from .._lazy import require
from ..errors import BadInput

KIND_FACTORY = "factory"
KIND_TORCHSCRIPT = "torchscript"
KIND_EXPORTED = "exported-program"
KIND_ONNX = "onnx"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_LISTED_KEYS = 8


@dataclass
class LoadedModel:
    """What a MODEL string resolved to.

    ``module`` is an ``nn.Module`` (factory), a ``ScriptModule`` (TorchScript),
    the ``GraphModule`` of an exported program, or None for ONNX input, in which
    case ``onnx_path`` is set.  ``source`` goes into the manifest unchanged.
    """

    kind: str
    module: Any = None
    onnx_path: "Optional[Path]" = None
    exported_program: Any = None
    name_hint: str = "model"
    source: "Dict[str, Any]" = field(default_factory=dict)
    notes: "List[str]" = field(default_factory=list)

    @property
    def has_torch_reference(self) -> bool:
        return self.module is not None


def parse_model_arg(model: str) -> "Dict[str, str]":
    """Classify a MODEL string without importing anything heavy.

    Returns ``{"kind": ..., ...}``: factory forms carry ``file`` or ``module`` and
    ``factory``; file forms carry ``path``.
    """
    text = str(model).strip()
    if not text:
        raise BadInput("MODEL is empty: give file.py:factory, package.module:factory, a TorchScript, .pt2 or .onnx file")
    head, sep, tail = text.rpartition(":")
    # "C:\..." style drive letters never reach here on Linux; a colon followed by an
    # identifier is a factory reference.
    if sep and _IDENT.match(tail) and not os.path.exists(text):
        if head.endswith(".py") or "/" in head or os.sep in head:
            return {"kind": KIND_FACTORY, "file": head, "factory": tail}
        if _MODULE.match(head):
            return {"kind": KIND_FACTORY, "module": head, "factory": tail}
        raise BadInput("MODEL {!r}: before ':' must be a .py file or a dotted module name".format(text))
    path = Path(text)
    suffix = path.suffix.lower()
    if not path.exists():
        if suffix == ".py":
            raise BadInput("MODEL {!r}: name the factory too, as {}:FACTORY_FUNCTION".format(text, text))
        raise BadInput(
            "model file {} does not exist (MODEL is file.py:factory, package.module:factory, "
            "a TorchScript file, a .pt2 torch.export file or an .onnx file)".format(text)
        )
    if path.is_dir():
        raise BadInput("MODEL {} is a directory; give a model file or file.py:factory".format(text))
    if suffix == ".onnx":
        return {"kind": KIND_ONNX, "path": text}
    if suffix == ".pt2":
        return {"kind": KIND_EXPORTED, "path": text}
    if suffix == ".py":
        raise BadInput("MODEL {!r}: name the factory too, as {}:FACTORY_FUNCTION".format(text, text))
    return {"kind": KIND_TORCHSCRIPT, "path": text}


def _import_file(path: Path) -> Any:
    """Import a .py file under a private module name; its folder is importable meanwhile."""
    mod_name = "_jetson_deploy_model_{}".format(abs(hash(str(path.resolve()))))
    spec = importlib.util.spec_from_file_location(mod_name, str(path))
    if spec is None or spec.loader is None:
        raise BadInput("cannot import {} as Python source".format(path))
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BadInput:
        raise
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise BadInput("{}: syntax error at line {}: {}".format(path, exc.lineno, exc.msg))
    except (Exception, SystemExit) as exc:  # the user's module failed while importing
        sys.modules.pop(mod_name, None)
        raise BadInput("importing {} failed: {}: {}".format(path, type(exc).__name__, _one_line(exc)))
    finally:
        if added:
            try:
                sys.path.remove(folder)
            except ValueError:
                pass
    return module


def _one_line(exc: "BaseException") -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _call_factory(module: Any, factory: str, where: str) -> Any:
    fn = getattr(module, factory, None)
    if fn is None:
        own = [
            (not inspect.isfunction(v), n)
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        ]
        names = [n for _, n in sorted(own)]  # functions (the usual factories) first, then classes
        hint = " (callables there: {})".format(", ".join(names[:10])) if names else ""
        raise BadInput("{} has no factory {!r}{}".format(where, factory, hint))
    if not callable(fn):
        raise BadInput("{}:{} is not callable (a {}); it must be a function or class returning an nn.Module".format(where, factory, type(fn).__name__))
    try:
        obj = fn()
    except TypeError as exc:
        raise BadInput("calling {}:{}() failed: {} (the factory must work with no arguments)".format(where, factory, _one_line(exc)))
    except BadInput:
        raise
    except (Exception, SystemExit) as exc:
        raise BadInput("calling {}:{}() failed: {}: {}".format(where, factory, type(exc).__name__, _one_line(exc)))
    return obj


def load_state_dict_file(path: Any) -> "Dict[str, Any]":
    """Read a state dict (or a checkpoint holding one under a usual key)."""
    torch = require("torch", "loading --weights")
    p = Path(path)
    if not p.is_file():
        raise BadInput("weights file {} does not exist (--weights takes a state dict saved with torch.save)".format(p))
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput("cannot read weights file {}: {} (--weights takes a state dict saved with torch.save)".format(p, _one_line(exc)))
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(hasattr(v, "shape") for v in inner.values()):
                return dict(inner)
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise BadInput("weights file {} does not hold a state dict (a dict of parameter name -> tensor)".format(p))
    return dict(obj)


def _listing(keys: "List[str]") -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return shown + (" (+{} more)".format(more) if more > 0 else "")


def apply_weights(model: Any, state: "Dict[str, Any]", weights_path: Any) -> "List[str]":
    """Strictly load ``state`` into ``model``; returns notes; raises BadInput listing mismatches."""
    notes: "List[str]" = []
    own = model.state_dict()
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys) and not any(k.startswith("module.") for k in own):
        # Saved from nn.DataParallel / DistributedDataParallel: every key has the wrapper's prefix.
        state = {k[len("module."):]: v for k, v in state.items()}
        notes.append("weights: stripped the 'module.' prefix (saved from DataParallel)")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        "{} (file {} vs model {})".format(k, list(state[k].shape), list(own[k].shape))
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append("{} missing key(s): {}".format(len(missing), _listing(missing)))
    if unexpected:
        problems.append("{} unexpected key(s): {}".format(len(unexpected), _listing(unexpected)))
    if mismatched:
        problems.append("{} shape mismatch(es): {}".format(len(mismatched), _listing(mismatched)))
    if problems:
        raise BadInput("weights {} do not fit the model: {}".format(weights_path, "; ".join(problems)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BadInput("weights {} do not fit the model: {}".format(weights_path, _one_line(exc)))
    return notes


def load_model(model: Any, weights: Any = None) -> "LoadedModel":
    """Resolve MODEL (string, path or an ``nn.Module`` already built) into a :class:`LoadedModel`."""
    if not isinstance(model, (str, Path)):
        return _from_object(model, weights)
    parsed = parse_model_arg(str(model))
    kind = parsed["kind"]
    if weights is not None and kind != KIND_FACTORY:
        raise BadInput("--weights applies to file.py:factory and module:factory models; {} already holds its weights".format(model))
    if kind == KIND_FACTORY:
        return _from_factory(str(model), parsed, weights)
    path = Path(parsed["path"])
    source = {"model": str(model), "format": kind, "model_sha256": sha256_file(path)}
    if kind == KIND_ONNX:
        return LoadedModel(kind=kind, onnx_path=path, name_hint=_safe_name(path.stem), source=source)
    torch = require("torch", "loading {} models".format(kind))
    if kind == KIND_EXPORTED:
        try:
            ep = torch.export.load(str(path))
        except Exception as exc:
            raise BadInput("cannot load {} as a torch.export program: {}".format(path, _one_line(exc)))
        gm = ep.module()
        return LoadedModel(kind=kind, module=gm, exported_program=ep, name_hint=_safe_name(path.stem), source=source)
    try:
        ts = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise BadInput(
            "cannot load {} as TorchScript ({}); a state dict needs MODEL=file.py:factory --weights {}".format(path, _one_line(exc), path)
        )
    ts.eval()
    return LoadedModel(kind=kind, module=ts, name_hint=_safe_name(path.stem), source=source)


def params_sha256(module: Any) -> "Optional[str]":
    """sha256 over the module's state dict (names, dtypes, shapes, bytes): identifies the weights
    whatever file they came from (a factory may load them itself)."""
    import hashlib

    try:
        state = module.state_dict()
    except Exception:
        return None
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not hasattr(t, "detach"):
            continue
        t = t.detach().cpu().contiguous()
        h.update("{}|{}|{}\n".format(name, str(t.dtype), list(t.shape)).encode("utf-8"))
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return name or "model"


def _from_factory(text: str, parsed: "Dict[str, str]", weights: Any) -> "LoadedModel":
    torch = require("torch", "loading PyTorch models")
    factory = parsed["factory"]
    source: "Dict[str, Any]" = {"model": text, "format": KIND_FACTORY}
    if "file" in parsed:
        path = Path(parsed["file"])
        if not path.is_file():
            raise BadInput("model file {} does not exist (MODEL {})".format(path, text))
        if path.suffix.lower() != ".py":
            raise BadInput("model file {} must be a .py file for FILE:FACTORY".format(path))
        module = _import_file(path)
        where = str(path)
        source["model_sha256"] = sha256_file(path)
        name_hint = _safe_name(path.resolve().parent.name if path.stem == "__init__" else path.stem)
    else:
        mod_name = parsed["module"]
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            raise BadInput("cannot import module {!r} for MODEL {}: {}".format(mod_name, text, _one_line(exc)))
        except Exception as exc:
            raise BadInput("importing {} failed: {}: {}".format(mod_name, type(exc).__name__, _one_line(exc)))
        where = mod_name
        mod_file = getattr(module, "__file__", None)
        if mod_file and os.path.isfile(mod_file):
            source["model_sha256"] = sha256_file(mod_file)
        name_hint = _safe_name(mod_name.split(".")[-1] if mod_name.split(".")[-1] not in ("model", "models", "__init__") else mod_name.replace(".", "-"))
    obj = _call_factory(module, factory, where)
    if not isinstance(obj, torch.nn.Module):
        raise BadInput("{}:{}() returned a {}, not a torch.nn.Module".format(where, factory, type(obj).__name__))
    loaded = LoadedModel(kind=KIND_FACTORY, module=obj, name_hint=name_hint, source=source)
    _to_cpu(loaded)
    _maybe_weights(loaded, weights)
    obj.eval()
    return loaded


def _to_cpu(loaded: "LoadedModel") -> None:
    """Export and the parity reference run on the CPU; say so when the factory gave a GPU model."""
    module = loaded.module
    devices = {str(p.device) for p in list(module.parameters()) + list(module.buffers())}
    if devices - {"cpu"}:
        module.to("cpu")
        loaded.notes.append("moved the model from {} to cpu for export and the parity check".format(", ".join(sorted(devices - {"cpu"}))))


def _from_object(obj: Any, weights: Any) -> "LoadedModel":
    torch = require("torch", "converting PyTorch models")
    if not isinstance(obj, torch.nn.Module):
        raise BadInput("model must be a MODEL string or a torch.nn.Module, got {}".format(type(obj).__name__))
    loaded = LoadedModel(
        kind=KIND_FACTORY,
        module=obj,
        name_hint=_safe_name(type(obj).__name__.lower()),
        source={"model": "{}.{}".format(type(obj).__module__, type(obj).__name__), "format": "nn.Module"},
    )
    _maybe_weights(loaded, weights)
    obj.eval()
    return loaded


def _maybe_weights(loaded: "LoadedModel", weights: Any) -> None:
    if weights is None:
        return
    state = load_state_dict_file(weights)
    loaded.notes.extend(apply_weights(loaded.module, state, weights))
    loaded.source["weights"] = str(weights)
    loaded.source["weights_sha256"] = sha256_file(weights)
