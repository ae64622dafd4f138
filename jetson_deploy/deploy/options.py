"""What ``deploy``, ``rollback`` and ``devices status`` may be asked, as option objects.

One spelling per setting: the CLI fills these from its flags, library callers build them, and
:meth:`DeployOptions.checked` refuses combinations that cannot work (BadInput, exit 2) before
any host is touched.  Plain classes, not dataclasses: this runs on the board's Python 3.6.
"""
import copy
import re
from typing import Any, Optional, Sequence

from ..errors import BadInput
from ..service import check_name as check_service_name
from ..vocab import DEFAULT_ROOT

DEFAULT_KEEP = 3
TRANSFERS = ("auto", "rsync", "sftp")

_ROOT_RE = re.compile(r"^[A-Za-z0-9._+@=,/\-]+\Z")


def check_root(root: str) -> str:
    """The device root: an absolute (or home-relative) path of plain characters."""
    if not root or not _ROOT_RE.match(root) or root.startswith("-") or ".." in root.split("/"):
        raise BadInput("--root {!r}: use a path of letters, digits, '.', '_', '-', '/' (e.g. {})".format(root, DEFAULT_ROOT))
    return root.rstrip("/") or "/"


class Connection(object):
    """How hosts are reached: an OpenSSH client config (``-F``), extra ``-o KEY=VALUE`` options,
    the connect timeout in seconds, and how many hosts are worked on at once."""

    __slots__ = ("ssh_config", "ssh_options", "connect_timeout", "jobs")

    def __init__(self, ssh_config: "Optional[str]" = None, ssh_options: "Sequence[str]" = (), connect_timeout: int = 10,
                 jobs: int = 8) -> None:
        self.ssh_config = ssh_config
        self.ssh_options = tuple(ssh_options)
        self.connect_timeout = connect_timeout
        self.jobs = jobs

    def check(self) -> None:
        if self.jobs < 1:
            raise BadInput("--jobs must be 1 or more")
        if self.connect_timeout <= 0:
            raise BadInput("--connect-timeout must be positive")


class DeployOptions(object):
    """Everything ``deploy`` takes besides the bundle and the hosts.

    ``root``: the device directory holding bundles/, active/, staging/, state/; ``keep``: versions
    kept per bundle (the active and previous never go); ``health_cmd``/``health_timeout``: the gate
    after the switch; ``service``/``settle``: restart that unit (``service install NAME``) and gate
    on it staying active ``settle`` seconds; ``transfer``/``bwlimit``: upload tool and KiB/s limit;
    ``public_key``: require a valid signature; ``rootfs``: install into a mounted image instead of
    over ssh; ``verify_retries``: re-sends of files that fail the device's check; ``force``: deploy
    to a host whose TensorRT is older than the bundle needs (a warning instead of the refusal).
    """

    __slots__ = ("root", "keep", "health_cmd", "health_timeout", "transfer", "bwlimit", "service", "settle", "public_key",
                 "rootfs", "verify_retries", "connection", "force")

    def __init__(self, root: str = DEFAULT_ROOT, keep: int = DEFAULT_KEEP, health_cmd: "Optional[str]" = None,
                 health_timeout: float = 60.0, transfer: str = "auto", bwlimit: "Optional[int]" = None,
                 service: "Optional[str]" = None, settle: int = 10, public_key: "Optional[str]" = None,
                 rootfs: "Optional[str]" = None, verify_retries: int = 1, connection: "Optional[Connection]" = None,
                 force: bool = False) -> None:
        self.root = root
        self.keep = keep
        self.health_cmd = health_cmd
        self.health_timeout = health_timeout
        self.transfer = transfer
        self.bwlimit = bwlimit
        self.service = service
        self.settle = settle
        self.public_key = public_key
        self.rootfs = rootfs
        self.verify_retries = verify_retries
        self.connection = connection or Connection()
        self.force = force

    def replace(self, **changes: Any) -> "DeployOptions":
        """A copy with ``changes`` applied (the caller's object is never modified)."""
        new = copy.copy(self)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def checked(self) -> "DeployOptions":
        """A copy with ``root`` normalised, or BadInput naming the flag that cannot work."""
        root = check_root(self.root)
        if self.keep < 1:
            raise BadInput("--keep must be 1 or more (the active and the previous version are always kept)")
        if self.transfer not in TRANSFERS:
            raise BadInput("--transfer must be one of " + ", ".join(TRANSFERS))
        if self.health_timeout <= 0:
            raise BadInput("--health-timeout must be positive")
        if self.service:
            check_service_name(self.service)
        if self.settle < 0:
            raise BadInput("--service-settle must be 0 or more")
        if self.rootfs is not None and self.health_cmd:
            raise BadInput("--health-cmd cannot run inside a --rootfs image; drop it")
        self.connection.check()
        return self.replace(root=root)
