"""The docs as tests: fenced command blocks of README.md and docs/*.md, and the paths the docs name.

A ```bash (or ```sh) block is a command block: the docs tests run it, in order with the other
blocks of its document, in one scratch directory per document where ``jetson_deploy/``, ``tests/``,
``scripts/``, ``ansible/`` and ``docs/`` of this checkout are visible (the docs' commands are written
for a shell at the top of a checkout) and ``jetson-deploy``/``python`` are this venv's.  Every
document under docs/ starts with the demo bundle ``shapes-1.0.0`` there, as its text says.

A block that cannot run here is marked on the line before its fence::

    <!-- not runnable here: needs a Jetson board on the network -->

Usage lines and transcripts go in ```text fences; a plain ``` fence holding a command line fails
:func:`unmarked_commands`, so every command a document shows is either run or said not to be.
"""
import glob
import re
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

ROOT = Path(__file__).resolve().parent.parent.parent
RUN_LANGS = ("bash", "sh")
NOT_RUNNABLE = re.compile(r"^<!--\s*not runnable here:\s*(.+?)\s*-->$")
COMMAND_LINE = re.compile(r"^\s*(\$ |sudo )?(jetson-deploy|python3?|ansible-playbook|pip|bash|\.venv/)\b")
#: What a docs scratch directory sees of the checkout (the commands are written for its top level).
CHECKOUT_LINKS = ("jetson_deploy", "tests", "scripts", "ansible", "docs", "calibration", "docker", "setup.py", "README.md")
#: ``.venv`` in a docs scratch directory: the environment running the tests (scripts/setup.sh's .venv in CI).


class Block(NamedTuple):
    doc: str  # path relative to the checkout
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_runnable: "Optional[str]"  # the marker's reason

    @property
    def runnable(self) -> bool:
        return self.lang in RUN_LANGS and self.not_runnable is None

    @property
    def where(self) -> str:
        return "{}:{}".format(self.doc, self.line)


def documents() -> "List[str]":
    """README.md and docs/*.md, relative to the checkout."""
    return ["README.md"] + sorted(str(Path(p).relative_to(ROOT)) for p in glob.glob(str(ROOT / "docs" / "*.md")))


def blocks(doc: str) -> "Iterator[Block]":
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = NOT_RUNNABLE.match(prev)
        yield Block(doc, i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n", marker.group(1) if marker else None)
        i = j + 1


def unmarked_commands(block: Block) -> "List[str]":
    """Command lines in a plain fence: they must be ```bash (run) or ```text (a usage line)."""
    if block.lang:
        return []
    return [ln for ln in block.text.splitlines() if COMMAND_LINE.match(ln)]


_PATH_RE = re.compile(r"(?<![\w./-])((?:jetson_deploy|tests|scripts|docs|ansible|docker|\.ci)/[\w./*-]*[\w*]"
                      r"|[A-Z][A-Z_]+\.md)(?![\w/])")


def named_paths(doc: str) -> "List[str]":
    """Paths of this checkout a document names (in text, code or links), as written."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for m in _PATH_RE.finditer(text):
        p = m.group(1).rstrip(".")
        if p not in found:
            found.append(p)
    return found


def path_exists(doc: str, p: str) -> bool:
    """``p`` names a file or folder of this checkout (from its top level or, for links, the document's folder)."""
    for base in (ROOT, (ROOT / doc).parent):
        if "*" in p:
            if glob.glob(str(base / p)):
                return True
        elif (base / p).exists():
            return True
    return False
