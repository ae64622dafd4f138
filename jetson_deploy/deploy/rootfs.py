"""Paths inside a mounted root filesystem, resolved as the board will see them (as ``chroot`` does).

``ROOTFS/opt`` may be an absolute symlink (``/opt -> /data/opt`` on the board).  Followed on
the workstation it points at the workstation's own files, so every path under ``--rootfs``
is resolved component by component with ROOTFS as ``/``, and a symlink under the install
root that the workstation would follow out of ROOTFS is refused.
"""
import os
from pathlib import Path
from typing import List

from ..errors import BadInput

MAX_LINKS = 40  # as the kernel's ELOOP limit


def resolve_in_rootfs(rootfs: "os.PathLike[str]", path: str) -> Path:
    """``path`` (absolute on the board) as a symlink-free host path under ``rootfs``."""
    fs = Path(os.path.realpath(str(rootfs)))
    todo = [p for p in path.split("/") if p not in ("", ".")]
    cur: "List[str]" = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            cur = cur[:-1]  # '..' of the board's / is / itself
            continue
        full = fs.joinpath(*cur, part)
        if os.path.islink(str(full)):
            links += 1
            if links > MAX_LINKS:
                raise BadInput("--rootfs {}: too many symlinks resolving {} (a loop?)".format(fs, path))
            target = os.readlink(str(full))
            if target.startswith("/"):
                cur = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        cur.append(part)
    return fs.joinpath(*cur)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_no_escape(rootfs: "os.PathLike[str]", local_root: Path) -> None:
    """Refuse a symlink under ``local_root`` that the workstation would follow out of ``rootfs``."""
    fs = os.path.realpath(str(rootfs))
    if not local_root.exists():
        return
    for dirpath, dirnames, filenames in os.walk(str(local_root), followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                continue
            board = "/" + os.path.relpath(full, fs)
            host = os.path.realpath(full)
            if not _within(host, fs) or host != str(resolve_in_rootfs(fs, board)):
                raise BadInput("--rootfs: {} is a symlink to {} that leads out of the rootfs on this machine; "
                               "remove it or make it relative".format(full, os.readlink(full)))


def rootfs_path(rootfs: "os.PathLike[str]", root: str) -> str:
    """The host directory for the board's ``root`` (checked), as deploy/rollback/status use it."""
    local = resolve_in_rootfs(rootfs, root)
    check_no_escape(rootfs, local)
    return str(local)
