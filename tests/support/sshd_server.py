"""A real OpenSSH server on a loopback port, for the deploy tests.

``SshServer.start(workdir)`` runs Debian's ``/usr/sbin/sshd -D`` on 127.0.0.1 with a
temporary host key, a temporary user key in a temporary authorized_keys, and a temporary
sshd_config (``StrictModes no``, ``UsePAM no``, PidFile in the temp dir).  It writes a
client ssh_config (``IdentityFile``, ``UserKnownHostsFile``, ``StrictHostKeyChecking
accept-new``, ``Port``) with a ``Host`` alias, for ``--ssh-config``.  Install the server with
``bash scripts/install_system_deps.sh``; without it :func:`sshd_skip_reason` says why the
tests skip.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

SSHD = "/usr/sbin/sshd"


def sshd_skip_reason() -> "Optional[str]":
    """None when a real sshd and client can run here, else why the tests must skip."""
    sshd = SSHD if os.path.exists(SSHD) else shutil.which("sshd")
    if not sshd:
        return "OpenSSH server not installed (/usr/sbin/sshd): run `bash scripts/install_system_deps.sh`"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return "OpenSSH client tool {} not installed: run `bash scripts/install_system_deps.sh`".format(tool)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        except OSError as exc:
            return "cannot create /run/sshd for sshd privilege separation: {}".format(exc)
    return None


def free_port(listen: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((listen, 0))
        return s.getsockname()[1]


def ipv6_loopback() -> bool:
    try:
        free_port("::1")
        return True
    except OSError:
        return False


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jetson-deploy-test", "-f", str(path)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


def _detach_and_die_with_parent() -> None:
    """In the child: own session (killpg in stop()), and SIGTERM if the test process dies
    without tearing down (Linux prctl PR_SET_PDEATHSIG), so no sshd outlives the tests."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except Exception:  # noqa: BLE001 - best effort, not Linux or no libc
        pass


class SshServer(object):
    """One sshd. ``alias`` (in ``ssh_config``) and ``spec`` (``user@127.0.0.1:port``) reach it.
    ``listen`` is a loopback address: 127.0.0.1 (default) or ::1."""

    def __init__(self, workdir: Path, alias: str = "jd-test", listen: str = "127.0.0.1",
                 env: "Optional[Dict[str, str]]" = None) -> None:
        if listen not in ("127.0.0.1", "::1"):
            raise ValueError("test sshd listens on loopback only")
        self.dir = Path(workdir)
        self.alias = alias
        self.listen = listen
        # sshd_config SetEnv: variables for every session (e.g. PATH with fake tools first)
        self.env = dict(env or {})
        # the account sshd authenticates, whatever $USER/$LOGNAME say (CI runs as root)
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.port = 0
        self.proc: "Optional[subprocess.Popen]" = None
        self.ssh_config = self.dir / "ssh_config"
        self.log = self.dir / "sshd.log"

    @property
    def spec(self) -> str:
        host = "[::1]" if self.listen == "::1" else self.listen
        return "{}@{}:{}".format(self.user, host, self.port)

    @classmethod
    def start(cls, workdir: Path, alias: str = "jd-test", user_key: "Optional[Path]" = None,
              listen: str = "127.0.0.1", env: "Optional[Dict[str, str]]" = None) -> "SshServer":
        srv = cls(workdir, alias, listen, env)
        srv._setup(user_key)
        srv._launch()
        return srv

    def _setup(self, user_key: "Optional[Path]") -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_key = self.dir / "host_ed25519"
        _keygen(self.host_key)
        if user_key is None:
            user_key = self.dir / "user_ed25519"
            _keygen(user_key)
        self.user_key = Path(user_key)
        auth = self.dir / "authorized_keys"
        auth.write_text(Path(str(self.user_key) + ".pub").read_text())
        os.chmod(str(auth), 0o600)
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.touch()

    def _write_configs(self) -> None:
        sftp = "/usr/lib/openssh/sftp-server"
        (self.dir / "sshd_config").write_text("\n".join([
            "Port {}".format(self.port),
            "ListenAddress {}".format(self.listen),
            "HostKey {}".format(self.host_key),
            "PidFile {}".format(self.dir / "sshd.pid"),
            "AuthorizedKeysFile {}".format(self.dir / "authorized_keys"),
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowUsers {}".format(self.user),
            "MaxStartups 50:30:100",
            "MaxSessions 50",
            "LogLevel ERROR",
            "Subsystem sftp {}".format(sftp if os.path.exists(sftp) else "internal-sftp"),
        ] + ["SetEnv {}={}".format(k, v) for k, v in sorted(self.env.items())] + [""]))
        self.ssh_config.write_text("\n".join([
            "Host {} {}".format(self.alias, self.listen),
            "  HostName {}".format(self.listen),
            "  Port {}".format(self.port),
            "  User {}".format(self.user),
            "  IdentityFile {}".format(self.user_key),
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            "  UserKnownHostsFile {}".format(self.known_hosts),
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking accept-new",
            "  LogLevel ERROR",
            # the default post-quantum hybrid key exchange costs ~0.15 s a connection on a busy
            # 2-core box; the tests open hundreds of connections
            "  KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
            "",
        ]))

    def _launch(self) -> None:
        last = ""
        for _ in range(5):  # the free port may be taken between probe and bind: retry
            self.port = free_port(self.listen)
            self._write_configs()
            logf = open(str(self.log), "ab")
            self.proc = subprocess.Popen([SSHD if os.path.exists(SSHD) else "sshd", "-D", "-e",
                                          "-f", str(self.dir / "sshd_config")],
                                         stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         preexec_fn=_detach_and_die_with_parent)
            logf.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection((self.listen, self.port), timeout=0.5) as s:
                        s.settimeout(2)
                        if s.recv(4).startswith(b"SSH"):
                            return
                except OSError:
                    time.sleep(0.05)
            last = self.log.read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError("sshd did not start on {}: {}".format(self.listen, last))

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    p.kill()
                p.wait(timeout=5)

    def ssh(self, command: str, timeout: float = 30) -> "subprocess.CompletedProcess":
        """Run a command on the server with the test client config (for assertions)."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", self.alias, command],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    def __enter__(self) -> "SshServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def combined_ssh_config(servers: "List[SshServer]", path: Path) -> Path:
    """One client config with every server's alias (for multi-host deploys)."""
    path.write_text("\n".join(s.ssh_config.read_text().replace("Host {} {}".format(s.alias, s.listen), "Host " + s.alias)
                              for s in servers))
    return path


def main() -> None:  # pragma: no cover - a manual helper
    """Start a throwaway sshd to try deploy without a Jetson::

        python tests/support.sshd_server.py /tmp/fake-jetson
        jetson-deploy deploy BUNDLE jd-test --ssh-config /tmp/fake-jetson/ssh_config --root /tmp/fake-jetson/root
    """
    import sys
    import tempfile

    reason = sshd_skip_reason()
    if reason:
        sys.exit(reason)
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="jd-sshd-"))
    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    srv = SshServer.start(workdir)
    try:
        print("sshd on {} (alias {}); client config: {}".format(srv.spec, srv.alias, srv.ssh_config))
        print("try: jetson-deploy deploy BUNDLE {} --ssh-config {} --root {}".format(srv.alias, srv.ssh_config, workdir / "root"))
        print("Ctrl-C stops it.", flush=True)
        while srv.proc is not None and srv.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()

if __name__ == "__main__":  # pragma: no cover
    main()
