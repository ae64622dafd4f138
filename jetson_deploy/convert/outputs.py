"""Output selection for models whose forward returns a tuple, list, dict or dataclass.

The forward result is flattened into ``(path, tensor)`` pairs: a tensor is ``"0"``;
tuple/list items are their indices, dict items their keys, dataclass and
namedtuple items their field names; nesting joins with ``.`` (``"aux.0"``).
``--select-output`` picks pairs by path, by a leaf name when unambiguous, or by position
in the flattened list.  The selection is exported in order and named after
``spec.outputs``.
"""
import dataclasses
from typing import Any, List, Optional, Sequence, Tuple

from ..errors import BadInput


def _is_tensor(x: Any) -> bool:
    return type(x).__name__ in ("Tensor", "Parameter") or (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "detach"))


def flatten_outputs(out: Any, prefix: str = "") -> "List[Tuple[str, Any]]":
    """Flatten a forward result into ``[(path, tensor), ...]`` in a stable order."""
    if _is_tensor(out):
        return [(prefix or "0", out)]
    items: "List[Tuple[str, Any]]" = []
    if isinstance(out, dict):
        pairs = [(str(k), v) for k, v in out.items()]
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        pairs = [(f.name, getattr(out, f.name)) for f in dataclasses.fields(out)]
    elif isinstance(out, tuple) and hasattr(out, "_fields"):
        pairs = [(str(f), getattr(out, f)) for f in out._fields]  # namedtuple
    elif isinstance(out, (list, tuple)):
        pairs = [(str(i), v) for i, v in enumerate(out)]
    elif out is None:
        return []
    else:
        raise BadInput("model output {!r} is a {}; outputs must be tensors, or tuples/lists/dicts/dataclasses of tensors".format(prefix or "output", type(out).__name__))
    for key, value in pairs:
        path = key if not prefix else prefix + "." + key
        if value is None:
            continue
        items.extend(flatten_outputs(value, path))
    return items


def get_path(out: Any, path: str) -> Any:
    """Follow a flattened path back into a forward result (used inside the export wrapper)."""
    if _is_tensor(out):
        return out
    cur = out
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur[part] if part in cur else cur[_dict_key(cur, part)]
        elif dataclasses.is_dataclass(cur) and not isinstance(cur, type):
            cur = getattr(cur, part)
        elif isinstance(cur, tuple) and hasattr(cur, "_fields") and part in cur._fields:
            cur = getattr(cur, part)
        else:
            cur = cur[int(part)]
    return cur


def _dict_key(d: Any, part: str) -> Any:
    for k in d:
        if str(k) == part:
            return k
    raise KeyError(part)


def select_outputs(paths: "Sequence[str]", selectors: "Optional[Sequence[Any]]", n_names: int) -> "List[str]":
    """Pick output paths.

    ``selectors`` are names (paths or unambiguous leaf names) or integer indices into
    ``paths``; None keeps all outputs, which must then match the spec's number of
    output names (``n_names``).
    """
    paths = list(paths)
    if not paths:
        raise BadInput("the model's forward returned no tensors")
    if not selectors:
        if len(paths) != n_names:
            raise BadInput(
                "the model returns {} outputs ({}) but the spec names {}: choose with --select-output NAME_OR_INDEX "
                "(repeatable) or list {} names under 'outputs' in the spec".format(len(paths), ", ".join(paths), n_names, len(paths))
            )
        return paths
    chosen: "List[str]" = []
    for sel in selectors:
        path = _resolve(paths, sel)
        if path in chosen:
            raise BadInput("--select-output {!r} selects {!r} twice".format(sel, path))
        chosen.append(path)
    if len(chosen) != n_names:
        raise BadInput(
            "--select-output kept {} output(s) ({}) but the spec names {}: the spec's 'outputs' list gives the exported names, one per kept output".format(
                len(chosen), ", ".join(chosen), n_names
            )
        )
    return chosen


def _resolve(paths: "List[str]", sel: Any) -> str:
    text = str(sel).strip()
    if text in paths:
        return text
    if text.lstrip("-").isdigit():
        i = int(text)
        if -len(paths) <= i < len(paths):
            return paths[i]
        raise BadInput("--select-output {} is out of range: the model returns {} outputs ({})".format(i, len(paths), ", ".join(paths)))
    leaf = [p for p in paths if p.split(".")[-1] == text]
    if len(leaf) == 1:
        return leaf[0]
    if len(leaf) > 1:
        raise BadInput("--select-output {!r} is ambiguous: {}".format(text, ", ".join(leaf)))
    raise BadInput("--select-output {!r} is not an output of the model (it returns: {})".format(text, ", ".join(paths)))


def describe_selection(paths: "Sequence[str]", chosen: "Sequence[str]", names: "Sequence[str]") -> str:
    """One line saying which outputs were kept (and under which name) and which dropped."""
    kept = ", ".join("{} -> {}".format(p, n) if p != n else p for p, n in zip(chosen, names))
    dropped = [p for p in paths if p not in chosen]
    return "outputs kept: {}{}".format(kept, "; dropped: " + ", ".join(dropped) if dropped else "")


def make_selector_module(model: Any, chosen: "Sequence[str]", single_tensor: bool) -> Any:
    """Wrap ``model`` so forward returns exactly the chosen tensors, as a tuple, in order."""
    torch = __import__("torch")

    class OutputSelector(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.paths = list(chosen)
            # The inner model is already in eval mode; don't call .eval() (a torch.export
            # GraphModule refuses train()), just mark the wrapper.
            self.training = False

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            if single_tensor:
                return out
            picked = tuple(get_path(out, p) for p in self.paths)
            return picked[0] if len(picked) == 1 else picked

    return OutputSelector(model)
