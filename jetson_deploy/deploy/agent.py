"""The pull agent: a board polls a registry tag and updates itself with deploy's staged activation.

Each poll is one ``HEAD`` of ``REPO:TAG`` (the registry answers with the digest the tag points at):

* the digest this agent last activated, or one it refused for good (a signature, a TensorRT
  minimum, a failed health check): nothing else happens, nothing is written;
* another digest: :func:`.agent_pull.update` pulls, checks and activates it, or refuses it and
  keeps the running version; the outcome goes into ``ROOT/agent/state.json`` and, as the board's
  status record, to the registry (``REPO/status:BOARD``; ``fleet status`` reads them).

A registry that does not answer costs a back-off: the interval doubled per failed poll up to
``max_backoff``, times a random factor in [0.5, 1] (full jitter, so a fleet that lost its
registry does not come back in step); quiet polls are spread by +-10 %.  SIGTERM/SIGINT end the
loop between polls; an update in progress finishes (or is cut by systemd's stop timeout, which
leaves the running version active: see docs/deploy.md).
"""
import logging
import os
import random
import re
import socket
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from .. import __version__
from ..errors import BadInput, JetsonDeployError
from . import artifact
from .agent_pull import Board, update
from .agent_state import AgentState, Outcome, RootLock
from .oci import Registry, RegistryError, RegistryOptions
from .oci_ref import Reference, check_tag
from .options import DeployOptions

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
DEFAULT_MAX_BACKOFF = 3600.0


