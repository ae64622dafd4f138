"""A systemd unit that keeps a deployed bundle running on the board: at boot, and after a crash.

The unit runs ``jetson-deploy run ROOT/active/NAME``: the path is resolved at each start, so a
deploy's switch or rollback changes what the next (re)start runs.  Three ways to install it:

* on this machine (``systemctl`` present and systemd running): unit file, daemon-reload, enable;
* into an SD card or ``Linux_for_Tegra/rootfs`` (``rootfs=``): the unit file and the
  ``multi-user.target.wants`` link ``systemctl enable`` would make, with no systemd needed here;
  paths are resolved as the board sees them, so an absolute symlink inside the image never leads
  out of it;
* not at all (:func:`render_unit`, ``--print``).

The deploy step (``deploy --restart-service``, the Ansible play's ``jd_service``) uses
:func:`deploy_gate`: shell fragments run on the device, nothing imported there.
"""
import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ._files import atomic_output
from .errors import BadInput, CheckFailed
from .media.http_sink import TOKEN_ENV
from .vocab import DEFAULT_ROOT

log = logging.getLogger(__name__)

UNIT_DIR = "/etc/systemd/system"
WANTED_BY = "multi-user.target"
DEFAULT_RESTART_SEC = 5
# the marker on the first line: only units this tool wrote are ever replaced or removed
MARKER = "# Made by jetson-deploy service install; jetson-deploy service uninstall removes it."
ENV_MARKER = "# Made by jetson-deploy service install (secrets of the unit; mode 0600)."

STATE_DIR = "/var/lib/jetson-deploy"  # systemd's StateDirectory=jetson-deploy/NAME: the unit's working directory
ENV_DIR = "/etc/jetson-deploy"  # NAME.env (0600, root): secrets the unit reads, never in the unit or the command line
# systemd is running here when this directory exists (sd_booted(3))
SYSTEMD_RUN_DIR = "/run/systemd/system"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*\Z")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_\-]*\$?\Z")
_PLAIN_ARG_RE = re.compile(r"^[A-Za-z0-9_./:=,+@\-]+\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@\-]*\.(service|target|socket|mount|device|path|timer|slice|scope|swap|automount)\Z")
# which daemon must be up before a source can open: CSI cameras go through Argus
_CAMERA_UNITS = (("csi://", "nvargus-daemon.service"),)


def unit_name(name: str) -> str:
    """``jetson-deploy-NAME.service``: one unit per bundle name."""
    check_name(name)
    return "jetson-deploy-{}.service".format(name)


def check_name(name: str) -> str:
    if not name or not _NAME_RE.match(name) or len(name) > 128:
        raise BadInput("service name {!r}: use the bundle name (letters, digits, '.', '_', '+', '-')".format(name))
    return name


def check_value(value: str, what: str) -> str:
    """Refuse a control character (a newline would write new directives into the unit)."""
    if not isinstance(value, str) or _CONTROL_RE.search(value):
        raise BadInput("{} {!r} contains a control character (a line break, tab or the like): the unit file "
                       "takes one line per setting".format(what, value))
    return value


def check_unit(unit: str) -> str:
    """A unit name for After=/Wants= (``nvargus-daemon.service``); nothing that could be a directive."""
    check_value(unit, "--after")
    if not _UNIT_RE.match(unit):
        raise BadInput("--after {!r} is not a systemd unit name (like nvargus-daemon.service or network-online.target)".format(unit))
    return unit


def _unit_text(text: str) -> str:
    """A free-text unit setting (Description=): ``%`` would be a specifier there (``%n``)."""
    return check_value(text, "unit text").replace("%", "%%")


def camera_units(source: str) -> "List[str]":
    """Units the camera stack needs before SOURCE opens (``nvargus-daemon`` for ``csi://``)."""
    return [unit for prefix, unit in _CAMERA_UNITS if source.startswith(prefix)]


