"""A strict reader of GLib key files, for checking DeepStream configs where PyGObject is not installed.

Follows GLib's key-file format (GLib reference, "GKeyFile": groups ``[name]``, ``key=value``, ``#``
comments, escapes ``\\s \\n \\t \\r \\\\`` and ``\\;`` inside lists) and is stricter than GLib where
GLib would silently accept a mistake: a key before any group, a key or group given twice, an unknown
escape, a typed value that does not parse whole.  The typed getters mirror ``g_key_file_get_integer``,
``_double``, ``_boolean``, ``_string``, ``_integer_list``, ``_double_list``, ``_string_list``.
"""
import re
from typing import Any, Dict, List

_KEY = re.compile(r"^[A-Za-z0-9-]+$")
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_ESC = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


class KeyFileError(ValueError):
    pass


def parse(text: str) -> "Dict[str, Dict[str, str]]":
    """{group: {key: raw value}} in file order; KeyFileError on anything GLib rejects or we call a mistake."""
    groups: "Dict[str, Dict[str, str]]" = {}
    current = None
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or any(c in stripped[1:-1] for c in "[]") or not stripped[1:-1]:
                raise KeyFileError("line {}: bad group header {!r}".format(n, line))
            current = stripped[1:-1]
            if current in groups:
                raise KeyFileError("line {}: group [{}] given twice".format(n, current))
            groups[current] = {}
            continue
        if current is None:
            raise KeyFileError("line {}: key before any group: {!r}".format(n, line))
        if "=" not in line:
            raise KeyFileError("line {}: not a key=value line: {!r}".format(n, line))
        key, value = line.split("=", 1)
        key = key.strip()
        if not _KEY.match(key):
            raise KeyFileError("line {}: bad key {!r}".format(n, key))
        if key in groups[current]:
            raise KeyFileError("line {}: [{}] {} given twice".format(n, current, key))
        groups[current][key] = value.lstrip(" \t")
    return groups


def unescape(raw: str, in_list: bool = False) -> "List[str]":
    """The value's string(s): one for a plain value, the items of a ';' list (``in_list``)."""
    items, cur, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            if i + 1 >= len(raw):
                raise KeyFileError("value {!r} ends in a lone backslash".format(raw))
            nxt = raw[i + 1]
            if nxt in _ESC:
                cur.append(_ESC[nxt])
            elif nxt == ";" and in_list:
                cur.append(";")
            else:
                raise KeyFileError("value {!r} holds the invalid escape \\{}".format(raw, nxt))
            i += 2
            continue
        if ch == ";" and in_list:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if not in_list or cur:
        items.append("".join(cur))
    return items


def _int(s: str) -> int:
    if not _INT.match(s.strip()):
        raise KeyFileError("{!r} is not an integer".format(s))
    return int(s)


def _double(s: str) -> float:
    if not _FLOAT.match(s.strip()):
        raise KeyFileError("{!r} is not a number".format(s))
    return float(s)


def _bool(s: str) -> bool:
    if s.strip() in ("true", "1"):
        return True
    if s.strip() in ("false", "0"):
        return False
    raise KeyFileError("{!r} is not a boolean".format(s))


def typed(raw: str, kind: str) -> Any:
    """``raw`` read as nvinfer reads a key of type ``kind`` (the types of jetson_deploy.bundle.export.nvinfer_keys)."""
    if kind in ("string", "path"):
        return unescape(raw)[0]
    if kind == "int":
        return _int(unescape(raw)[0])
    if kind == "double":
        return _double(unescape(raw)[0])
    if kind == "bool":
        return _bool(unescape(raw)[0])
    items = unescape(raw, in_list=True)
    if kind == "int-list":
        return [_int(x) for x in items]
    if kind == "double-list":
        return [_double(x) for x in items]
    if kind == "string-list":
        return items
    raise KeyFileError("unknown key type {!r}".format(kind))
