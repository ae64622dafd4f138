"""Writing an export: a new directory beside the destination, renamed into place.

The bundle is only read: artifacts are copied (never hard-linked, so editing an exported file
cannot change the bundle) and each copy is checked against the manifest's sha256 while it
streams.  The destination may be replaced only when it is an export this tool wrote (it holds
:data:`MARKER`) or an empty directory; anything else, a symlink, or a path inside the bundle is
refused with one line naming it (exit 2).
"""
import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Union

from ... import __version__
from ..._files import atomic_dir, check_path, clean_stale_temps
from ...errors import BadInput, CheckFailed
from ..writer import copy_hashed

MARKER = ".jetson-deploy-export.json"
MARKER_FORMAT = "jetson-deploy-export"


class ExportPlan:
    """What an exporter wants written: files (text or bundle artifacts), and what to tell the user."""

    def __init__(self, fmt: str, bundle: Any) -> None:
        self.fmt = fmt
        self.bundle = bundle
        self.files: "List[tuple]" = []  # (relpath, bytes | artifact dict)
        self.configs: "List[Dict[str, str]]" = []  # {"file", "use"}: which file to use where
        self.notes: "List[str]" = []

    def add_text(self, relpath: str, text: str) -> None:
        self.files.append((relpath, text.encode("utf-8")))

    def add_artifact(self, relpath: str, art: "Dict[str, Any]") -> None:
        self.files.append((relpath, art))

    def readme(self) -> str:
        b = self.bundle
        lines = ["{} export of bundle {} {} (manifest sha256 {})".format(self.fmt, b.name, b.version, b.sha256),
                 "written by jetson-deploy {} (jetson-deploy bundle export --format {})".format(__version__, self.fmt), ""]
        if self.configs:
            lines.append("Use:")
            lines += ["  {}  {}".format(c["file"], c["use"]) for c in self.configs]
            lines.append("")
        if self.notes:
            lines.append("Notes:")
            lines += ["  - " + n for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def result(self, path: Path) -> "Dict[str, Any]":
        return {"format": self.fmt, "path": str(path), "bundle": {"name": self.bundle.name, "version": self.bundle.version,
                "manifest_sha256": self.bundle.sha256}, "files": sorted([rel for rel, _ in self.files] + ["README.txt"]),
                "configs": list(self.configs), "notes": list(self.notes)}


def _is_ours(path: Path) -> bool:
    try:
        names = os.listdir(str(path))
    except OSError:
        return False
    if not names:
        return True
    marker = path / MARKER
    try:
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > (1 << 20):
            return False
        return json.loads(marker.read_text(encoding="utf-8")).get("format") == MARKER_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def check_destination(out: "Union[str, os.PathLike]", bundle_root: Path) -> Path:
    """The output directory, after the output policy (see the module docstring); BadInput otherwise."""
    path = check_path(out, "-o {}".format(out))
    flag = "-o {}".format(path)
    real, root = os.path.realpath(str(path)), os.path.realpath(str(bundle_root))
    if path.name in ("", ".", "..") or _inside(os.path.realpath(os.getcwd()), real):
        raise BadInput("{}: give a new directory for the export (not the current directory or one above it)".format(flag))
    if _inside(real, root) or _inside(root, real):
        raise BadInput("{}: the export must go beside the bundle {}, not inside it (or around it): the bundle is never changed".format(flag, bundle_root))
    try:
        st = os.lstat(str(path))
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise BadInput("{}: {}".format(flag, exc.strerror or exc))
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise BadInput("{} is a symbolic link: an export is never written through one; give a new path".format(flag))
        if not stat.S_ISDIR(st.st_mode) or not _is_ours(path):
            raise BadInput("{} exists and is not an export made by jetson-deploy: refusing to replace it; give a new path "
                           "or remove it yourself".format(flag))
    if path.parent.is_dir():
        clean_stale_temps(path.parent)
    return path


def _copy_artifact(bundle: Any, art: "Dict[str, Any]", dest: Path) -> None:
    src = Path(bundle.root) / art["path"]
    if src.is_symlink():
        raise CheckFailed("{}: artifact {} is a symlink".format(bundle.source, art["path"]))
    with open(str(src), "rb") as fin, open(str(dest), "xb") as fout:
        sha, size = copy_hashed(fin, fout)
    if sha != art["sha256"] or size != art["size"]:
        raise CheckFailed("{}: artifact {} changed while it was exported (sha256 or size differs from the manifest)".format(
            bundle.source, art["path"]))


def write_plan(plan: "ExportPlan", out: "Union[str, os.PathLike]") -> "Dict[str, Any]":
    """Write ``plan`` to ``out`` atomically; return the export's summary (the CLI's --json)."""
    path = check_destination(out, plan.bundle.root)
    result = plan.result(path)
    with atomic_dir(path, overwrite=True) as tmp:
        for rel, content in plan.files:
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                with open(str(dest), "xb") as f:
                    f.write(content)
            else:
                _copy_artifact(plan.bundle, content, dest)
        (tmp / "README.txt").write_text(plan.readme(), encoding="utf-8")
        marker = dict(result, format=MARKER_FORMAT, export=plan.fmt, generator="jetson-deploy {}".format(__version__))
        marker.pop("path")
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return result
