"""How commands and files reach a device: the system OpenSSH client, rsync or sftp.

Everything goes through the user's own ``ssh`` so ``~/.ssh/config``, the agent and keys,
ProxyJump and known_hosts all apply; ``--ssh-config FILE`` adds ``-F FILE`` to every
ssh/rsync/sftp call.  :class:`LocalTransport` runs the same scripts against a directory
(a mounted SD card or an L4T rootfs) with no ssh at all.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..errors import BadInput, JetsonDeployError, MissingDependency
from .inventory import Host


class RemoteError(JetsonDeployError):
    """A step on one device failed; the message is one line naming the host and the cause."""

    exit_code = 1


class ScriptResult(object):
    __slots__ = ("rc", "stdout", "stderr")

    def __init__(self, rc: int, stdout: str, stderr: str) -> None:
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def lines(self, key: str) -> "List[str]":
        """Values of the ``KEY value`` lines (value may be empty)."""
        out = []
        for line in self.stdout.splitlines():
            if line == key:
                out.append("")
            elif line.startswith(key + " "):
                out.append(line[len(key) + 1:])
        return out

    def first(self, key: str, default: "Optional[str]" = None) -> "Optional[str]":
        vals = self.lines(key)
        return vals[0] if vals else default

    def error_line(self) -> str:
        errs = self.lines("ERROR")
        if errs:
            return errs[-1]
        text = (self.stderr or "").strip().splitlines()
        return text[-1] if text else "exit status {}".format(self.rc)


def _last_line(text: str) -> str:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else ""


def describe_failure(text: str) -> str:
    """One line for a failed ssh/rsync/sftp call, mapping the common causes."""
    low = (text or "").lower()
    if "no space left on device" in low:
        return "the device ran out of disk space (No space left on device): free space there or deploy with a smaller --keep"
    if "permission denied (publickey" in low or "permission denied, please try again" in low:
        return "ssh authentication failed (Permission denied): check the user, your key/agent or --ssh-config"
    if "host key verification failed" in low:
        return "ssh host key verification failed: the device's key is unknown or changed (check known_hosts)"
    if "connection refused" in low:
        return "connection refused: is sshd running on the device, and is the port right?"
    if "timed out" in low or "timeout" in low:
        return "connection timed out: is the device on the network?"
    if "could not resolve hostname" in low or "name or service not known" in low:
        return "host name not found: " + _last_line(text)
    if "broken pipe" in low or "connection reset" in low or "connection closed" in low:
        return "connection lost: " + _last_line(text)
    return _last_line(text) or "failed"


# rsync exit codes worth a word when rsync printed nothing useful (the link died first)
RSYNC_EXIT = {
    5: "error starting the transfer on the device (is rsync installed there?)",
    10: "socket I/O error (connection lost?)",
    11: "file I/O error on the device (disk full or read-only?)",
    12: "protocol data stream error (connection lost?)",
    20: "interrupted (SIGINT/SIGTERM)",
    23: "partial transfer (some files could not be written on the device)",
    30: "timeout in data send/receive (link stalled for 60 s)",
    255: "ssh failed",
}


class Transport(object):
    label = ""
    kind = "ssh"

    def run_script(self, script: str, timeout: "Optional[float]" = None) -> "ScriptResult":  # pragma: no cover
        raise NotImplementedError

    def upload(self, local_root: Path, files: "Sequence[Tuple[str, int]]", remote_dir: str, method: str,
               staged: "Optional[dict]" = None, bwlimit: "Optional[int]" = None,
               on_bytes: "Optional[Callable[[int], None]]" = None) -> str:  # pragma: no cover
        """Copy ``files`` (relpath, size) into ``remote_dir``; ``on_bytes(n)`` reports bytes sent so far."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class SSHTransport(Transport):
    """One device over the system OpenSSH client."""

    def __init__(self, host: "Host", ssh_config: "Optional[str]" = None, connect_timeout: int = 10,
                 ssh_options: "Sequence[str]" = ()) -> None:
        if shutil.which("ssh") is None:
            raise MissingDependency("the OpenSSH client (ssh) is needed for deploy: apt install openssh-client")
        if ssh_config is not None and not Path(ssh_config).is_file():
            raise BadInput("--ssh-config {} does not exist".format(ssh_config))
        self.host = host
        self.label = host.label
        self.ssh_config = ssh_config
        self.connect_timeout = int(connect_timeout)
        self.ssh_options = list(ssh_options)

    def common_options(self) -> "List[str]":
        """Options shared by ssh, sftp and rsync's ssh: config file, batch mode, keep-alives."""
        opts: "List[str]" = []
        if self.ssh_config:
            opts += ["-F", str(self.ssh_config)]
        opts += [
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout={}".format(self.connect_timeout),
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=6",
        ]
        for o in self.ssh_options:
            opts += ["-o", o]
        return opts

    def ssh_argv(self) -> "List[str]":
        argv = ["ssh"] + self.common_options() + ["-T"]
        if self.host.port is not None:
            argv += ["-p", str(self.host.port)]
        return argv

    def run_script(self, script: str, timeout: "Optional[float]" = None) -> "ScriptResult":
        argv = self.ssh_argv() + ["--", self.host.destination, "sh -s"]  # "--": the destination is never an option
        try:
            p = subprocess.run(argv, input=script.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError("no answer from the device within {:.0f} s (ssh call timed out)".format(timeout or 0))
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode == 255 and not out:
            raise RemoteError(describe_failure(err))
        return ScriptResult(p.returncode, out, err)

    def upload(self, local_root: Path, files: "Sequence[Tuple[str, int]]", remote_dir: str, method: str,
               staged: "Optional[dict]" = None, bwlimit: "Optional[int]" = None,
               on_bytes: "Optional[Callable[[int], None]]" = None) -> str:
        if method == "rsync":
            return self._rsync(local_root, files, remote_dir, bwlimit, on_bytes)
        return self._sftp(local_root, files, remote_dir, staged or {}, bwlimit)

    def _rsync(self, local_root: Path, files: "Sequence[Tuple[str, int]]", remote_dir: str, bwlimit: "Optional[int]",
               on_bytes: "Optional[Callable[[int], None]]" = None) -> str:
        ssh_cmd = " ".join(shlex.quote(a) for a in self.ssh_argv())
        with tempfile.NamedTemporaryFile("w", prefix="jetson-deploy-files-", suffix=".txt", delete=False) as lst:
            lst.write("".join(rel + "\n" for rel, _ in files))
        try:
            argv = [
                "rsync", "-rt", "--partial-dir=.rsync-partial", "--timeout=60",
                "--files-from=" + lst.name, "-e", ssh_cmd,
            ]
            if bwlimit:
                argv.append("--bwlimit={}".format(int(bwlimit)))
            if on_bytes is not None and rsync_has_progress2():
                argv.append("--info=progress2")
            argv += [str(local_root) + "/", "{}:{}/".format(self.host.copy_destination, remote_dir)]
            rc, err = _run_streaming(argv, on_bytes)
        finally:
            os.unlink(lst.name)
        if rc != 0:
            why = describe_failure(err)
            if why == "failed" and rc in RSYNC_EXIT:
                why = RSYNC_EXIT[rc]
            raise RemoteError("upload failed (rsync exit {}): {}".format(rc, why))
        return "rsync"

    def _sftp(self, local_root: Path, files: "Sequence[Tuple[str, int]]", remote_dir: str, staged: dict,
              bwlimit: "Optional[int]") -> str:
        if shutil.which("sftp") is None:
            raise MissingDependency("neither rsync nor sftp is available here: apt install rsync (or openssh-client)")
        cmds: "List[str]" = []
        made = set()
        for rel, size in files:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    cmds.append('-mkdir "{}/{}"'.format(remote_dir, d))
            have = staged.get(rel)
            local = str(Path(local_root) / rel)
            if have == size:
                continue  # already complete in staging; the device verifies it anyway
            if have is not None and 0 < have < size:
                cmds.append('put -a "{}" "{}/{}"'.format(local, remote_dir, rel))  # resume
            else:
                cmds.append('put "{}" "{}/{}"'.format(local, remote_dir, rel))
        if not any(not c.startswith("-mkdir") for c in cmds):
            return "sftp"
        with tempfile.NamedTemporaryFile("w", prefix="jetson-deploy-sftp-", suffix=".txt", delete=False) as bf:
            bf.write("\n".join(cmds) + "\n")
        try:
            argv = ["sftp", "-q", "-b", bf.name] + self.common_options()
            if self.host.port is not None:
                argv += ["-P", str(self.host.port)]
            if bwlimit:
                argv += ["-l", str(int(bwlimit) * 8)]  # sftp takes Kbit/s
            argv += ["--", self.host.copy_destination]
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        finally:
            os.unlink(bf.name)
        if p.returncode != 0:
            err = p.stderr.decode("utf-8", "replace") + p.stdout.decode("utf-8", "replace")
            raise RemoteError("upload failed (sftp exit {}): {}".format(p.returncode, describe_failure(err)))
        return "sftp"


_PROGRESS_RE = re.compile(rb"^\s*([0-9][0-9,.']*)\s+\d+%")
_progress2: "List[bool]" = []


def rsync_has_progress2() -> bool:
    """rsync >= 3.1 prints whole-transfer progress with --info=progress2."""
    if not _progress2:
        try:
            out = subprocess.run(["rsync", "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 timeout=10).stdout.decode("ascii", "replace")
            m = re.search(r"version\s+(\d+)\.(\d+)", out)
            _progress2.append(bool(m) and (int(m.group(1)), int(m.group(2))) >= (3, 1))
        except (OSError, subprocess.SubprocessError):
            _progress2.append(False)
    return _progress2[0]


def _run_streaming(argv: "List[str]", on_bytes: "Optional[Callable[[int], None]]") -> "Tuple[int, str]":
    """Run ``argv``; feed rsync progress2 byte counts from stdout to ``on_bytes``; return (rc, stderr)."""
    with tempfile.TemporaryFile() as errf:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL)
        assert p.stdout is not None
        buf = b""
        try:
            while True:
                chunk = p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(4096)  # type: ignore[attr-defined]
                if not chunk:
                    break
                buf += chunk
                parts = re.split(rb"[\r\n]", buf)
                buf = parts.pop()
                for part in parts:
                    m = _PROGRESS_RE.match(part)
                    if m and on_bytes is not None:
                        digits = re.sub(rb"[^0-9]", b"", m.group(1))
                        if digits:
                            try:
                                on_bytes(int(digits))
                            except Exception:  # noqa: BLE001 - progress must never break an upload
                                pass
            rc = p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        errf.seek(0)
        return rc, errf.read().decode("utf-8", "replace")


class LocalTransport(Transport):
    """A directory on this machine (mounted SD card, L4T rootfs): same scripts, local sh."""

    kind = "local"

    def __init__(self, label: str) -> None:
        self.label = label

    def run_script(self, script: str, timeout: "Optional[float]" = None) -> "ScriptResult":
        try:
            p = subprocess.run(["sh", "-s"], input=script.encode("utf-8"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError("local install step timed out after {:.0f} s".format(timeout or 0))
        return ScriptResult(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))

    def upload(self, local_root: Path, files: "Sequence[Tuple[str, int]]", remote_dir: str, method: str,
               staged: "Optional[dict]" = None, bwlimit: "Optional[int]" = None,
               on_bytes: "Optional[Callable[[int], None]]" = None) -> str:
        staged = staged or {}
        dest_root = Path(remote_dir)
        for rel, size in files:
            if staged.get(rel) == size:
                continue
            dst = dest_root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.parent / (".{}.part".format(dst.name))
            try:
                shutil.copyfile(str(Path(local_root) / rel), str(tmp))
                os.replace(str(tmp), str(dst))
            except OSError as exc:
                try:
                    tmp.unlink()
                except OSError:
                    pass
                raise RemoteError("copy into {} failed: {}".format(dest_root, describe_failure(str(exc))))
        return "copy"
