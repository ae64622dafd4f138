"""A real OCI registry on a loopback port, for the fleet tests.

``RegistryServer.start(workdir)`` runs Debian's ``docker-registry`` (CNCF distribution 2.8) on
127.0.0.1 with filesystem storage in ``workdir/storage``, htpasswd (bcrypt) auth, and TLS with
a server certificate signed by a CA made here with ``openssl``; the access log (one Apache
combined-format line per request, with the client's User-Agent) goes to ``workdir/registry.log``,
so tests count what each agent asked.  ``stop()``/``start_again()`` stop it and start it on the
same port with the same storage.  Install it with ``bash scripts/install_system_deps.sh``
(``docker-registry``, ``apache2-utils``); without it :func:`registry_skip_reason` says why.
"""
import json
import base64
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from support.sshd_server import _detach_and_die_with_parent, free_port

BINARIES = ("docker-registry", "htpasswd", "openssl")
USER, PASSWORD = "jd-fleet", "loopback-only-secret"
_ACCESS_RE = re.compile(r'^\S+ - \S+ \[[^\]]+\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"$')

_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  tls:
    certificate: {cert}
    key: {key}
auth:
{auth}"""
_HTPASSWD = """  htpasswd:
    realm: jetson-deploy-tests
    path: {htpasswd}
"""
# distribution's token auth (docs/spec/auth/token.md), as Docker Hub, GHCR and Harbor do it
_TOKEN = """  token:
    realm: http://127.0.0.1:{tport}/token
    service: jd-test-registry
    issuer: jd-test-issuer
    rootcertbundle: {ca}
"""


def registry_skip_reason() -> "Optional[str]":
    for b in BINARIES:
        if shutil.which(b) is None:
            return "{} not installed (apt-get install docker-registry apache2-utils; scripts/install_system_deps.sh)".format(b)
    return None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def make_ca(d: Path, name: str = "jetson-deploy test CA") -> "Dict[str, Path]":
    """A CA (P-256) and a server certificate for 127.0.0.1/localhost signed by it."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key, csr, ext = (d / n for n in ("ca.pem", "ca.key", "server.pem", "server.key", "server.csr", "ext.cnf"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=" + name)
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


class Access(object):
    """One access-log line."""

    __slots__ = ("method", "path", "status", "size", "agent")

    def __init__(self, method: str, path: str, status: int, size: int, agent: str) -> None:
        self.method, self.path, self.status, self.size, self.agent = method, path, status, size, agent

    def __repr__(self) -> str:
        return "{} {} {} {} {!r}".format(self.method, self.path, self.status, self.size, self.agent)


