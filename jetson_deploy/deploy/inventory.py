"""Host specs and inventories: ``user@host[:port]``, plain host lists, Ansible-style INI.

A host line is the same in both file forms: the first token is a host (or an inventory
alias), the rest are ``key=value`` variables (``ansible_host``, ``ansible_user``,
``ansible_port``; ``ansible_ssh_host``/``ansible_ssh_user``/``ansible_ssh_port`` too).
A plain host list is simply an inventory without ``[group]`` sections.
"""
import re
import shlex
from typing import Dict, List, Optional, Sequence

from .._files import read_text_file
from ..errors import BadInput

#: bounds of an inventory: a 10 MB line took minutes to tokenize (shlex grows a token char by char)
MAX_INVENTORY_BYTES = 4 << 20
MAX_LINE_CHARS = 4096

# What ssh accepts as a host name or alias without quoting tricks: no spaces, no
# option-looking leading dash, no shell metacharacters.
_HOST_RE = re.compile(r"^[A-Za-z0-9_.%:\-]+\Z")
_USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-$]*\Z")  # no leading "-": ssh would read -Jevil@h as an option


class Host(object):
    """One device to reach over ssh.

    ``label`` is what the user wrote (or the inventory alias) and is what reports show;
    ``hostname`` is what ssh connects to (an alias from ``~/.ssh/config`` works too).
    """

    __slots__ = ("label", "hostname", "user", "port", "tensorrt")

    def __init__(self, hostname: str, user: "Optional[str]" = None, port: "Optional[int]" = None, label: "Optional[str]" = None) -> None:
        if not hostname or not _HOST_RE.match(hostname.strip("[]")) or hostname.startswith("-"):
            raise BadInput("bad host name {!r}: use user@host[:port] (letters, digits, '.', '-', '_')".format(hostname))
        if user is not None and (not user or not _USER_RE.match(user)):
            raise BadInput("bad user name {!r} in host {!r}".format(user, label or hostname))
        if port is not None and not (0 < int(port) < 65536):
            raise BadInput("bad port {!r} for host {!r}: use 1-65535".format(port, label or hostname))
        self.hostname = hostname.strip("[]")
        self.user = user
        self.port = int(port) if port is not None else None
        self.label = label or _format(self.hostname, user, self.port)
        self.tensorrt: "Optional[str]" = None  # inventory var tensorrt=8.2.1: deploy refuses an older board (trt_check)

    @property
    def destination(self) -> str:
        """``user@host`` (or ``host``) as ssh takes it; the port goes in ``-p``."""
        return "{}@{}".format(self.user, self.hostname) if self.user else self.hostname

    @property
    def copy_destination(self) -> str:
        """``user@host`` for rsync/sftp ``HOST:PATH`` arguments (IPv6 literals in brackets)."""
        host = "[" + self.hostname + "]" if ":" in self.hostname else self.hostname
        return "{}@{}".format(self.user, host) if self.user else host

    def __repr__(self) -> str:
        return "Host({!r})".format(self.label)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Host) and (self.hostname, self.user, self.port) == (other.hostname, other.user, other.port)

    def __hash__(self) -> int:
        return hash((self.hostname, self.user, self.port))


def _format(hostname: str, user: "Optional[str]", port: "Optional[int]") -> str:
    host = "[" + hostname + "]" if (":" in hostname and port is not None) else hostname
    text = "{}@{}".format(user, host) if user else host
    return "{}:{}".format(text, port) if port is not None else text


def parse_host(text: str) -> "Host":
    """Parse ``[user@]host[:port]``; IPv6 literals as ``[user@][addr]:port`` or bare ``addr``."""
    raw = text.strip()
    if not raw:
        raise BadInput("empty host: use user@host[:port]")
    user = None
    rest = raw
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
    port: "Optional[int]" = None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise BadInput("bad host {!r}: unclosed '[' (IPv6 hosts: user@[addr]:port)".format(raw))
        hostname = rest[1:end]
        tail = rest[end + 1:]
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                raise BadInput("bad host {!r}: after ']' only ':PORT' may follow".format(raw))
            port = int(tail[1:])
    elif rest.count(":") == 1:
        hostname, _, p = rest.partition(":")
        if not p.isdigit():
            raise BadInput("bad port in host {!r}: use user@host:PORT with a number".format(raw))
        port = int(p)
    else:
        hostname = rest  # plain name, or a bare IPv6 address without port
    return Host(hostname, user=user, port=port, label=raw)


# ----------------------------------------------------------------------------- inventories

_SECTION_RE = re.compile(r"^\[([^\]]+)\]\s*\Z")


def _int_var(value: str, key: str, where: str) -> int:
    if not value.isdigit():
        raise BadInput("{}: {}={!r} is not a port number".format(where, key, value))
    return int(value)


def load_inventory(path: str, group: "Optional[str]" = None) -> "List[Host]":
    """Read a host file: one host a line (``#``/``;`` comments), or an Ansible INI inventory.

    INI support: ``[group]`` host sections, ``[group:vars]`` (ansible_user/ansible_port applied
    to the group's hosts), ``[group:children]`` (nested groups). Without ``group`` every host in
    the file is returned (once, in file order); with it, the hosts of that group and its children.
    """
    text = read_text_file(path, "--hosts file", MAX_INVENTORY_BYTES)
    inv = _Inventory(path)
    for lineno, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE_CHARS:  # shlex is quadratic in a token's length: bound each line
            raise BadInput("{}:{}: the line is {} characters long (at most {}): one host and its variables a line".format(
                path, lineno, len(line), MAX_LINE_CHARS))
        inv.add_line(line, "{}:{}".format(path, lineno))
    hosts = [_host_from_vars(alias, inv.vars_of(alias), "{} (host {})".format(path, alias)) for alias in inv.select(group)]
    if not hosts:
        raise BadInput("no hosts in {}{}".format(path, " group " + group if group else ""))
    return hosts