def default_board_id() -> str:
    """This board's id in status records: its host name, as a tag allows it."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname() or "board").lstrip(".-") or "board"
    return name[:128]


class AgentOptions(object):
    """What ``agent`` is asked: the tag it follows, how it activates (``deploy``: root, keep, health
    gate, service), what it trusts and what this board is (``public_key``/``allow_unsigned``,
    ``tensorrt``/``sm``: None probes this machine), how it polls and reports."""

    __slots__ = ("ref", "deploy", "registry", "public_key", "allow_unsigned", "interval", "max_backoff", "board",
                 "name", "tensorrt", "sm", "status_repo", "report", "bwlimit")

    def __init__(self, ref: str, deploy: "DeployOptions", registry: "Optional[RegistryOptions]" = None,
                 public_key: "Optional[str]" = None, allow_unsigned: bool = False, interval: float = DEFAULT_INTERVAL,
                 max_backoff: float = DEFAULT_MAX_BACKOFF, board: "Optional[str]" = None, name: "Optional[str]" = None,
                 tensorrt: "Optional[str]" = None, sm: "Optional[Any]" = None, status_repo: "Optional[str]" = None,
                 report: bool = True, bwlimit: "Optional[int]" = None) -> None:
        self.ref, self.deploy, self.registry = ref, deploy, registry or RegistryOptions()
        self.public_key, self.allow_unsigned = public_key, allow_unsigned
        self.interval, self.max_backoff = interval, max_backoff
        self.board, self.name, self.tensorrt, self.sm = board, name, tensorrt, sm
        self.status_repo, self.report, self.bwlimit = status_repo, report, bwlimit

    def reference(self) -> "Reference":
        r = Reference.parse(self.ref, tag_required=True)
        if r.digest:
            raise BadInput("{}: the agent follows a tag (REPO:TAG); a digest never changes".format(self.ref))
        return r

    def status_reference(self) -> "Reference":
        r = self.reference()
        return r.with_repo(self.status_repo or "{}/{}".format(r.repo, artifact.STATUS_SUFFIX))

    def trusted_key(self) -> "Optional[str]":
        """The key bundles must be signed by: --key, else the device-wide one; None only with --allow-unsigned."""
        from ..bundle.sign import required_key

        key = required_key(self.public_key)
        if key is None and not self.allow_unsigned:
            raise BadInput("the agent needs the publisher's public key: --key PUB (or /etc/jetson-deploy/trusted.pub); "
                           "--allow-unsigned runs unsigned bundles (a lab only)")
        if key is not None and not os.path.isfile(key):
            raise BadInput("signing key {} does not exist: give the Ed25519 public key file".format(key))
        return key

    def checked(self) -> "AgentOptions":
        """A copy with the root made absolute and everything that cannot work refused (BadInput, exit 2)."""
        self.reference()
        self.status_reference()
        if not (0.01 <= self.interval <= 86400):
            raise BadInput("--interval must be between 0.01 and 86400 seconds")
        if self.max_backoff < self.interval:
            raise BadInput("--max-backoff must be at least --interval")
        check_tag(self.board or default_board_id(), "--board-id")
        if self.deploy.rootfs is not None:
            raise BadInput("the agent activates on the machine it runs on: --rootfs does not apply")
        root = os.path.abspath(os.path.expanduser(self.deploy.root))
        new = AgentOptions.__new__(AgentOptions)
        for k in self.__slots__:
            setattr(new, k, getattr(self, k))
        new.deploy = self.deploy.replace(root=root).checked()
        new.board = self.board or default_board_id()
        return new


def probe_board(tensorrt: "Optional[str]", sm: "Optional[Any]") -> "Dict[str, Any]":
    """This board's TensorRT version (its module, once at start) and GPU SM (the Jetson model in
    the device tree); ``--tensorrt``/``--sm`` override; None where unknown (no check then).
    Nothing else is imported: no CUDA context, no torch."""
    from .._lazy import optional
    from ..machine import jetson_model, sm_for_model

    if tensorrt is None:
        version = getattr(optional("tensorrt"), "__version__", None)
        tensorrt = str(version) if version and re.match(r"^\d+(\.\d+)*$", str(version)) else None
    if sm is None:
        sm = sm_for_model(jetson_model(Path("/")))
    return {"tensorrt": tensorrt, "sm": sm}


class Agent(object):
    """One agent on one root: ``with Agent(options) as a: a.poll()`` (or :meth:`run`)."""

    def __init__(self, options: "AgentOptions") -> None:
        self.o = o = options.checked()
        self.ref = o.reference()
        self.status_ref = o.status_reference()
        self.dir = Path(o.deploy.root) / "agent"
        self.downloads = self.dir / "downloads"
        self.lock = RootLock(self.dir / "lock")
        key = o.trusted_key()
        info = probe_board(o.tensorrt, o.sm)
        self.board = Board(info["tensorrt"], info["sm"], key, o.name)
        ua = "jetson-deploy-agent/{} board/{}".format(__version__, o.board)
        reg_opts = RegistryOptions(o.registry.ca_cert, o.registry.insecure, o.registry.username, o.registry.docker_config,
                                   o.registry.timeout, ua)
        self.registry = Registry(self.ref.host, reg_opts)
        self.state: "Optional[AgentState]" = None
        self.polls = 0

    def __enter__(self) -> "Agent":
        try:
            self.downloads.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput("cannot create {} ({}): create the root for the agent's user, or pass --root".format(self.dir, exc.strerror))
        self.lock.acquire()
        self.state = AgentState(self.dir / "state.json")
        if self.state["ref"] not in (None, str(self.ref)):
            log.info("[agent] now following %s (was %s)", self.ref, self.state["ref"])
        self.state["ref"], self.state["board"] = str(self.ref), self.o.board
        self.registry.basic_auth = bool(self.state["basic_auth"])
        return self

    def __exit__(self, *exc: Any) -> None:
        self.registry.close()
        self.lock.release()

    # ------------------------------------------------------------------ one poll

    def poll(self) -> "Outcome":
        """HEAD the tag; update when it moved; report when something changed.  Never raises for
        a registry, disk or bundle problem: those are the Outcome."""
        st = self.state
        assert st is not None, "use Agent as a context manager"
        self.polls += 1
        before = self.registry.requests
        try:
            out = self._poll(st)
        except (JetsonDeployError, OSError) as exc:
            out = Outcome("failed", _one_line(exc))
            st["failures"] = int(st["failures"] or 0) + 1
            st["last_error"] = out.message
        finally:
            self.registry.close()
        if self.o.report and st["report_pending"]:
            self._report(st)
        st["basic_auth"] = self.registry.basic_auth
        st.save()
        out.requests = self.registry.requests - before
        return out

    def _poll(self, st: "AgentState") -> "Outcome":
        digest = self.registry.head_manifest(self.ref.repo, self.ref.tag or "")
        if digest is None:
            raise RegistryError("{} does not exist (nothing published under that tag yet?)".format(self.ref), 404)
        last = st.attempt
        if digest == st["digest"] or (last.get("digest") == digest and last.get("sticky")):
            st["failures"] = 0
            if digest == st["digest"]:
                log.debug("[agent] %s: %s unchanged", self.ref, digest[:19])
                return Outcome("unchanged", "{} {} is active".format(st["name"] or "bundle", st["version"]), digest, st["version"] or "")
            log.debug("[agent] %s: %s was %s before; waiting for another publish", self.ref, digest[:19], last.get("result"))
            return Outcome(last.get("result", "refused"), last.get("message", ""), digest, last.get("version", ""), sticky=True)
        log.info("[agent] %s -> %s: updating", self.ref, digest[:19])
        out = update(self.registry, self.ref, digest, self.board, self.o.deploy, self.downloads, self.o.bwlimit)
        st.record(out)
        if out.ok:
            st["name"] = out.name
        log.log(logging.INFO if out.ok else logging.WARNING, "[agent] %s %s: %s", out.result, out.version or digest[:19], out.message)
        return out

    def _report(self, st: "AgentState") -> None:
        """The board's status record to ``REPO/status:BOARD``: one PUT (its empty config blob is sent
        only when the registry says it lacks it); kept pending (retried at the next poll) on failure."""
        repo, body = self.status_ref.repo, artifact.status_manifest(self.status_record(st))
        try:
            try:
                self.registry.put_manifest(repo, self.o.board, body)
            except RegistryError as exc:
                if exc.status != 400 or "BLOB_UNKNOWN" not in str(exc):
                    raise
                data = artifact.EMPTY_BLOB
                self.registry.upload_blob(repo, None, artifact.descriptor(artifact.EMPTY_TYPE, data)["digest"], len(data), data=data)
                self.registry.put_manifest(repo, self.o.board, body)
            st["report_pending"] = False
        except (JetsonDeployError, OSError) as exc:
            log.warning("[agent] could not report this board's status to %s/%s (%s); retrying at the next poll",
                        self.status_ref.host, repo, _one_line(exc))
        finally:
            self.registry.close()

    def status_record(self, st: "AgentState") -> "Dict[str, Any]":
        att = st.attempt
        active = _active_version(self.o.deploy.root, st["name"])
        return {"board": self.o.board, "ref": str(self.ref), "name": st["name"], "version": active,
                "digest": st["digest"] if active == st["version"] else "", "state": "ok" if (not att or att.get("result") in ("deployed", "unchanged")) else att.get("result"),
                "message": att.get("message", ""), "attempt_version": att.get("version", ""), "attempt_digest": att.get("digest", ""),
                "time": att.get("time", ""), "tensorrt": self.board.tensorrt, "sm": self.board.sm, "agent": __version__}

    # ------------------------------------------------------------------ the loop

    def delay(self, out: "Outcome") -> float:
        """Seconds until the next poll: the interval (+-10 %), or the back-off after failures."""
        st = self.state
        failures = int(st["failures"] or 0) if st is not None else 0
        if out.result == "failed" or (out.result == "refused" and not out.sticky):
            base = min(self.o.max_backoff, self.o.interval * (2 ** min(max(failures, 1), 20)))
            return base * random.uniform(0.5, 1.0)
        return self.o.interval * random.uniform(0.9, 1.1)

    def run(self, stop: "Optional[threading.Event]" = None, once: bool = False) -> "Outcome":
        """Poll until ``stop`` is set (or once); the last outcome."""
        stop = stop or threading.Event()
        while True:
            out = self.poll()
            if once or stop.is_set():
                return out
            stop.wait(self.delay(out))
            if stop.is_set():
                return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and not isinstance(exc, JetsonDeployError):
        text = "{}: {}".format(exc.filename, exc.strerror) if exc.filename else (exc.strerror or text)
    return text or type(exc).__name__


def _active_version(root: str, name: "Optional[str]") -> str:
    if not name:
        return ""
    try:
        return os.readlink(os.path.join(root, "active", name)).rstrip("/").rsplit("/", 1)[-1]
    except OSError:
        return ""