def _exec_arg(arg: str) -> str:
    """One ExecStart argument in systemd's syntax: ``%`` and ``$`` are specifiers/variables there."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN_ARG_RE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_exec(python: "Optional[str]" = None, rootfs: bool = False) -> "List[str]":
    """How the unit starts jetson-deploy: PYTHON (the interpreter that has jetson-deploy installed)
    ``-m jetson_deploy``; on this machine by default the interpreter running now.  For an image it
    cannot be known (the README installs into a venv, not the board's /usr/bin/python3): ``--python``."""
    if python is None and rootfs:
        raise BadInput("--rootfs needs --python PATH: the board's interpreter that has jetson-deploy installed "
                       "(the README's venv: /home/USER/jd/bin/python), as a path on the board")
    return [python or sys.executable, "-m", "jetson_deploy"]


def default_user() -> str:
    """The user who ran sudo, else the current one (the board's login user, who owns the camera)."""
    user = os.environ.get("SUDO_USER")
    return user if user and user != "root" else pwd.getpwuid(os.geteuid()).pw_name


class ServiceSpec(object):
    """What the unit runs and as whom.  ``run_args`` are extra ``jetson-deploy run`` options."""

    def __init__(self, name: str, source: str, sinks: "Sequence[str]" = ("null://",), run_args: "Sequence[str]" = (),
                 root: str = DEFAULT_ROOT, user: "Optional[str]" = None, exec_cmd: "Optional[Sequence[str]]" = None,
                 groups: "Sequence[str]" = ("video",), restart_sec: int = DEFAULT_RESTART_SEC,
                 after: "Sequence[str]" = ()) -> None:
        self.name = check_name(name)
        if not source:
            raise BadInput("--source is required: the camera or stream the service runs on")
        check_value(root, "--root")
        if not root.startswith("/") or ".." in root.split("/"):
            raise BadInput("--root {!r}: the service needs the absolute device root (e.g. {})".format(root, DEFAULT_ROOT))
        self.user = user or default_user()
        if not _USER_RE.match(self.user):
            raise BadInput("--user {!r} is not a valid user name".format(self.user))
        for g in groups:
            if not _USER_RE.match(g):
                raise BadInput("group {!r} is not a valid group name".format(g))
        if restart_sec < 1:
            raise BadInput("--restart-sec must be 1 or more")
        self.source = check_value(source, "--source")
        self.sinks, self.token = _secret_free_sinks([check_value(x, "--sink") for x in sinks])
        self.run_args = [check_value(a, "run option") for a in run_args]
        self.root = root.rstrip("/") or "/"
        self.exec_cmd = [check_value(a, "--exec") for a in (exec_cmd or default_exec())]
        if not self.exec_cmd or not self.exec_cmd[0].startswith("/"):
            raise BadInput("--exec {!r}: systemd needs an absolute program path".format(self.exec_cmd[0] if self.exec_cmd else ""))
        self.groups, self.restart_sec, self.after = list(groups), int(restart_sec), [check_unit(u) for u in after]

    @property
    def unit(self) -> str:
        return unit_name(self.name)

    @property
    def bundle_path(self) -> str:
        return "{}/active/{}".format(self.root, self.name)

    #: [Service] settings after the defaults (a later assignment wins in systemd)
    overrides: "Sequence[str]" = ()

    @property
    def description(self) -> str:
        return "jetson-deploy: run bundle {} from {}".format(self.name, self.bundle_path)

    @property
    def state_dir(self) -> str:
        """The unit's working directory (``StateDirectory=``: systemd makes it, owned by the user):
        a relative ``--sink out.jsonl`` lands here."""
        return "{}/{}".format(STATE_DIR, self.name)

    @property
    def env_file(self) -> str:
        return "{}/{}.env".format(ENV_DIR, self.name)

    def argv(self) -> "List[str]":
        args = self.exec_cmd + ["run", self.bundle_path, "--source", self.source]
        for s in self.sinks:
            args += ["--sink", s]
        return args + self.run_args


class AgentSpec(ServiceSpec):
    """The pull agent's unit for bundle NAME (``jetson-deploy-agent-NAME.service``): ``jetson-deploy agent
    REF --root ROOT --name NAME --restart-service NAME AGENT_ARGS``, under the run unit's rules.  On
    stop only the agent gets SIGINT (KillMode=mixed) and has TimeoutStopSec to finish an update in
    progress, so its health gate and switch-back are never cut."""

    overrides = ("KillMode=mixed", "TimeoutStopSec=300")

    def __init__(self, name: str, ref: str, agent_args: "Sequence[str]" = (), **kwargs: "object") -> None:
        self.bundle = check_name(name)
        super().__init__("agent-" + name, ref, sinks=(), run_args=agent_args, **kwargs)  # type: ignore[arg-type]

    @property
    def description(self) -> str:
        return "jetson-deploy: keep bundle {} on {} (pull agent)".format(self.bundle, self.source)

    def argv(self) -> "List[str]":
        return self.exec_cmd + ["agent", self.source, "--root", self.root, "--name", self.bundle,
                                "--restart-service", self.bundle] + self.run_args


def _secret_free_sinks(sinks: "List[str]") -> "Tuple[List[str], Optional[str]]":
    """Sinks with an ``http://...?token=`` moved out: (sinks without it, the token).  The unit file
    is world-readable and the command line is in ``ps``; the token goes to the root-only
    environment file the unit reads (:data:`TOKEN_ENV`), which the live view takes it from."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    out: "List[str]" = []
    tokens = set()
    for item in sinks:
        prefix, _, uri = item.partition("=") if re.match(r"^\d+=", item) else ("", "", item)
        if uri.startswith("http://") and "token=" in uri:
            parts = urlsplit(uri)
            query = parse_qsl(parts.query, keep_blank_values=True)
            tokens.update(v for k, v in query if k == "token")
            uri = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "token"])))
        out.append(prefix + ("=" if prefix else "") + uri)
    if len(tokens) > 1:
        raise BadInput("--sink: two http:// sinks with different tokens; the service keeps one ({})".format(TOKEN_ENV))
    return out, (tokens.pop() if tokens else None)


def env_text(spec: "ServiceSpec") -> str:
    """The environment file's text (``NAME=value`` lines, systemd's EnvironmentFile= syntax)."""
    return "{}\n{}={}\n".format(ENV_MARKER, TOKEN_ENV, spec.token)


def render_unit(spec: "ServiceSpec") -> str:
    """The unit text.  Back-off: RestartSec between tries, at most 10 starts in 5 minutes, after
    which systemd stops trying (``systemctl reset-failed`` or the next deploy's restart resumes)."""
    cams = camera_units(spec.source)
    after = ["network-online.target"] + cams + [u for u in spec.after if u not in cams]
    lines = [
        MARKER,
        "[Unit]",
        "Description=" + _unit_text(spec.description),
        "After=" + " ".join(after),
        "Wants=" + " ".join(after),
        "StartLimitIntervalSec=300",
        "StartLimitBurst=10",
        "",
        "[Service]",
        "Type=simple",
        "User=" + spec.user,
        "StateDirectory=" + spec.state_dir[len("/var/lib/"):],
        "WorkingDirectory=" + spec.state_dir,
    ]
    if spec.groups:
        lines.append("SupplementaryGroups=" + " ".join(spec.groups))
    lines += [
        "ExecStart=" + " ".join(_exec_arg(a) for a in spec.argv()),
        "Restart=on-failure",
        "RestartSec={}".format(spec.restart_sec),
        "TimeoutStopSec=20",
        "KillSignal=SIGINT",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=jetson-deploy-{}".format(spec.name),
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if spec.token:
        lines.append("EnvironmentFile=" + spec.env_file)  # the live view's token: root-only, not in this 0644 file
    lines += list(spec.overrides)
    if any(s.startswith("display://") for s in spec.sinks):
        lines.append("Environment=DISPLAY=:0")  # the board's local X server (display://0)
    lines += [
        "",
        "[Install]",
        "WantedBy=" + WANTED_BY,
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- rootfs paths

def board_path(rootfs: str, path: str) -> Path:
    """Where PATH on the booted board lies under ROOTFS: every directory symlink is followed as
    the board would follow it (absolute targets re-rooted at ROOTFS, ``..`` stops at its top).
    The last component is not followed: it is what gets written or removed."""
    top = Path(rootfs).resolve()
    parts = [p for p in path.split("/") if p]
    cur: "List[str]" = []
    hops = 0
    pending = parts[:-1]
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if cur:
                cur.pop()
            continue
        here = top.joinpath(*(cur + [part]))
        if here.is_symlink():
            hops += 1
            if hops > 40:
                raise BadInput("{}: too many symlinks resolving {} inside the image".format(rootfs, path))
            target = os.readlink(str(here))
            if target.startswith("/"):
                cur = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        cur.append(part)
    return top.joinpath(*(cur + parts[-1:]))


def _ours(path: Path, marker: str = MARKER) -> bool:
    try:
        with open(str(path), "r", encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == marker
    except OSError:
        return False


def _check_writable(dest: Path, marker: str = MARKER) -> None:
    if dest.is_symlink():
        raise BadInput("{} is a symlink (a masked unit?): remove it first, this tool replaces only its own units".format(dest))
    if dest.exists() and not _ours(dest, marker):
        raise BadInput("{} exists and was not made by jetson-deploy: remove or rename it first".format(dest))


def _write_unit(dest: Path, text: str, marker: str = MARKER, mode: "Optional[int]" = None) -> None:
    _check_writable(dest, marker)
    try:
        with atomic_output(dest, "w") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(text)
    except PermissionError:
        raise BadInput("cannot write {}: permission denied (run with sudo)".format(dest))


def _check_link(link: Path) -> None:
    if link.exists() and not link.is_symlink():
        raise BadInput("{} exists and is not a symlink: refusing to replace it".format(link))


def _symlink(link: Path, target: str) -> None:
    """LINK -> TARGET, replacing an old link in one rename."""
    _check_link(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / ".{}.tmp.{}".format(link.name, os.getpid())
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, str(tmp))
    os.replace(str(tmp), str(link))


def _check_rootfs(rootfs: str) -> None:
    if not Path(rootfs).is_dir():
        raise BadInput("--rootfs {} is not a directory (mount the SD card or point at Linux_for_Tegra/rootfs)".format(rootfs))
    if not (Path(rootfs) / "etc").exists():
        log.info("note: %s has no etc/; is it really a root filesystem?", rootfs)


def _user_in_rootfs(rootfs: str, user: str) -> bool:
    passwd = board_path(rootfs, "/etc/passwd")
    try:
        text = passwd.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # nothing to check against
    return any(line.split(":", 1)[0] == user for line in text.splitlines())


def _in_image(rootfs: str, path: str) -> Path:
    """PATH resolved inside ROOTFS as the board resolves it, the last component too."""
    for _ in range(40):
        p = board_path(rootfs, path)
        if not p.is_symlink():
            return p
        target = os.readlink(str(p))
        path = target if target.startswith("/") else os.path.join(os.path.dirname(path), target)
    raise BadInput("{}: too many symlinks resolving {} inside the image".format(rootfs, path))


_SITE_DIRS = ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages",
              "/usr/local/lib/python3*/site-packages", "/home/*/.local/lib/python3*/site-packages")


def _has_package(site: Path) -> bool:
    return any(site.glob("jetson_deploy/__init__.py")) or any(site.glob("jetson_deploy*.dist-info")) \
        or any(site.glob("jetson_deploy*.egg-info")) or any(site.glob("jetson_deploy*.egg-link")) \
        or any(site.glob("__editable__*jetson_deploy*"))


def check_interpreter(rootfs: str, exec_cmd: "Sequence[str]") -> None:
    """The unit's program must exist in the image; for ``PYTHON -m jetson_deploy`` jetson-deploy must
    be installed for that PYTHON there (its venv, or the system's site directories).  BadInput
    otherwise: a unit that cannot start would only fail at boot."""
    prog = exec_cmd[0]
    host = _in_image(rootfs, prog)
    if not host.is_file() or not os.access(str(host), os.X_OK):
        raise BadInput("{} is not an executable program in the image {}: give the board's interpreter that has "
                       "jetson-deploy installed (--python, e.g. /home/nvidia/jd/bin/python)".format(prog, rootfs))
    if list(exec_cmd[1:3]) != ["-m", "jetson_deploy"]:
        return  # --exec: the user's own command, taken as given
    venv = board_path(rootfs, os.path.dirname(os.path.dirname(prog)) + "/pyvenv.cfg")
    sites: "List[Path]" = []
    if venv.is_file():
        sites += list(venv.parent.glob("lib/python3*/site-packages"))
        if "include-system-site-packages = true" not in venv.read_text(encoding="utf-8", errors="replace"):
            sites = sites or [venv.parent]
        else:
            sites += [q for pat in _SITE_DIRS for q in Path(rootfs).glob(pat.lstrip("/"))]
    else:
        sites += [q for pat in _SITE_DIRS for q in Path(rootfs).glob(pat.lstrip("/"))]
    if not any(_has_package(site) for site in sites):
        raise BadInput("jetson-deploy is not installed for {} in the image {}: install it there first "
                       "(pip install '.[jetson]' in that venv), or give --exec with the full command".format(prog, rootfs))


def install_rootfs(spec: "ServiceSpec", rootfs: str) -> "Dict[str, str]":
    """Write the unit into ROOTFS and enable it there (the ``multi-user.target.wants`` link).
    Everything is checked before anything is written."""
    _check_rootfs(rootfs)
    check_interpreter(rootfs, spec.exec_cmd)
    if not _user_in_rootfs(rootfs, spec.user):
        log.info("note: user %s is not in %s/etc/passwd yet; create it on the board (oem-config) or pass --user",
                 spec.user, rootfs)
    unit_path = "{}/{}".format(UNIT_DIR, spec.unit)
    dest = board_path(rootfs, unit_path)
    env = board_path(rootfs, spec.env_file) if spec.token else None
    link = board_path(rootfs, "{}/{}.wants/{}".format(UNIT_DIR, WANTED_BY, spec.unit))
    _check_writable(dest)
    _check_link(link)
    if env is not None:
        _check_writable(env, ENV_MARKER)
        env.parent.mkdir(parents=True, exist_ok=True)
        _write_unit(env, env_text(spec), ENV_MARKER, mode=0o600)
    _write_unit(dest, render_unit(spec))
    _symlink(link, unit_path)
    log.info("installed %s and enabled it for %s in %s", spec.unit, WANTED_BY, rootfs)
    return {"unit": spec.unit, "path": str(dest), "wants": str(link)}


def _our_links(sysdir: Path, unit: str, unit_path: str) -> "List[Path]":
    """``*.wants/UNIT`` links that point at our unit (by its path or its name) and nothing else."""
    links = []
    if sysdir.is_dir():
        for wants in sysdir.glob("*.wants"):
            link = wants / unit
            if link.is_symlink() and os.readlink(str(link)) in (unit_path, unit, "../" + unit):
                links.append(link)
    return links


def uninstall_rootfs(name: str, rootfs: str) -> "Dict[str, object]":
    """Remove NAME's unit, its ``*.wants`` links and its environment file from ROOTFS.  Ownership is
    checked first: a unit this tool did not write is refused with nothing touched."""
    _check_rootfs(rootfs)
    unit = unit_name(name)
    unit_path = "{}/{}".format(UNIT_DIR, unit)
    dest = board_path(rootfs, unit_path)
    env = board_path(rootfs, "{}/{}.env".format(ENV_DIR, name))
    if (dest.is_symlink() or dest.exists()) and not _ours(dest):
        raise BadInput("{} was not made by jetson-deploy: leaving it alone (nothing removed)".format(dest))
    removed: "List[str]" = []
    for link in _our_links(board_path(rootfs, UNIT_DIR + "/x").parent, unit, unit_path):
        link.unlink()
        removed.append(str(link))
    for path, marker in ((dest, MARKER), (env, ENV_MARKER)):
        if path.is_file() and not path.is_symlink() and _ours(path, marker):
            path.unlink()
            removed.append(str(path))
    if not removed:
        raise BadInput("{} is not installed in {}".format(unit, rootfs))
    log.info("removed %s from %s", unit, rootfs)
    return {"unit": unit, "removed": removed}


def status_rootfs(name: str, rootfs: str, root: str = DEFAULT_ROOT) -> "Dict[str, object]":
    _check_rootfs(rootfs)
    unit = unit_name(name)
    dest = board_path(rootfs, "{}/{}".format(UNIT_DIR, unit))
    link = board_path(rootfs, "{}/{}.wants/{}".format(UNIT_DIR, WANTED_BY, unit))
    active = board_path(rootfs, "{}/active/{}".format(root.rstrip("/"), name))
    version = os.readlink(str(active)).rstrip("/").split("/")[-1] if active.is_symlink() else None
    return {"unit": unit, "installed": dest.is_file() and _ours(dest), "enabled": link.is_symlink(),
            "active_version": version}


# ----------------------------------------------------------------------------- this machine

def systemd_running() -> bool:
    """systemd is PID 1 here (sd_booted(3): its runtime directory exists)."""
    return os.path.isdir(SYSTEMD_RUN_DIR)


def _need_systemd() -> None:
    if not systemd_running():
        raise BadInput("systemd is not running on this machine ({} is missing): install into an image with "
                       "--rootfs DIR, or print the unit with --print".format(SYSTEMD_RUN_DIR))


def _systemctl(args: "Sequence[str]", check: bool = True) -> "subprocess.CompletedProcess":
    exe = shutil.which("systemctl")
    if exe is None:
        raise BadInput("systemctl not found: this machine does not run systemd; use --rootfs DIR for an image or --print")
    p = subprocess.run([exe] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if check and p.returncode != 0:
        raise CheckFailed("systemctl {} failed: {}".format(" ".join(args), (p.stderr or p.stdout).strip().splitlines()[-1:] or "exit {}".format(p.returncode)))
    return p


def _snapshot(path: Path) -> "Optional[bytes]":
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


def _restore(path: Path, before: "Optional[bytes]") -> None:
    """Put PATH back as it was (None: it did not exist) after a failed install."""
    try:
        if before is None:
            path.unlink()
        else:
            with atomic_output(path, "wb") as f:
                f.write(before)
    except OSError:
        pass


def install_local(spec: "ServiceSpec", start: bool = True, unit_dir: str = UNIT_DIR, env_dir: str = ENV_DIR) -> "Dict[str, str]":
    """Write the unit here, reload systemd, enable it (and start it unless ``start`` is False).
    A failure at any step leaves the unit directory as it was."""
    _need_systemd()
    dest = Path(unit_dir) / spec.unit
    env = Path(env_dir) / "{}.env".format(spec.name) if spec.token else None
    _check_writable(dest)
    if env is not None:
        _check_writable(env, ENV_MARKER)
    saved = [(p, _snapshot(p)) for p in (dest, env) if p is not None]
    try:
        if env is not None:
            env.parent.mkdir(parents=True, exist_ok=True)
            _write_unit(env, env_text(spec), ENV_MARKER, mode=0o600)
        _write_unit(dest, render_unit(spec))
        _systemctl(["daemon-reload"])
        _systemctl(["enable"] + (["--now"] if start else []) + [spec.unit])
    except BaseException:
        for path, before in saved:
            _restore(path, before)
        _systemctl(["daemon-reload"], check=False)
        raise
    log.info("installed %s (%s)%s", spec.unit, dest, ", started" if start else "")
    return {"unit": spec.unit, "path": str(dest)}


def uninstall_local(name: str, unit_dir: str = UNIT_DIR, env_dir: str = ENV_DIR) -> "Dict[str, object]":
    unit = unit_name(name)
    dest = Path(unit_dir) / unit
    if not dest.exists():
        raise BadInput("{} is not installed ({} does not exist)".format(unit, dest))
    if not _ours(dest):
        raise BadInput("{} was not made by jetson-deploy: leaving it alone".format(dest))
    _need_systemd()
    _systemctl(["disable", "--now", unit], check=False)
    dest.unlink()
    removed = [str(dest)]
    env = Path(env_dir) / "{}.env".format(name)
    if env.is_file() and not env.is_symlink() and _ours(env, ENV_MARKER):
        env.unlink()
        removed.append(str(env))
    _systemctl(["daemon-reload"])
    log.info("stopped, disabled and removed %s", unit)
    return {"unit": unit, "removed": removed}


STATUS_KEYS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "NRestarts", "MainPID")


def status_local(name: str) -> "Dict[str, object]":
    unit = unit_name(name)
    if not systemd_running():
        raise CheckFailed("{}: systemd is not running on this machine, so no service runs here (for an image: "
                          "service status {} --rootfs DIR)".format(unit, name))
    p = _systemctl(["show", unit, "-p", ",".join(STATUS_KEYS)], check=False)
    props = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    out: "Dict[str, object]" = {"unit": unit}
    out.update({k: props.get(k, "") for k in STATUS_KEYS})
    return out


# ----------------------------------------------------------------------------- deploy fragments

def _as_root(cmd: str) -> str:
    """Run CMD as root: directly when the deploy user is root, else through passwordless sudo."""
    return 'if [ "$(id -u)" -eq 0 ]; then {0}; else sudo -n {0}; fi'.format(cmd)


def restart_command(name: str) -> str:
    """Shell for the device: restart NAME's unit (after a switch, or after a rollback)."""
    return _as_root("systemctl restart " + shlex.quote(unit_name(name)))


def health_check_command(name: str, settle: int = 10) -> str:
    """Shell for the device: the unit stays active for SETTLE seconds (a crash loop shows up as
    'activating'/'failed' within RestartSec); on failure its last journal lines go to the log."""
    unit = shlex.quote(unit_name(name))
    return ('i=0; while [ "$i" -lt {s} ]; do '
            'if ! systemctl is-active --quiet {u}; then '
            'echo "{u} is $(systemctl is-active {u})"; systemctl status --no-pager -n 20 {u} 2>&1 | tail -n 20; exit 1; fi; '
            'sleep 1; i=$((i + 1)); done; systemctl is-active --quiet {u}').format(s=max(1, int(settle)), u=unit)


def restart_and_check_command(name: str, settle: int = 10) -> str:
    """``--health-cmd`` for a deploy that restarts the service on the new version and gates on it."""
    return "{{ {}; }} && {{ {}; }}".format(restart_command(name), health_check_command(name, settle))


def after_rollback_command(name: str) -> str:
    """Shell for finalize's ``on_rollback``: restart NAME's unit on the version switched back to,
    or stop it when there is none (its bundle path is gone; restarting would only crash-loop)."""
    stop = _as_root("systemctl stop " + shlex.quote(unit_name(name)))
    return 'if [ -n "${{JETSON_DEPLOY_PREVIOUS:-}}" ]; then {}; else {}; fi'.format(restart_command(name), stop)


def deploy_gate(name: "Optional[str]", settle: int, health_cmd: "Optional[str]",
                health_timeout: float) -> "Tuple[Optional[str], float, Optional[str]]":
    """``(health_cmd, health_timeout, on_rollback)`` for finalize when a deploy restarts NAME.

    The unit restarts on the new version first and must stay active SETTLE seconds (0: restart
    only), then the user's health command runs; a failure switches back and restarts the unit
    there.  Without NAME everything passes through unchanged."""
    if not name:
        return health_cmd, health_timeout, None
    if settle < 0:
        raise BadInput("--service-settle must be 0 or more")
    gate = restart_and_check_command(name, settle) if settle > 0 else restart_command(name)
    # newlines, not "; }": a user command ending in a # comment must not swallow the brace
    cmd = "{ " + gate + "; }" + (" && {\n" + health_cmd + "\n}" if health_cmd else "")
    return cmd, health_timeout + settle + 30, after_rollback_command(name)
