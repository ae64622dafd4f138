"""Protocol-buffer text format, enough for Triton's ``config.pbtxt`` (``text_format.Parse`` reads it back).

A message is a :class:`Msg` of ``(field, value)`` pairs: value an int, float, bool, :class:`Enum`
(written bare), str (quoted), a list of scalars (``[ 1, 3 ]``), a :class:`Msg` or a list of them.
"""
from typing import Any, List, Tuple


class Enum(str):
    """An enum value, written without quotes (``TYPE_FP32``)."""


class Msg(list):
    """A message: ``(field, value)`` pairs in order (``Msg()`` is the empty message ``{ }``)."""


def quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\{:03o}".format(ord(ch)))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return quote(v)
    raise TypeError("not a text-format scalar: {!r}".format(v))


def render(message: "List[Tuple[str, Any]]", indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for field, value in message:
        if isinstance(value, Msg):
            lines.append("{}{} {{".format(pad, field))
            lines.append(render(value, indent + 1).rstrip("\n"))
            lines.append(pad + "}")
        elif isinstance(value, list) and value and all(isinstance(v, Msg) for v in value):
            lines.append("{}{} [".format(pad, field))
            for i, item in enumerate(value):
                lines.append(pad + "  {")
                lines.append(render(item, indent + 2).rstrip("\n"))
                lines.append(pad + "  }" + ("," if i < len(value) - 1 else ""))
            lines.append(pad + "]")
        elif isinstance(value, list):
            lines.append("{}{}: [ {} ]".format(pad, field, ", ".join(_scalar(v) for v in value)))
        else:
            lines.append("{}{}: {}".format(pad, field, _scalar(value)))
    return "\n".join(line for line in lines if line) + "\n"