class RegistryServer(object):
    """One docker-registry. ``host`` (``127.0.0.1:PORT``) is what references start with."""

    def __init__(self, workdir: Path, token: bool = False) -> None:
        self.dir = Path(workdir)
        self.storage = self.dir / "storage"
        self.log = self.dir / "registry.log"
        self.port = free_port()
        self.proc: "Optional[subprocess.Popen]" = None
        self.tls = make_ca(self.dir / "tls")
        self.ca_cert = str(self.tls["ca"])
        htp = self.dir / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htp), USER, PASSWORD], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
        self.tokens = TokenServer(self.tls) if token else None
        auth = _TOKEN.format(tport=self.tokens.port, ca=self.ca_cert) if self.tokens else _HTPASSWD.format(htpasswd=htp)
        (self.dir / "config.yml").write_text(_CONFIG.format(storage=self.storage, port=self.port, cert=self.tls["cert"],
                                                            key=self.tls["key"], auth=auth))
        self.docker_config = self.dir / "docker"  # what `docker login` / `oras login` would have written
        self.docker_config.mkdir()
        auth = base64.b64encode("{}:{}".format(USER, PASSWORD).encode()).decode()
        (self.docker_config / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))

    @property
    def host(self) -> str:
        return "127.0.0.1:{}".format(self.port)

    @classmethod
    def start(cls, workdir: Path, token: bool = False) -> "RegistryServer":
        """``token``: Bearer token auth through a :class:`TokenServer` instead of htpasswd."""
        srv = cls(workdir, token)
        srv.start_again()
        return srv

    def start_again(self) -> None:
        """Start (again) on the same port with the same storage; return once it answers."""
        logf = open(str(self.log), "ab")
        try:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")], stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_detach_and_die_with_parent)
        finally:
            logf.close()
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen("https://{}/v2/".format(self.host), context=ctx, timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("docker-registry did not start: " + self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it at once (SIGKILL: connections in flight are cut, as when the server dies)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        """Stop the registry and its token service for good."""
        self.stop()
        if self.tokens is not None:
            self.tokens.stop()

    # ------------------------------------------------------------------ what tests look at

    def args(self) -> "List[str]":
        """CLI options reaching this registry with its CA and the Docker config's credentials."""
        return ["--ca-cert", self.ca_cert, "--docker-config", str(self.docker_config)]

    def options(self):  # -> RegistryOptions
        from jetson_deploy.deploy.oci import RegistryOptions

        return RegistryOptions(ca_cert=self.ca_cert, docker_config=str(self.docker_config))

    def mark(self) -> int:
        """A position in the access log; :meth:`accesses` since it."""
        return self.log.stat().st_size if self.log.exists() else 0

    def accesses(self, since: int = 0, agent: "Optional[str]" = None) -> "List[Access]":
        """Requests logged since *since*, after the log has caught up: the registry writes a line
        after its handler returns, which can be after the client has read the last byte, so a
        marker request is sent and waited for first (its own line is left out)."""
        self._settle()
        with open(str(self.log), "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            m = _ACCESS_RE.match(line.strip())
            if m and "jd-settle=" not in m.group(2) and (agent is None or agent in m.group(5)):
                size = int(m.group(4)) if m.group(4).isdigit() else 0
                out.append(Access(m.group(1), m.group(2), int(m.group(3)), size, m.group(5)))
        return out

    def _settle(self, timeout: float = 15.0) -> None:
        self._settles = getattr(self, "_settles", 0) + 1
        marker = "/v2/?jd-settle={}".format(self._settles)
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        try:
            urllib.request.urlopen("https://{}{}".format(self.host, marker), context=ctx, timeout=5)
        except urllib.error.HTTPError:
            pass  # 401 without credentials: logged all the same
        except OSError:
            return  # the registry is down (a test stopped it): its log is final
        deadline = time.monotonic() + timeout
        while marker not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("the registry never logged " + marker)
            time.sleep(0.02)

    def blob_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob's bytes (to tamper with them)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class TokenServer(object):
    """The registry's token service: ``GET /token?service=S&scope=repository:NAME:ACTIONS`` with Basic
    credentials answers ``{"token": JWT}``, an ES256 JWT whose ``x5c`` is the test CA (the registry's
    ``rootcertbundle``) granting the scope's actions; wrong or no credentials get no actions.  Records
    each request's scope in ``requests``."""

    def __init__(self, tls: "Dict[str, Path]") -> None:
        import http.server
        import threading

        from cryptography.hazmat.primitives import serialization

        self.key = serialization.load_pem_private_key(Path(tls["ca"]).with_name("ca.key").read_bytes(), password=None)
        der = subprocess.run(["openssl", "x509", "-in", str(tls["ca"]), "-outform", "DER"], check=True,
                             stdout=subprocess.PIPE, timeout=60).stdout
        self.x5c = base64.b64encode(der).decode("ascii")
        self.requests: "List[str]" = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, req) -> None:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(req.path).query)
        scope = (q.get("scope") or [""])[0]
        self.requests.append(scope)
        expected = "Basic " + base64.b64encode("{}:{}".format(USER, PASSWORD).encode()).decode()
        granted = []
        if req.headers.get("Authorization") == expected and scope.count(":") == 2:
            kind, name, actions = scope.split(":")
            granted = [{"type": kind, "name": name, "actions": actions.split(",")}]
        body = json.dumps({"token": self.token(granted), "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def token(self, access: list) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        head = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        claims = {"iss": "jd-test-issuer", "sub": USER, "aud": "jd-test-registry", "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": str(now) + str(len(self.requests)), "access": access}
        signing_input = _b64url(json.dumps(head).encode()) + "." + _b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
