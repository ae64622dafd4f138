"""A small OCI distribution client: the registry HTTP API v2, standard library only.

It runs on the board's Python 3.6 (JetPack 4.6) with nothing installed, and speaks what
``publish``, ``agent`` and ``fleet status`` need of the OCI distribution spec
(github.com/opencontainers/distribution-spec, spec.md): ``HEAD``/``GET``/``PUT`` manifests,
``HEAD``/``GET`` blobs (``Range: bytes=N-`` resumes a cut download), monolithic blob uploads
(``POST`` then ``PUT ?digest=``), tag lists (``Link`` pagination).  Every byte fetched is checked
against its sha256 digest before anyone uses it.

TLS with the system's CAs plus ``--ca-cert FILE`` (a site registry's own CA); plain HTTP only with
``--insecure`` and only to a loopback address.  Auth: :mod:`.oci_auth`.  One connection per client,
reused while it lives; callers :meth:`Registry.close` it between polls.
"""
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlencode, urljoin, urlsplit

from .. import __version__
from ..errors import BadInput, CheckFailed, JetsonDeployError
from . import oci_auth
from .oci_ref import _DIGEST_RE, is_loopback, sha256_digest

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = (OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
CHUNK = 1 << 16
MAX_MANIFEST_BYTES = 4 << 20  # the distribution spec lets registries refuse manifests above 4 MiB

class RegistryError(JetsonDeployError):
    """The registry answered with an error (or not the answer the spec promises): one line."""

    exit_code = 1

    def __init__(self, message: str, status: "Optional[int]" = None) -> None:
        super().__init__(message)
        self.status = status


class RegistryUnreachable(RegistryError):
    """No answer at all (refused, timed out, reset, TLS failed): worth a retry later."""


class RegistryOptions(object):
    """How a registry is reached: ``ca_cert`` (a PEM CA trusted besides the system's), ``insecure``
    (plain HTTP, loopback only), ``username`` (password from the environment), ``docker_config``
    (the directory holding config.json), ``timeout`` seconds per socket operation."""

    __slots__ = ("ca_cert", "insecure", "username", "docker_config", "timeout", "user_agent")

    def __init__(self, ca_cert: "Optional[str]" = None, insecure: bool = False, username: "Optional[str]" = None,
                 docker_config: "Optional[str]" = None, timeout: float = 30.0, user_agent: "Optional[str]" = None) -> None:
        self.ca_cert, self.insecure, self.username, self.docker_config = ca_cert, insecure, username, docker_config
        self.timeout = timeout
        self.user_agent = user_agent or "jetson-deploy/{}".format(__version__)


class Response(object):
    __slots__ = ("status", "headers", "body", "raw")

    def __init__(self, status: int, headers: "Dict[str, str]", body: bytes, raw: Any = None) -> None:
        self.status, self.headers, self.body, self.raw = status, headers, body, raw

    def header(self, name: str) -> "Optional[str]":
        return self.headers.get(name.lower())


def _error_text(resp: "Response") -> str:
    """The registry's own words (``{"errors": [{"code", "message"}]}``), else the status line."""
    try:
        errs = json.loads(resp.body.decode("utf-8"))["errors"]
        return "; ".join("{} {}".format(e.get("code", ""), e.get("message", "")).strip() for e in errs)
    except (ValueError, KeyError, TypeError, AttributeError):
        return "HTTP {}".format(resp.status)


class Registry(object):
    """One registry host: authenticated requests and the distribution API calls built on them."""

    def __init__(self, host: str, options: "Optional[RegistryOptions]" = None) -> None:
        self.options = o = options or RegistryOptions()
        self.host = host
        if o.insecure and not is_loopback(host):
            raise BadInput("--insecure (plain HTTP) is refused for {}: it is allowed only for a registry on this machine "
                           "(127.0.0.1, ::1, localhost); give --ca-cert FILE for a registry with its own CA".format(host))
        self.scheme = "http" if o.insecure else "https"
        self.creds = oci_auth.resolve(host, o.username, o.docker_config)
        self._ssl = None if o.insecure else self._context(o.ca_cert)
        self._conn: Any = None
        self.basic_auth = False  # the registry asked for Basic: send it with every request from now on
        self._tokens = oci_auth.TokenCache()
        self.requests = 0  # sent by this client (tests and benchmarks count them)

    @staticmethod
    def _context(ca_cert: "Optional[str]") -> "ssl.SSLContext":
        ctx = ssl.create_default_context()
        if ca_cert:
            if not os.path.isfile(ca_cert):
                raise BadInput("--ca-cert {} does not exist: give the registry CA's PEM file".format(ca_cert))
            try:
                ctx.load_verify_locations(cafile=ca_cert)
            except (ssl.SSLError, OSError) as exc:
                raise BadInput("--ca-cert {} is not a PEM certificate ({})".format(ca_cert, exc))
        return ctx

    # ------------------------------------------------------------------ transport

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, host: str, scheme: str) -> Any:
        name, _, port = host.rpartition(":") if not host.endswith("]") and ":" in host else (host, "", "")
        name = name.strip("[]")
        if scheme == "http":
            if not (self.scheme == "http" or is_loopback(host)):
                raise RegistryError("{}: refusing plain HTTP to {} (credentials would cross the network in clear text)".format(
                    self.host, host))
            return http.client.HTTPConnection(name, int(port) if port else 80, timeout=self.options.timeout)
        ctx = self._ssl or self._context(self.options.ca_cert)
        return http.client.HTTPSConnection(name, int(port) if port else 443, timeout=self.options.timeout, context=ctx)

    def _send(self, method: str, url: str, headers: "Dict[str, str]", body: Any) -> Any:
        """One HTTP exchange on the kept connection (a stale kept connection is replaced once)."""
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        for attempt in (0, 1):
            fresh = self._conn is None
            if fresh:
                self._conn = self._connection(parts.netloc, parts.scheme)
            try:
                self.requests += 1
                if hasattr(body, "seek"):
                    body.seek(0)
                self._conn.request(method, target, body=body, headers=headers)
                return self._conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if fresh or attempt:
                    raise self._unreachable(exc)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._unreachable(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: BaseException) -> "RegistryUnreachable":
        if isinstance(exc, ssl.SSLError) and "certificate verify failed" in str(exc).lower():
            return RegistryUnreachable("{}: TLS certificate not trusted ({}): give the registry's CA with --ca-cert FILE".format(
                self.host, getattr(exc, "verify_message", None) or exc))
        if isinstance(exc, socket.timeout):
            return RegistryUnreachable("{}: no answer within {:.0f} s (is the registry up?)".format(self.host, self.options.timeout))
        if isinstance(exc, ConnectionRefusedError):
            return RegistryUnreachable("{}: connection refused (is the registry running on that port?)".format(self.host))
        return RegistryUnreachable("{}: {}".format(self.host, _cause(exc)))

    def _auth_header(self, scope: str) -> "Optional[str]":
        if self.basic_auth and self.creds is not None:
            return self.creds.basic()
        token = self._tokens.get(scope)
        return "Bearer " + token if token else None

    def request(self, method: str, path: str, scope: str, headers: "Optional[Dict[str, str]]" = None, body: Any = None,
                stream: bool = False) -> "Response":
        """Send METHOD PATH with auth; a 401 is answered once (Basic or Bearer) and retried.
        ``stream``: the body is left unread in ``Response.raw`` (the caller reads and closes it)."""
        url = path if "://" in path else "{}://{}{}".format(self.scheme, self.host, path)
        h = {"User-Agent": self.options.user_agent}
        h.update(headers or {})
        for attempt in (0, 1):
            auth = self._auth_header(scope)
            if auth:
                h["Authorization"] = auth
            raw = self._send(method, url, h, body)
            if raw.status == 401:
                raw.read()
                if attempt == 0:
                    self._answer_challenge(raw.getheader("WWW-Authenticate") or "", scope)
                    continue
                who = "the credentials of {}".format(self.creds) if self.creds else "anonymous access"
                raise RegistryError("{}: the registry refused {} for {} (HTTP 401): check the user, the password or token, "
                                    "and its rights on the repository".format(self.host, who, scope or path), 401)
            return self._response(raw, stream)
        raise AssertionError("unreachable")  # pragma: no cover

    def _response(self, raw: Any, stream: bool) -> "Response":
        headers = {k.lower(): v for k, v in raw.getheaders()}
        if stream and raw.status in (200, 206):
            return Response(raw.status, headers, b"", raw)
        body = raw.read(MAX_MANIFEST_BYTES + 1) if raw.status != 204 else b""
        if len(body) > MAX_MANIFEST_BYTES:
            self.close()
        return Response(raw.status, headers, body)

    def _answer_challenge(self, header: str, scope: str) -> None:
        scheme, params = oci_auth.parse_challenge(header)
        if self.creds is None and scheme == "basic":
            raise RegistryError("{} needs credentials (HTTP 401, {}): docker login {} (or oras login), or --username with ${}".format(
                self.host, header or "no challenge", self.host, oci_auth.PASSWORD_ENV), 401)
        if scheme == "basic":
            if self.basic_auth:
                raise RegistryError("{}: the registry refused the credentials of {} (HTTP 401)".format(self.host, self.creds), 401)
            self.basic_auth = True
        elif scheme == "bearer" and params.get("realm"):
            self._fetch_token(params, scope)
        else:
            raise RegistryError("{} answered 401 with an auth scheme this client does not speak: {!r}".format(self.host, header), 401)

    def _fetch_token(self, params: "Dict[str, str]", scope: str) -> None:
        """GET REALM?service=...&scope=... (with the credentials, when there are any) -> token."""
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urlencode(query)
        h = {"User-Agent": self.options.user_agent}
        if self.creds is not None:
            h["Authorization"] = self.creds.basic()
        saved, self._conn = self._conn, None
        try:
            raw = self._send("GET", url, h, None)
            body = raw.read(1 << 20)
        finally:
            self.close()
            self._conn = saved
        if raw.status != 200:
            who = "the credentials of {}".format(self.creds) if self.creds else "anonymous access"
            raise RegistryError("{}: the token service refused {} for {} (HTTP {})".format(self.host, who, query["scope"], raw.status), raw.status)
        try:
            self._tokens.put(scope, json.loads(body.decode("utf-8")))
        except (ValueError, UnicodeError):
            raise RegistryError("{}: the token service answered something that is not JSON".format(self.host))

    def _fail(self, resp: "Response", what: str) -> "RegistryError":
        if resp.status in (401, 403):
            return RegistryError("{}: {} refused (HTTP {}, {}): check the credentials' rights".format(
                self.host, what, resp.status, _error_text(resp)), resp.status)
        if resp.status >= 500:
            return RegistryUnreachable("{}: {} failed on the registry (HTTP {}, {})".format(self.host, what, resp.status, _error_text(resp)), resp.status)
        return RegistryError("{}: {}: {}".format(self.host, what, _error_text(resp)), resp.status)

    # ------------------------------------------------------------------ manifests

    def head_manifest(self, repo: str, ref: str) -> "Optional[str]":
        """The digest REPO:REF points at (``Docker-Content-Digest``), or None when there is no such tag."""
        resp = self.request("HEAD", "/v2/{}/manifests/{}".format(repo, ref), _scope(repo),
                            {"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise self._fail(resp, "HEAD {}:{}".format(repo, ref))
        digest = resp.header("Docker-Content-Digest")
        if not digest or not _DIGEST_RE.match(digest):
            raise RegistryError("{}: HEAD {}:{} gave no sha256 Docker-Content-Digest".format(self.host, repo, ref))
        return digest

    def get_manifest(self, repo: str, ref: str) -> "Tuple[bytes, str, str]":
        """(bytes, media type, digest) of REPO:REF; the bytes' sha256 is checked against a digest ref
        and against the registry's ``Docker-Content-Digest``."""
        resp = self.request("GET", "/v2/{}/manifests/{}".format(repo, ref), _scope(repo), {"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status == 404:
            raise RegistryError("{}/{}:{} does not exist (no such tag or digest)".format(self.host, repo, ref), 404)
        if resp.status != 200:
            raise self._fail(resp, "GET manifest {}:{}".format(repo, ref))
        if len(resp.body) > MAX_MANIFEST_BYTES:
            raise RegistryError("{}/{}:{}: manifest larger than {} bytes".format(self.host, repo, ref, MAX_MANIFEST_BYTES))
        got = sha256_digest(resp.body)
        expected = ref if ref.startswith("sha256:") else resp.header("Docker-Content-Digest")
        if expected and expected != got:
            raise CheckFailed("{}/{}@{}: the manifest served has sha256 {} (tampered or corrupted)".format(self.host, repo, expected, got))
        return resp.body, (resp.header("Content-Type") or "").split(";")[0], got

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        resp = self.request("PUT", "/v2/{}/manifests/{}".format(repo, ref), _scope(repo, push=True),
                            {"Content-Type": media_type, "Content-Length": str(len(body))}, body)
        if resp.status not in (200, 201):
            raise self._fail(resp, "PUT manifest {}:{}".format(repo, ref))
        return resp.header("Docker-Content-Digest") or sha256_digest(body)

    def list_tags(self, repo: str) -> "List[str]":
        """Every tag of REPO (following ``Link: <...>; rel="next"``); [] when the repository does not exist."""
        tags: "List[str]" = []
        path: "Optional[str]" = "/v2/{}/tags/list?n=1000".format(repo)
        while path:
            resp = self.request("GET", path, _scope(repo))
            if resp.status == 404:
                return tags
            if resp.status != 200:
                raise self._fail(resp, "GET tags of {}".format(repo))
            try:
                tags += list(json.loads(resp.body.decode("utf-8")).get("tags") or [])
            except (ValueError, AttributeError):
                raise RegistryError("{}: the tag list of {} is not JSON".format(self.host, repo))
            m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', resp.header("Link") or "")
            path = urljoin("/v2/", m.group(1)) if m else None
        return tags

    # ------------------------------------------------------------------ blobs

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", "/v2/{}/blobs/{}".format(repo, digest), _scope(repo, push=True))
        if resp.status in (200, 404):
            return resp.status == 200
        raise self._fail(resp, "HEAD blob {}".format(digest[:19]))

    def get_blob(self, repo: str, digest: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small blob (a config) in memory, its sha256 checked."""
        resp = self._get_blob(repo, digest, {})
        try:
            data = resp.raw.read(limit + 1)
        finally:
            resp.raw.close()
        if len(data) > limit:
            self.close()
            raise RegistryError("{}: blob {} is larger than {} bytes".format(self.host, digest[:19], limit))
        if sha256_digest(data) != digest:
            raise CheckFailed("{}/{}: blob {} does not match its digest (tampered or corrupted)".format(self.host, repo, digest))
        return data

    def _get_blob(self, repo: str, digest: str, headers: "Dict[str, str]") -> "Response":
        """GET a blob, following the redirects registries use for storage backends (no auth leaves the host)."""
        path = "/v2/{}/blobs/{}".format(repo, digest)
        resp = self.request("GET", path, _scope(repo), headers, stream=True)
        hops = 0
        while resp.status in (301, 302, 303, 307, 308) and hops < 5:
            hops += 1
            url = urljoin("{}://{}{}".format(self.scheme, self.host, path), resp.header("Location") or "")
            resp = self._redirected(url, headers)
        if resp.status == 404:
            raise RegistryError("{}/{}: blob {} is not there (deleted? publish again)".format(self.host, repo, digest), 404)
        if resp.status not in (200, 206, 416):
            raise self._fail(resp, "GET blob {}".format(digest[:19]))
        return resp

    def _redirected(self, url: str, headers: "Dict[str, str]") -> "Response":
        """Follow a redirect: on this host with auth; elsewhere (a storage backend's signed URL) without."""
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        if parts.netloc == self.host:
            return self.request("GET", target, "", headers, stream=True)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.netloc)):
            raise RegistryError("{}: a blob redirect to {} is not HTTPS; refused".format(self.host, parts.netloc))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn = (http.client.HTTPSConnection(parts.hostname, port, timeout=self.options.timeout, context=self._ssl)
                if parts.scheme == "https" else http.client.HTTPConnection(parts.hostname, port, timeout=self.options.timeout))
        self.requests += 1
        try:
            conn.request("GET", target, headers=dict(headers, **{"User-Agent": self.options.user_agent}))
            return self._response(conn.getresponse(), True)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc)

    def download_blob(self, repo: str, digest: str, size: int, dest: Path, bwlimit: "Optional[int]" = None,
                      progress: "Optional[Callable[[int], None]]" = None) -> Path:
        """Fetch a blob into ``DEST`` (``DEST.part`` while it arrives; a cut download resumes from it with
        ``Range``).  DEST appears only once all SIZE bytes are there and their sha256 is DIGEST; a
        mismatch deletes the partial file (the next try starts over) and raises CheckFailed."""
        part = Path(str(dest) + ".part")
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        h = _hash_file(part) if have else hashlib.sha256()
        if have < size:
            have, h = self._fetch_into(repo, digest, part, have, h, bwlimit, progress, size)
        if have < size:  # the connection ended early: keep what came, the next try resumes from it
            self.close()
            raise RegistryUnreachable("{}: the download of {} stopped after {} of {} bytes (connection closed); "
                                      "the next try resumes from there".format(self.host, digest[:19], have, size))
        if have != size or "sha256:" + h.hexdigest() != digest:
            part.unlink()
            raise CheckFailed("{}/{}: layer {} arrived with {} bytes and sha256 {}, not the {} bytes the manifest lists "
                              "(tampered or corrupted in the registry); nothing applied".format(
                                  self.host, repo, digest[:19], have, "sha256:" + h.hexdigest()[:12], size))
        os.replace(str(part), str(dest))
        return dest

    def _fetch_into(self, repo: str, digest: str, part: Path, have: int, h: Any, bwlimit: "Optional[int]",
                    progress: "Optional[Callable[[int], None]]", size: int) -> "Tuple[int, Any]":
        resp = self._get_blob(repo, digest, {"Range": "bytes={}-".format(have)} if have else {})
        if resp.status == 416 or (resp.status == 206 and not (resp.header("Content-Range") or "").startswith("bytes {}-".format(have))):
            self.close()  # a 206 from elsewhere than asked may leave bytes unread on the connection
            part.unlink()
            return self._fetch_into(repo, digest, part, 0, hashlib.sha256(), bwlimit, progress, size)
        if resp.status == 200 and have:
            log.info("the registry ignored the Range request: downloading %s from the start", digest[:19])
            have, h = 0, hashlib.sha256()
        try:
            with open(str(part), "ab" if have else "wb") as f:
                for chunk in _paced(resp.raw, bwlimit, size + 1 - have):
                    f.write(chunk)
                    f.flush()  # what arrived is on disk if this process is killed: the next run resumes from it
                    h.update(chunk)
                    have += len(chunk)
                    if progress is not None:
                        progress(have)
                    if have > size:  # more than the manifest lists: stop before it fills the disk
                        self.close()
                        break
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if isinstance(exc, OSError) and exc.errno == 28:
                raise RegistryError("no space left on device while downloading {} ({} bytes there; resumes next time)".format(digest[:19], have))
            raise RegistryUnreachable("{}: the download of {} stopped after {} of {} bytes ({}); the next try resumes from there".format(
                self.host, digest[:19], have, size, _cause(exc)))
        finally:
            resp.raw.close()
        return have, h

    def upload_blob(self, repo: str, path: "Optional[Path]", digest: str, size: int, data: "Optional[bytes]" = None) -> bool:
        """Upload a blob unless the repository has it already (``HEAD``); True when it was sent."""
        if self.blob_exists(repo, digest):
            return False
        resp = self.request("POST", "/v2/{}/blobs/uploads/".format(repo), _scope(repo, push=True), {"Content-Length": "0"}, b"")
        if resp.status != 202 or not resp.header("Location"):
            raise self._fail(resp, "starting an upload to {}".format(repo))
        loc = urljoin("{}://{}/v2/{}/blobs/uploads/".format(self.scheme, self.host, repo), resp.header("Location") or "")
        url = loc + ("&" if "?" in loc else "?") + urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if data is not None:
            resp = self.request("PUT", url, _scope(repo, push=True), headers, data)
        else:
            with open(str(path), "rb") as body:
                resp = self.request("PUT", url, _scope(repo, push=True), headers, body)
        if resp.status != 201:
            raise self._fail(resp, "uploading blob {}".format(digest[:19]))
        return True


def _cause(exc: BaseException) -> str:
    """A lost connection in words, whatever layer noticed it (socket, TLS, HTTP)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected, http.client.IncompleteRead)) \
            or (isinstance(exc, ssl.SSLError) and "eof" in text.lower()):
        return "connection lost: {}".format(text)
    return "{}: {}".format(type(exc).__name__, text)


def _scope(repo: str, push: bool = False) -> str:
    return "repository:{}:{}".format(repo, "pull,push" if push else "pull")


def _hash_file(path: Path) -> Any:
    h = hashlib.sha256()
    with open(str(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


def _paced(raw: Any, bwlimit: "Optional[int]", limit: int) -> "Iterator[bytes]":
    """Chunks of RAW, at most LIMIT bytes in all, at most BWLIMIT KiB/s on average (a board on a shared link)."""
    t0, sent = time.monotonic(), 0
    while sent < limit:
        chunk = raw.read(min(CHUNK, limit - sent))
        if not chunk:
            return
        yield chunk
        sent += len(chunk)
        if bwlimit:
            ahead = sent / (bwlimit * 1024.0) - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
