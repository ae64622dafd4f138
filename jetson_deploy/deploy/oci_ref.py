"""Names in a registry: ``HOST[:PORT]/REPO[:TAG][@sha256:...]``, tags and digests, as the OCI
distribution spec writes them (its ``<name>`` and ``<reference>`` grammar).  Standard library only."""
import hashlib
import re
from typing import Optional

from ..errors import BadInput

_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-]{0,127}\Z")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}\Z")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?\Z")


def check_tag(tag: str, what: str = "tag") -> str:
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise BadInput("{} {!r}: a tag is 1-128 letters, digits, '_', '.', '-' (not starting with '.' or '-')".format(what, tag))
    return tag


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise BadInput("{!r} is not a sha256 digest (sha256:<64 hex>)".format(digest))
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Reference(object):
    """``HOST[:PORT]/REPO[:TAG][@sha256:...]``, e.g. ``registry.local:5000/fleet/shapes:stable``.

    The registry host is always written out (no Docker Hub default): a board must never pull
    from somewhere its operator did not name."""

    __slots__ = ("host", "repo", "tag", "digest")

    def __init__(self, host: str, repo: str, tag: "Optional[str]" = None, digest: "Optional[str]" = None) -> None:
        self.host, self.repo, self.tag, self.digest = host, repo, tag, digest

    @classmethod
    def parse(cls, text: str, tag_required: bool = False) -> "Reference":
        raw = (text or "").strip()
        usage = "use HOST[:PORT]/REPOSITORY[:TAG], e.g. registry.local:5000/fleet/shapes:stable"
        if "://" in raw:
            raise BadInput("{!r}: give the registry without a scheme ({}); TLS is the default, --insecure allows plain HTTP on loopback".format(text, usage))
        host, _, rest = raw.partition("/")
        if not rest or not _HOST_RE.match(host) or not ("." in host or ":" in host or host == "localhost"):
            raise BadInput("{!r}: no registry host; {}".format(text, usage))
        digest = None
        if "@" in rest:
            rest, _, digest = rest.partition("@")
            check_digest(digest)
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, _, tag = rest.rpartition(":")
            check_tag(tag)
        if not _REPO_RE.match(rest) or len(rest) > 255:
            raise BadInput("{!r}: repository {!r} must be lower-case path components (a-z, 0-9, '.', '_', '-'); {}".format(text, rest, usage))
        if tag_required and tag is None and digest is None:
            raise BadInput("{!r} names no tag: {}".format(text, usage))
        return cls(host, rest, tag, digest)

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.host, self.repo, check_tag(tag), None)

    def with_repo(self, repo: str) -> "Reference":
        if not _REPO_RE.match(repo):
            raise BadInput("repository {!r} must be lower-case path components (a-z, 0-9, '.', '_', '-')".format(repo))
        return Reference(self.host, repo, None, None)

    @property
    def ref(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return "{}/{}{}{}".format(self.host, self.repo, ":" + self.tag if self.tag else "", "@" + self.digest if self.digest else "")


def is_loopback(host: str) -> bool:
    """``HOST[:PORT]`` names this machine (127.0.0.0/8, ::1, localhost)."""
    from ..media.live import is_loopback as loopback_name  # the live view's rule, one definition

    return loopback_name(host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.index("]")])
