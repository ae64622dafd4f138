"""GLib key files (DeepStream's config format), written as ``g_key_file_set_*`` would write them.

nvinfer and deepstream-app read their configs with ``g_key_file_load_from_file`` and the typed
getters, so values are escaped by GLib's rules (``\\s`` for a leading space, ``\\n``, ``\\t``,
``\\r``, ``\\\\``, and ``\\;`` inside lists) and numbers are written so they read back exactly.
Each key is checked against its table (:mod:`.nvinfer_keys`) before it is written.
"""
from typing import Any, Dict, List, Sequence, Tuple

from ...errors import BadInput

Entry = Tuple[str, Any]  # (key, value)


def escape(text: str, in_list: bool = False) -> str:
    """One string value as GLib's ``g_key_file_parse_string_as_value`` escapes it."""
    if "\0" in text:
        raise BadInput("a DeepStream config value cannot hold a NUL byte: {!r}".format(text))
    out = []
    for i, ch in enumerate(text):
        if ch == " " and i == 0:
            out.append("\\s")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\\":
            out.append("\\\\")
        elif ch == ";" and in_list:
            out.append("\\;")
        else:
            out.append(ch)
    return "".join(out)


def _number(v: Any, kind: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("{} value must be a number, got {!r}".format(kind, v))
    if kind == "int":
        if int(v) != v:
            raise TypeError("int value {!r} is not whole".format(v))
        return str(int(v))
    return repr(float(v))  # the shortest text that reads back as the same double


def format_value(kind: str, value: Any) -> str:
    """``value`` as the text of a key of type ``kind`` (see :mod:`.nvinfer_keys`)."""
    if kind in ("int", "double"):
        return _number(value, kind)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError("bool value must be True or False, got {!r}".format(value))
        return "1" if value else "0"
    if kind in ("string", "path"):
        return escape(str(value))
    if kind in ("int-list", "double-list"):
        return ";".join(_number(v, kind[:-5]) for v in value)
    if kind == "string-list":
        return ";".join(escape(str(v), in_list=True) for v in value)
    raise TypeError("unknown key type {!r}".format(kind))


def render(groups: "Sequence[Tuple[str, Dict[str, Tuple[str, Any]], List[Entry]]]", header: "Sequence[str]" = ()) -> str:
    """A key file: ``groups`` is [(name, key table, [(key, value), ...])]; ``header`` comment lines first.

    A key missing from its group's table is a bug in the exporter (KeyError), never written.
    """
    lines = ["# " + h if h else "#" for h in header]
    for name, table, entries in groups:
        if lines:
            lines.append("")
        lines.append("[{}]".format(name))
        seen = set()
        for key, value in entries:
            if key in seen:
                raise KeyError("[{}] {} written twice".format(name, key))
            seen.add(key)
            if key not in table:
                raise KeyError("[{}] {} is not in the DeepStream key table (nvinfer_keys.py)".format(name, key))
            lines.append("{}={}".format(key, format_value(table[key][0], value)))
    return "\n".join(lines) + "\n"