class _Inventory(object):
    """An INI inventory as it is read: groups, children, group and host variables, in file order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.groups: "Dict[str, List[str]]" = {}      # group -> host aliases, in order
        self.children: "Dict[str, List[str]]" = {}    # group -> child groups
        self.group_vars: "Dict[str, Dict[str, str]]" = {}
        self.host_vars: "Dict[str, Dict[str, str]]" = {}
        self.order: "List[str]" = []
        self.section, self.kind = "ungrouped", "hosts"

    def add_line(self, line: str, where: str) -> None:
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(";"):
            return
        m = _SECTION_RE.match(stripped)
        if m:
            name = m.group(1).strip()
            self.section, _, kind = name.partition(":")
            self.kind = kind or "hosts"
            if self.kind not in ("hosts", "vars", "children"):
                raise BadInput("{}: unknown section kind [{}] (use [group], [group:vars] or [group:children])".format(where, name))
            self.groups.setdefault(self.section, [])
            return
        try:
            tokens = shlex.split(stripped, comments=True)
        except ValueError as exc:
            raise BadInput("{}: cannot parse line: {}".format(where, exc))
        if not tokens:
            return
        if self.kind == "children":
            self.children.setdefault(self.section, []).append(tokens[0])
        elif self.kind == "vars":
            gv = self.group_vars.setdefault(self.section, {})
            for tok in tokens:
                key, eq, value = tok.partition("=")
                if not eq:
                    raise BadInput("{}: expected key=value in [{}:vars], got {!r}".format(where, self.section, tok))
                gv[key.strip()] = value.strip()
        else:
            self._add_host(tokens, where)

    def _add_host(self, tokens: "List[str]", where: str) -> None:
        alias = tokens[0]
        if "=" in alias:
            raise BadInput("{}: a host line starts with the host, got {!r}".format(where, alias))
        hv = self.host_vars.setdefault(alias, {})
        for tok in tokens[1:]:
            key, eq, value = tok.partition("=")
            if not eq:
                raise BadInput("{}: expected key=value after the host, got {!r}".format(where, tok))
            hv[key.strip()] = value.strip()
        self.groups.setdefault(self.section, []).append(alias)
        if alias not in self.order:
            self.order.append(alias)

    def members(self, name: str, seen: "Optional[set]" = None) -> "List[str]":
        seen = seen if seen is not None else set()
        if name in seen:
            return []
        seen.add(name)
        out = list(self.groups.get(name, []))
        for child in self.children.get(name, []):
            out.extend(self.members(child, seen))
        return out

    def groups_of(self, alias: str) -> "List[str]":
        # parents first, then more specific groups, so a child's vars win over its parent's
        direct = [g for g, hs in self.groups.items() if alias in hs]
        result: "List[str]" = []
        for g in direct:
            for parent, kids in self.children.items():
                if g in kids and parent not in result:
                    result.append(parent)
        for g in direct:
            if g not in result:
                result.append(g)
        return result

    def select(self, group: "Optional[str]") -> "List[str]":
        """Aliases of GROUP (and its children), once each; every host without a group or with 'all'."""
        if group is None or group == "all":
            return self.order
        if group not in self.groups and group not in self.children:
            known = sorted(set(self.groups) | set(self.children))
            raise BadInput("--group {!r} is not in {} (groups there: {})".format(group, self.path, ", ".join(known) or "none"))
        selected: "List[str]" = []
        for a in self.members(group):
            if a not in selected:
                selected.append(a)
        return selected

    def vars_of(self, alias: str) -> "Dict[str, str]":
        """all's vars, then each group's (parents first), then the host line's."""
        merged: "Dict[str, str]" = {}
        merged.update(self.group_vars.get("all", {}))
        for g in self.groups_of(alias):
            merged.update(self.group_vars.get(g, {}))
        merged.update(self.host_vars.get(alias, {}))
        return merged


def _host_from_vars(alias: str, hv: "Dict[str, str]", where: str) -> "Host":
    base = parse_host(alias)
    hostname = hv.get("ansible_host") or hv.get("ansible_ssh_host") or base.hostname
    user = hv.get("ansible_user") or hv.get("ansible_ssh_user") or base.user
    port_s = hv.get("ansible_port") or hv.get("ansible_ssh_port")
    port = _int_var(port_s, "ansible_port", where) if port_s else base.port
    host = Host(hostname, user=user, port=port, label=alias)
    host.tensorrt = hv.get("tensorrt") or None
    return host


def collect_hosts(hosts: "Sequence[str]", hosts_file: "Optional[str]" = None, group: "Optional[str]" = None,
                  required: bool = True) -> "List[Host]":
    """Hosts from the command line plus ``--hosts FILE`` (``--group``), duplicates dropped.

    ``required=False``: none is an empty list (``deploy``/``rollback`` decide what that means: fine
    with ``--rootfs``, "no hosts given" without)."""
    out: "List[Host]" = [parse_host(h) for h in hosts]
    if hosts_file:
        out.extend(load_inventory(hosts_file, group))
    elif group:
        raise BadInput("--group needs --hosts FILE (an inventory with [group] sections)")
    unique: "List[Host]" = []
    for h in out:
        if h not in unique:
            unique.append(h)
    if not unique and required:
        raise BadInput("no hosts given: name them as user@host[:port] or pass --hosts FILE")
    return unique
