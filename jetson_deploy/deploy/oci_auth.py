"""Registry credentials and auth challenges, as ``docker`` and ``oras`` do them (standard library only).

Where credentials come from, first match wins:

1. ``--username USER`` with the password in ``$JETSON_DEPLOY_REGISTRY_PASSWORD`` (never on the
   command line, where ``ps`` shows it);
2. the Docker client config (``--docker-config DIR``, else ``$DOCKER_CONFIG``, else
   ``~/.docker/config.json``): ``auths[HOST].auth`` (base64 ``user:password``, what ``docker login``
   and ``oras login`` write), or a credential helper (``credHelpers[HOST]``, ``credsStore``) run as
   ``docker-credential-NAME get`` with HOST on stdin (the docker-credential-helpers protocol);
3. none: anonymous pulls.

A 401 answer carries ``WWW-Authenticate``: ``Basic realm=...`` (distribution with htpasswd) gets the
credentials in every later request of this client; ``Bearer realm=...,service=...,scope=...``
(Docker Hub, GHCR, Harbor, distribution with token auth) gets a token from the realm, kept until it
expires (the distribution token spec: ``token``/``access_token``, ``expires_in`` default 60 s).
"""
import base64
import json
import os
import re
import shutil
import subprocess
import time
from typing import Dict, List, Optional, Tuple

from ..errors import BadInput

PASSWORD_ENV = "JETSON_DEPLOY_REGISTRY_PASSWORD"
_CHALLENGE_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"')
_HELPER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*\Z")


class Credentials(object):
    """A user name and password (or a helper's secret) for one registry host."""

    __slots__ = ("username", "password", "source")

    def __init__(self, username: str, password: str, source: str) -> None:
        self.username, self.password, self.source = username, password, source

    def basic(self) -> str:
        raw = "{}:{}".format(self.username, self.password).encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never the password
        return "Credentials({!r} from {})".format(self.username, self.source)


def docker_config_path(config_dir: "Optional[str]" = None) -> str:
    base = config_dir or os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _host_keys(host: str) -> "List[str]":
    """The spellings ``docker login HOST`` leaves in ``auths``."""
    return [host, "https://" + host, "http://" + host, "https://{}/v1/".format(host), "https://{}/v2/".format(host)]


def _from_auth_entry(entry: "Dict[str, object]", where: str) -> "Optional[Credentials]":
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode("utf-8").partition(":")
        except (ValueError, UnicodeError):
            raise BadInput("{}: the 'auth' entry is not base64 of user:password; run docker login (or oras login) again".format(where))
        return Credentials(user, password, where)
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), str(entry["password"]), where)
    if entry.get("identitytoken"):
        raise BadInput("{}: holds an OAuth identity token, which jetson-deploy does not exchange; "
                       "use --username with ${} (a robot account or access token)".format(where, PASSWORD_ENV))
    return None


def _from_helper(helper: str, host: str, where: str) -> "Optional[Credentials]":
    if not _HELPER_RE.match(helper):
        raise BadInput("{}: credential helper name {!r} is not a plain name".format(where, helper))
    exe = shutil.which("docker-credential-" + helper)
    if exe is None:
        raise BadInput("{} names the credential helper {!r} but docker-credential-{} is not installed; "
                       "install it or use --username with ${}".format(where, helper, helper, PASSWORD_ENV))
    p = subprocess.run([exe, "get"], input=host.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        return None  # helpers answer "credentials not found in native keychain" with exit 1
    try:
        data = json.loads(p.stdout.decode("utf-8"))
        return Credentials(str(data["Username"]), str(data["Secret"]), "docker-credential-" + helper)
    except (ValueError, KeyError, TypeError):
        raise BadInput("docker-credential-{} get answered something that is not its JSON".format(helper))


def from_docker_config(host: str, config_dir: "Optional[str]" = None) -> "Optional[Credentials]":
    """Credentials for HOST from the Docker client config, or None (no file, no entry)."""
    path = docker_config_path(config_dir)
    if not os.path.isfile(path):
        if config_dir:
            raise BadInput("--docker-config {}: there is no config.json there (docker login or oras login writes it)".format(config_dir))
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise BadInput("{} cannot be read as JSON ({}): fix it or pass --username".format(path, exc))
    auths = cfg.get("auths") or {}
    for key in _host_keys(host):
        entry = auths.get(key)
        if isinstance(entry, dict):
            creds = _from_auth_entry(entry, path)
            if creds is not None:
                return creds
    helper = (cfg.get("credHelpers") or {}).get(host) or cfg.get("credsStore")
    return _from_helper(str(helper), host, path) if helper else None


def resolve(host: str, username: "Optional[str]" = None, config_dir: "Optional[str]" = None) -> "Optional[Credentials]":
    """The credentials to use for HOST (see the module docstring), or None for anonymous access."""
    if username:
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise BadInput("--username {} needs the password in ${} (it is never taken on the command line)".format(username, PASSWORD_ENV))
        return Credentials(username, password, "--username")
    return from_docker_config(host, config_dir)


def parse_challenge(header: str) -> "Tuple[str, Dict[str, str]]":
    """``('bearer', {'realm': ..., 'service': ..., 'scope': ...})`` from a WWW-Authenticate value."""
    scheme, _, rest = (header or "").strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_RE.findall(rest))


class TokenCache(object):
    """Bearer tokens by scope, dropped a little before they expire."""

    def __init__(self) -> None:
        self._tokens: "Dict[str, Tuple[str, float]]" = {}

    def get(self, scope: str) -> "Optional[str]":
        tok = self._tokens.get(scope)
        if tok is None or tok[1] <= time.monotonic():
            return None
        return tok[0]

    def put(self, scope: str, answer: "Dict[str, object]") -> str:
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise BadInput("the registry's token service answered without a token")
        try:
            life = float(answer.get("expires_in") or 60)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            life = 60.0
        self._tokens[scope] = (token, time.monotonic() + max(1.0, life - 10.0))
        return token
